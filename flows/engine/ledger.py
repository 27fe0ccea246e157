"""The ledger: the only writer of row state. Every change goes to the journal first, then to the
in-memory state from the very same record; the manifest is rewritten from it in the background.

`Halt` says why nothing more may be submitted (OUT stopped taking writes, the API refused the
account, the user cancelled); the pieces of the engine share one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from flows.engine.progress import Progress
from flows.engine.rows import STRAYS, VIDEOS
from flows.memory import give_back
from flows.store.journal import Journal, JournalWriteError
from flows.store.manifest import (
    MANIFEST_PARQUET,
    ManifestBuilder,
    kept_manifest,
    manifest_frame,
    manifest_source,
    row_status,
    write_manifest,
)
from flows.store.rowstate import RowState
from wiro_tasks.downloads import PART_SUFFIX

JOURNAL_FLUSH_SECONDS = 0.1
OUT_RETRY_SECONDS = 1.0

logger = logging.getLogger("flows.engine")


@dataclass
class Halt:
    """Why nothing more is submitted in this run, if anything stops it."""

    reason: str = ""  # rows not submitted yet are recorded skipped with it
    out_error: JournalWriteError | None = None  # OUT stopped taking writes
    cancelled: str | None = None  # the user cancelled the run: rows not submitted yet just stop


def _done(status: str) -> bool:
    return status not in ("pending", "running")


class Ledger:
    """Row state for one OUT, its journal and its manifest."""

    def __init__(self, grid: pd.DataFrame, row_ids: list[str], out: Path, journal: Journal, halt: Halt) -> None:
        self.out = out
        self.journal = journal
        self.halt = halt
        self.states: dict[str, RowState] = journal.load()
        self.total = len(row_ids)
        self.grid = grid
        self.manifest = ManifestBuilder(grid)
        self.status = {r: row_status(self.states.get(r))[0] for r in row_ids}
        self.counts = Counter(self.status.values())
        self._holders: dict[str, tuple[str, ...]] = {}  # task id -> the rows that ever held it (a set was 216 B)
        self._working: set[str] | None = None  # rows this run has yet to be through with (`work_on`)
        self._done = 0  # rows done, counted as `work_on` says
        self._paid: dict[str, Counter[str]] = {}  # account -> the tasks rows on it hold (strays too), counted
        self._paid_by: dict[str, tuple[str, tuple[str, ...]]] = {}  # row id -> its account and those tasks
        for state in self.states.values():
            for task_id in state.task_ids:
                self._hold(task_id, state.row_id)
            self._index_paid(state)
        self._dirty = asyncio.Event()
        self._version = 0
        self._written = -1
        self._write_lock = threading.Lock()
        (out / VIDEOS).mkdir(parents=True, exist_ok=True)
        # Left by a process killed mid-write: the OUT's own files written whole (`atomic_write`: the
        # manifests, summary.json, the report) and partial downloads. This run holds the OUT's lock.
        written = [p for p in out.glob(".*.tmp") if p.is_file()]
        for stale in [*written, *_partial(out / VIDEOS), *_partial(out / STRAYS)]:
            stale.unlink(missing_ok=True)

    def record(self, event: str, row_id: str, **fields: Any) -> None:
        """Append to the journal first, then update the in-memory state from the same record."""
        entry = self.journal.append(event, row_id, **fields)
        state = self.state(row_id)
        state.apply(entry)
        if state.task_id:
            self._hold(state.task_id, row_id)
        self._index_paid(state)
        self.manifest.forget(row_id)
        if row_id in self.status:
            self.counts[self.status[row_id]] -= 1
            self.status[row_id] = row_status(state)[0]
            self.counts[self.status[row_id]] += 1
        self._version += 1
        self._dirty.set()

    def state(self, row_id: str) -> RowState:
        state = self.states.get(row_id)
        if state is None:
            state = self.states[row_id] = RowState(row_id)
        return state

    def _hold(self, task_id: str, row_id: str) -> None:
        held = self._holders.get(task_id, ())
        if row_id not in held:
            self._holders[task_id] = (*held, row_id)

    def _index_paid(self, state: RowState) -> None:
        """Keep `paid_tasks`' index of the row's tasks up to date (its account or tasks changed)."""
        now = (state.account, tuple(state.every_task_id))
        before = self._paid_by.get(state.row_id)
        if before == now:
            return
        if before is not None:
            held = self._paid[before[0]]
            for task_id in before[1]:
                held[task_id] -= 1
                if held[task_id] <= 0:
                    del held[task_id]
        counted = self._paid.get(now[0])
        if counted is None:  # not `setdefault(..., Counter())`: a Counter made for each of 100,000 rows
            counted = self._paid[now[0]] = Counter()
        for task_id in now[1]:
            counted[task_id] = counted.get(task_id, 0) + 1
        self._paid_by[state.row_id] = now

    def paid_tasks(self, account: str) -> frozenset[str]:
        """Every task this OUT's rows hold on `account` or on an unnamed one (`owned_by`), their
        strays included: from an index kept as rows change, not a pass over every row."""
        named = self._paid.get(account, Counter()) if account else Counter()
        return frozenset(named).union(self._paid.get("", ()))

    def held_by_another(self, task_id: str, row_id: str, account: str) -> bool:
        """Whether a row other than `row_id` holds (or held) `task_id` on `account` (or on an
        unnamed one): a lookup, not a scan of every row."""
        return any(k != row_id and owned_by(self.states[k], account) for k in self._holders.get(task_id, ()))

    def work_on(self, row_ids: list[str]) -> None:
        """The rows this run works on. Each counts as done only once this run is through with it
        (`through_with`), whatever an earlier run left it as: else a resumed row counted as done
        (cancelled, not started) drops out of the count when it runs again, and the count goes back."""
        self._working = set(row_ids)
        self._done = sum(1 for r, s in self.status.items() if _done(s) and r not in self._working)

    def through_with(self, row_id: str) -> None:
        if self._working is not None and row_id in self._working:
            self._working.discard(row_id)
            self._done += _done(self.status.get(row_id, "pending"))

    def progress(self, cost: Decimal, row_id: str = "", status: str = "") -> Progress:
        counts = {k: v for k, v in self.counts.items() if v}
        done = self._done if self._working is not None else sum(v for k, v in counts.items() if _done(k))
        return Progress(self.total, done, counts, cost, last_row=row_id, last_status=status)

    # The journal.

    async def commit(self, durable: bool = False) -> bool:
        """Write what was recorded; False (and OUT marked failed) when OUT cannot take it."""
        try:
            await self.journal.commit(durable=durable)
        except JournalWriteError as exc:
            self.out_failed(exc)
            return False
        return True

    def flush_or_stop(self) -> None:
        try:
            self.journal.flush()
        except JournalWriteError as exc:
            self.out_failed(exc)

    def out_failed(self, error: JournalWriteError) -> None:
        """OUT cannot be written: submit nothing more; the tasks in flight are still waited for."""
        if self.halt.out_error is None:
            self.halt.out_error = error
            self.halt.reason = f"not submitted: {error}"
            logger.warning("%s: nothing more is submitted; tasks in flight are waited for", error)

    async def keep_journal_flushed(self) -> None:
        """Events other than intents reach the file in batches, a tenth of a second apart."""
        while True:
            await asyncio.sleep(JOURNAL_FLUSH_SECONDS)
            if not await self.commit():  # kept pending: tried again, in case space comes back
                await asyncio.sleep(OUT_RETRY_SECONDS)

    # The manifest.

    def write(self, final: bool = False, source: bytes | None = None) -> pd.DataFrame:
        """Write the manifest as the journal stands now."""
        table = self.manifest.table(self.states, final=final)
        self._write(table, self._version, source)
        return manifest_frame(table)

    def final_manifest(self) -> pd.DataFrame:
        """The final manifest, written; if OUT cannot take it, the old one stays whole. One made
        from the same journal, grid and code is read back instead (a reopen with nothing new)."""
        on_disk = self.journal.on_disk()
        source = None if on_disk is None else manifest_source(on_disk, self.grid)
        kept = None if source is None else kept_manifest(self.out, source)
        if kept is not None:
            return kept
        try:
            return self.write(final=True, source=source)
        except OSError as exc:  # the journal (if it could be written) is the record
            self.out_failed(JournalWriteError(self.out / MANIFEST_PARQUET, exc))
            return manifest_frame(self.manifest.table(self.states, final=True))

    def _write(self, manifest: pd.DataFrame | pa.Table, version: int, source: bytes | None = None) -> None:
        # A slow background write must never land after a newer one.
        with self._write_lock:
            if version >= self._written:
                write_manifest(self.out, manifest, source)
                self._written = version

    async def keep_manifest_fresh(self, interval: float) -> None:
        """Rewrite the manifest at most every `interval` seconds while rows change."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            started = time.perf_counter()
            manifest = self.manifest.table(self.states)
            try:
                await asyncio.to_thread(self._write, manifest, self._version)
            except OSError as exc:  # the next change tries again; the journal is the record
                logger.warning("could not write the manifest in %s: %s", self.out, exc.strerror or exc)
            except Exception:
                logger.exception("could not write the manifest")
            del manifest  # not kept through the pause: 150 MB at 100,000 rows
            await asyncio.to_thread(give_back)  # tens of ms on a large heap: not on the loop the rows run on
            # Big grids take longer to rebuild: never spend more than ~5% of the time on it.
            spent = time.perf_counter() - started
            await asyncio.sleep(max(interval, 20 * spent))


def _partial(folder: Path) -> list[Path]:
    """The partial downloads (`*.part` files) in `folder`, from one listing: a glob of 200,000
    saved videos and posters took 0.3 s of every resume."""
    try:
        with os.scandir(folder) as entries:
            return [Path(e.path) for e in entries if e.name.endswith(PART_SUFFIX) and e.is_file()]
    except OSError:  # none yet
        return []


def owned_by(state: RowState, account: str) -> bool:
    """Whether a row's tasks are on `account`: task ids of another API (an OUT swept before on
    another key, or on an earlier `--emulator`) may repeat and say nothing here."""
    return not state.account or state.account == account


def live_task_ids(states: Mapping[str, RowState], rows: Mapping[str, object]) -> dict[str, str]:
    """Row id -> task id of the rows in `rows` whose task may still run."""
    return {k: s.task_id for k, s in states.items() if s.has_live_task and k in rows}
