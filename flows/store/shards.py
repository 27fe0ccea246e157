"""Sharded sweeps: one parent run splits the grid by `row_id` and runs each part as a child flow run.

This module is the layout on disk: which shard a row is in, `OUT/shards/<k>/`, `OUT/shards.json`
(the count and the book of child runs) and the shards' merged row states. Children are started
through the `sweep-shard` deployment (`flows.orchestrate.children`), so any worker of the pool can
take one: K workers on K machines share one sweep. Each child sweeps its part into `OUT/shards/<k>/`
with its own journal, holding the flock `OUT/shards/<k>/.lock` (`flows.store.locks`) while it
sweeps, so every guarantee of a plain sweep holds per shard.

What makes it safe to restart the parent: the shard of a row is `int(row_id, 16) % K` and K is
fixed per OUT (`OUT/shards.json`), so a row never moves to another shard; each child is started
with an idempotency key written to `shards.json` *before* the request, so a parent that dies
around `run_deployment` finds the same child run again.

One OUT, one mode: an OUT swept in K shards is never swept unsharded or in another K (and the
reverse), since the other mode keeps its own journals and would pay for every row again
(`check_out_mode`, before any Run request).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flows.grid import GridError
from flows.store.files import MAX_SMALL_JSON_BYTES, read_json
from flows.store.journal import JOURNAL, fold, folded, iter_events
from flows.store.rowstate import RowState

SHARDS_FILE = "shards.json"
SHARDS_DIR = "shards"


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


def shard_dirs(out: Path) -> list[Path]:
    """Every `OUT/shards/<k>/` that exists, in shard order."""
    root = out / SHARDS_DIR
    if not root.is_dir():
        return []
    return sorted((d for d in root.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))


def sweep_key(out: Path, grid: pd.DataFrame) -> str:
    """Names one sweep: its OUT and its rows. Keys of child runs derive from it."""
    digest = hashlib.sha256(str(out).encode())
    for row_id in sorted(grid["row_id"]):
        digest.update(row_id.encode())
    return digest.hexdigest()[:16]


# One OUT, one mode.


def _has_events(journal: Path) -> bool:
    try:
        return journal.stat().st_size > 0
    except FileNotFoundError:
        return False


def _saved_count(out: Path) -> int | None:
    book = _read_book(out / SHARDS_FILE)
    return None if book is None else int(book["count"])


def _read_book(path: Path) -> dict[str, Any] | None:
    """`shards.json` as saved, None when there is none; a damaged one is `GridError` (exit 2), never a traceback."""
    try:
        saved = read_json(path, MAX_SMALL_JSON_BYTES, "shard book")  # a FIFO, a device: UnreadableFileError
        int(saved["count"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise GridError(
            str(path), f"unreadable shard book ({type(exc).__name__}); restore it, or sweep into a new --out"
        ) from None
    return dict(saved)


def check_out_mode(out: Path, shards: int, shard: int | None) -> None:
    """Refuse to sweep OUT in another mode than it was swept in: its rows would be paid for again.

    An unsharded sweep keeps `OUT/journal.jsonl`, a sharded one `OUT/shards/<k>/journal.jsonl`
    and the shard count in `OUT/shards.json`; neither reads the other's journals. A child run
    that finds no `shards.json` (one started by hand) records its count there, so the next run
    in another mode is refused too. A few stat calls and one small file: cheap, and before any Run.
    """
    sharded = shards > 1 or shard is not None
    again = "would pay for every row again"
    count = _saved_count(out)
    if not sharded:
        if count is not None:
            raise GridError(str(out), f"was swept in {count} shards ({SHARDS_FILE}); resume it with "
                            f"--shards {count}, or use a new --out (an unsharded sweep {again})")  # fmt: skip
        swept = [d.name for d in shard_dirs(out) if _has_events(d / JOURNAL)]
        if swept:
            raise GridError(str(out), f"holds the journals of shards {', '.join(swept)} ({SHARDS_DIR}/); resume "
                            f"it with the --shards it was swept with, or use a new --out (an unsharded sweep "
                            f"{again})")  # fmt: skip
        return
    if _has_events(out / JOURNAL):
        raise GridError(str(out), f"was swept without --shards ({JOURNAL}); resume it without --shards, or use "
                        f"a new --out (a sharded sweep {again})")  # fmt: skip
    if count is None and shard is not None:
        count = _claim_count(out, shards)
    if count is not None and count != shards:
        raise GridError(str(out), f"was swept in {count} shards; use --shards {count}, or a new --out "
                        "(rows would move between shards and be paid for twice)")  # fmt: skip


def _claim_count(out: Path, count: int) -> int:
    """Write `shards.json` with `count` unless someone else has; the count that holds."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / SHARDS_FILE
    temporary = out / f".{SHARDS_FILE}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    temporary.write_text(json.dumps({"count": count, "key": None, "runs": {}}, indent=2))
    try:
        os.link(temporary, path)  # atomic, and fails if the file exists: the first writer wins
    except FileExistsError:
        pass
    except OSError:  # storage without hard links: create-if-absent, then write
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(temporary.read_text())
    finally:
        temporary.unlink()
    saved = _saved_count(out)
    return count if saved is None else saved


# The book of child runs.


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
        saved = _read_book(path)
        if saved is not None:
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


def recorded_states(out: Path) -> dict[str, RowState]:
    """What OUT's journals say of its rows: the shards' when OUT was swept in shards. Read-only
    (an OUT's own journal is folded once while it stays as it was: `journal.folded`)."""
    dirs = shard_dirs(out)
    count = _saved_count(out) or (int(dirs[-1].name) + 1 if dirs else 0)
    return merged_states(out, count) if count else folded(out / JOURNAL)


def merged_states(out: Path, count: int) -> dict[str, RowState]:
    """Every shard's row states, with output paths made relative to OUT."""
    merged: dict[str, RowState] = {}
    for index in range(count):
        directory = shard_dir(out, index)
        for row_id, state in fold(iter_events(directory / JOURNAL)).items():
            if state.output_path:
                state.output_path = str((directory / state.output_path).relative_to(out))
            merged[row_id] = state
    return merged
