"""Chunk task runs: what the Prefect UI shows of a sweep whose rows run without task runs of their own.

The rows to run are cut, in the order they start, into chunks of `CHUNK_ROWS`. A chunk's task
run (`rows 1001-2000 of 100000`) runs from its first row's start to its last row's end, and
ends Completed with how its rows ended ("998 succeeded, 2 failed"). The rows that did not
succeed each get a task run of their own from the flow's outcome pass, named and in the state
the row ended in, so the UI's state filter lists the same rows as in a smaller sweep. A chunk
never ends Failed, or that filter would list it beside its rows.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Completed

from flows.engine.window import Process

CHUNK_ROWS = 1000


@task(name="rows", task_run_name="rows {first}-{last} of {total}", cache_policy=NO_CACHE, persist_result=False)
async def rows_chunk(first: int, last: int, total: int, ended: asyncio.Future[str]) -> State[None]:
    """Runs while its rows do (the runner drives them); Completed with how they ended."""
    return Completed(message=await ended)


def summary(counts: Counter[str]) -> str:
    """How a chunk's rows ended: `1,000 rows: 998 succeeded, 2 failed`, the most common first."""
    kinds = ", ".join(f"{n:,} {status}" for status, n in counts.most_common())
    return f"{counts.total():,} rows: {kinds}"


@dataclass
class _Open:
    """A chunk whose task run is running: its rows not yet ended, how those that did ended."""

    left: int
    ended: asyncio.Future[str]
    counts: Counter[str] = field(default_factory=Counter)


class Chunks:
    """The chunk task runs of `total` rows, started in order; `status(row_id)` says how a row ended."""

    def __init__(self, total: int, status: Callable[[str], str], size: int = CHUNK_ROWS) -> None:
        self.total = total
        self.status = status
        self.size = size
        self.started = 0
        self.open: dict[int, _Open] = {}
        self.runs: list[asyncio.Task[State[None]]] = []  # their task runs, each ending with its final state

    def wrap(self, process: Process) -> Process:
        """`process`, each row counted in its chunk, whose task run starts with its first row. A
        row's chunk is fixed as its coroutine is made; one cancelled before it ran never started."""

        def counted(row: dict[str, Any]) -> Coroutine[Any, Any, None]:
            chunk = self.started // self.size
            self.started += 1
            if chunk not in self.open:
                self._open(chunk)
            return self._counted(chunk, row, process)

        return counted

    async def _counted(self, chunk: int, row: dict[str, Any], process: Process) -> None:
        try:
            await process(row)
        finally:
            self._row_ended(chunk, row["row_id"])

    def _open(self, chunk: int) -> None:
        first = chunk * self.size
        last = min(self.total, first + self.size)
        self.open[chunk] = opened = _Open(last - first, asyncio.get_running_loop().create_future())
        run = rows_chunk(first + 1, last, self.total, opened.ended, return_state=True)
        self.runs.append(asyncio.create_task(run))  # type: ignore[arg-type]  # Prefect types it as sync

    def _row_ended(self, chunk: int, row_id: str) -> None:
        opened = self.open[chunk]
        opened.counts[self.status(row_id)] += 1
        opened.left -= 1
        if not opened.left:
            self._close(chunk)

    def _close(self, chunk: int) -> None:
        opened = self.open.pop(chunk)
        if opened.left:  # a stopped sweep: its rows were never started
            opened.counts["not started"] += opened.left
        if not opened.ended.done():  # its task run cancelled under it: what it shows must not stop a row
            opened.ended.set_result(summary(opened.counts))

    async def close(self) -> None:
        """End every chunk still open (rows a stopped sweep never started count as such) and wait
        for their task runs."""
        for chunk in list(self.open):
            self._close(chunk)
        await asyncio.gather(*self.runs, return_exceptions=True)
