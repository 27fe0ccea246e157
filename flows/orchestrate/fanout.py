"""A sharded sweep's parent run: its child runs to their end, the shards' manifest merged as they go."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from flows.engine.progress import Progress, publish
from flows.orchestrate.artifacts import progress_description
from flows.orchestrate.children import run_children
from flows.orchestrate.hooks import stop_unattended
from flows.store.follow import ShardsFollower
from flows.store.manifest import (
    COST_AT,
    FINAL_STATUSES,
    STATUS_AT,
    ManifestBuilder,
    build_manifest,
    row_status,
    write_manifest,
)
from flows.store.shards import ShardBook, merged_states, shard_dir, sweep_key

log = logging.getLogger("flows.engine")  # as the engine's own warnings: shown as the run's
WRITE_EVERY = 2.0  # seconds between writes of the shards' manifest while they run, at least
ACCOUNT_LIMIT = "wiro-account"  # the global concurrency limit children share unless one is named


async def ensure_concurrency_limit(name: str, limit: int) -> None:
    """Create the global concurrency limit `name` with `limit` slots unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
            get_run_logger().info("created global concurrency limit %r with %d slots", name, limit)


class _Watched:
    """The shards' rows while they run, from what their journals added since the last look: each
    look tallies the rows that changed (by status, and the bill), and the manifest is built and
    written at most every `WRITE_EVERY` seconds and never more than ~5% of the time (at 100,000
    rows a build takes 0.3 s and a write more)."""

    def __init__(self, frame: pd.DataFrame, shards: ShardsFollower) -> None:
        self.builder = ManifestBuilder(frame)
        self.shards = shards
        self.next_write = 0.0
        self.in_grid = set(frame["row_id"].tolist())
        self.pending = row_status(None)[0]  # a row without state's status
        self.counts: Counter[str] = Counter({self.pending: len(self.in_grid)})
        self.billed = Decimal(0)

    def look(self, out: Path) -> Progress:
        for row_id in self.shards.read():
            if row_id not in self.in_grid:  # never in its manifest
                continue
            before, after = self.builder.update(row_id, self.shards.states.get(row_id))
            self.counts[before[STATUS_AT] if before else self.pending] -= 1
            self.counts[after[STATUS_AT]] += 1
            self.billed += after[COST_AT] - (before[COST_AT] if before else 0)
        if time.monotonic() >= self.next_write:
            started = time.monotonic()
            try:
                write_manifest(out, self.builder.table(self.shards.states))
            except OSError as exc:  # a full disk: the shards' journals are the record, the final write tries again
                log.warning("could not write the manifest in %s: %s", out, exc.strerror or exc)
            self.next_write = time.monotonic() + max(WRITE_EVERY, 20 * (time.monotonic() - started))
        done = sum(n for status, n in self.counts.items() if status in FINAL_STATUSES)
        return Progress(len(self.in_grid), done, {k: n for k, n in self.counts.items() if n}, self.billed)


async def run_shards(
    frame: pd.DataFrame, out: Path, count: int, children: dict[str, Any]
) -> tuple[pd.DataFrame, str, dict[int, str]]:
    """Run the children to their end; the merged manifest, why the run was cancelled (or ""), and
    how each shard's run ended (by its index: `OUT/shards/<k>`)."""
    from prefect.runtime import flow_run

    book = ShardBook.open(out, count, sweep_key(out, frame))
    book.restart()
    artifact = await acreate_progress_artifact(
        0.0, description=progress_description(out, len(frame)) + f" ({count} shards)"
    )

    def merge() -> pd.DataFrame:
        manifest = build_manifest(frame, merged_states(out, count), final=True)
        write_manifest(out, manifest)
        return manifest

    watched = _Watched(frame, ShardsFollower([shard_dir(out, k) for k in range(count)], out))

    async def progress() -> None:
        shown = await asyncio.to_thread(watched.look, out)
        publish(shown)
        await aupdate_progress_artifact(artifact, 100.0 * shown.done / max(1, shown.total))

    logger = get_run_logger()
    stopped = 0

    async def stop_left_shards() -> None:
        # A cancelled child's process dies well before its worker's hook (a new process) kills its
        # tasks: once its lock is free, stopping them here saves that wait.
        nonlocal stopped
        try:
            stopped += await asyncio.to_thread(stop_unattended, out)
        except Exception as exc:  # the children's own hooks stop them too
            logger.warning("could not stop the Wiro tasks of stopped shards: %s", exc)

    outcome = await run_children(
        book,
        children,
        str(flow_run.name or "wiro-sweep"),
        on_poll=progress,
        parent_run_id=flow_run.id or None,
        on_stopping=stop_left_shards,
    )
    logger.info("shards finished: %s", ", ".join(f"shards/{k}: {v}" for k, v in sorted(outcome.states.items())))
    if outcome.crashed:
        logger.warning("shard run(s) %s lost their worker (their lock was free): marked Crashed, started again",
                       sorted(set(outcome.crashed)))  # fmt: skip
    cancelled = ""
    if not outcome.cancelled:
        others = sorted(k for k, v in outcome.states.items() if v == "Cancelled")
        if others:
            logger.warning("shard run(s) %s were cancelled, so not started again; rerun the sweep to resume them",
                           others)  # fmt: skip
    else:
        await stop_left_shards()
        shards = ", ".join(map(str, outcome.stopped)) or "none running"
        cancelled = (f"{outcome.cancelled}; cancelled shard run(s) {shards} (their workers stop their Wiro tasks)"
                     f" and stopped {stopped} Wiro task(s) of shards no run was sweeping any more")  # fmt: skip
        logger.warning("flow run cancelled: %s", cancelled)
    await progress()
    return merge(), cancelled, dict(outcome.states)
