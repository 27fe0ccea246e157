"""Sharded sweeps: one parent run splits the grid by `row_id` and runs each part as a child flow run.

Children are started through the `sweep-shard` deployment (`run_deployment`), so any worker of the
pool can take one: K workers on K machines share one sweep. Each child sweeps its part into
`OUT/shards/<k>/` with its own journal, so every guarantee of a plain sweep holds per shard.

What makes it safe to restart the parent: the shard of a row is `int(row_id, 16) % K` and K is
fixed per OUT (`OUT/shards.json`), so a row never moves to another shard; each child is started
with an idempotency key written to `shards.json` *before* the request, so a parent that dies
around `run_deployment` finds the same child run again; and a child that crashed or was
cancelled is started anew (a new key) and resumes from its journal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import arun_deployment

from .grid import GridError
from .journal import JOURNAL, RowState, fold, read_events

SHARDS_FILE = "shards.json"
SHARDS_DIR = "shards"
SHARD_DEPLOYMENT = "wiro-sweep/sweep-shard"
MAX_LAUNCHES = 3
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
RELAUNCH = {StateType.CANCELLED, StateType.CRASHED}


def shard_of(row_id: str, count: int) -> int:
    return int(row_id, 16) % count


def select_shard(grid: pd.DataFrame, index: int, count: int) -> pd.DataFrame:
    """The rows of one shard, in grid order."""
    if not 0 <= index < count:
        raise GridError("--shard", f"must be between 0 and {count - 1}")
    mask = [shard_of(r, count) == index for r in grid["row_id"]]
    return grid[mask].reset_index(drop=True)


def shard_dir(out: Path, index: int) -> Path:
    return out / SHARDS_DIR / str(index)


def sweep_key(out: Path, grid: pd.DataFrame) -> str:
    """Names one sweep: its OUT and its rows. Keys of child runs derive from it."""
    digest = hashlib.sha256(str(out).encode())
    for row_id in sorted(grid["row_id"]):
        digest.update(row_id.encode())
    return digest.hexdigest()[:16]


@dataclass
class ShardBook:
    """`OUT/shards.json`: the shard count, and per shard the child run started last."""

    path: Path
    count: int
    key: str
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, out: Path, count: int, key: str) -> ShardBook:
        path = out / SHARDS_FILE
        if path.exists():
            saved = json.loads(path.read_text())
            if saved["count"] != count:
                raise GridError(str(out), f"was swept in {saved['count']} shards; use --shards {saved['count']} "
                                "(rows would move between shards and be paid for twice)")  # fmt: skip
            return cls(path, count, key, saved.get("runs", {}) if saved.get("key") == key else {})
        out.mkdir(parents=True, exist_ok=True)
        return cls(path, count, key)

    def save(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps({"count": self.count, "key": self.key, "runs": self.runs}, indent=2))
        os.replace(temporary, self.path)

    def restart(self) -> None:
        """A new parent run: children still running are waited for; final ones run again (resuming)."""
        for entry in self.runs.values():
            entry["relaunch_if_final"] = True

    def entry(self, index: int) -> dict[str, Any]:
        return self.runs.setdefault(str(index), {"launch": 1, "flow_run_id": None})


async def run_children(
    book: ShardBook,
    parameters: Mapping[str, Any],
    flow_run_name: str,
    poll: float = 2.0,
    on_poll: Callable[[], Awaitable[None]] | None = None,
) -> dict[int, str]:
    """Start (or find again) one child run per shard and wait until all are final.

    Returns each shard's final state name. A crashed or cancelled child is started again
    (it resumes from its journal), at most `MAX_LAUNCHES` times in all.
    """
    async with get_client() as client:
        states: dict[int, str] = {}
        pending = set(range(book.count))
        while pending:
            for index in sorted(pending):
                entry = book.entry(index)
                if entry["flow_run_id"] is None:
                    book.save()  # the key is on disk before the request that uses it
                    run = await arun_deployment(
                        SHARD_DEPLOYMENT,
                        parameters={**parameters, "shard": index, "shards": book.count},
                        idempotency_key=f"{book.key}-{index}-{entry['launch']}",
                        flow_run_name=f"{flow_run_name}-shard-{index}",
                        timeout=0,
                    )
                    entry["flow_run_id"] = str(run.id)
                    book.save()
                child = await client.read_flow_run(entry["flow_run_id"])
                kind = child.state.type if child.state else None
                if entry.pop("relaunch_if_final", False) and kind in FINAL:
                    entry.update(launch=entry["launch"] + 1, flow_run_id=None)
                    continue
                if kind in RELAUNCH and entry["launch"] < MAX_LAUNCHES:
                    entry.update(launch=entry["launch"] + 1, flow_run_id=None)
                elif kind in FINAL:
                    states[index] = str(child.state.name if child.state else "?")
                    pending.discard(index)
            if pending:
                if on_poll is not None:
                    await on_poll()
                await asyncio.sleep(poll)
        return states


def merged_states(out: Path, count: int) -> dict[str, RowState]:
    """Every shard's row states, with output paths made relative to OUT."""
    merged: dict[str, RowState] = {}
    for index in range(count):
        directory = shard_dir(out, index)
        for row_id, state in fold(read_events(directory / JOURNAL)).items():
            if state.output_path:
                state.output_path = str((directory / state.output_path).relative_to(out))
            merged[row_id] = state
    return merged


async def cancel_children(out: Path) -> int:
    """Ask Prefect to cancel the child runs of OUT's sharded sweep; their workers stop their tasks."""
    from prefect.states import Cancelling

    path = out / SHARDS_FILE
    if not path.exists():
        return 0
    runs = [e["flow_run_id"] for e in json.loads(path.read_text()).get("runs", {}).values() if e.get("flow_run_id")]
    cancelled = 0
    async with get_client() as client:
        for run_id in runs:
            child = await client.read_flow_run(run_id)
            if child.state is not None and child.state.type not in FINAL:
                await client.set_flow_run_state(run_id, Cancelling(message="parent sweep interrupted"))
                cancelled += 1
    return cancelled
