"""Row tasks started in order as earlier ones end, so that only a window of them is alive at once.

Made up front, 100,000 rows were 100,000 coroutines waiting for a concurrency slot (about 210 MiB),
and every ended one stayed referenced until the run's end. A row waiting for its slot gains nothing
by existing early: the slots are taken in the order rows start, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from functools import partial
from typing import Any

Process = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
SPARE = 64  # rows started beyond twice the slots: ready when a slot frees, or ending without one


def window_size(max_concurrency: int) -> int:
    """How many rows may be alive at once: every slot's row, as many more waiting, and a few spare."""
    return 2 * max(1, max_concurrency) + SPARE


class RowTasks:
    """Starts each row's coroutine in the given order, at most `size` alive at once.

    `alive` (row id -> its asyncio task) holds the started rows that have not ended: the cancel
    watcher stops those. `stop()` starts no more rows."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.alive: dict[str, asyncio.Task[None]] = {}
        self._stopped = False
        self._ended_with: list[BaseException] = []

    def stop(self) -> None:
        """No row starts from now on; those alive go on."""
        self._stopped = True

    async def run(self, rows: Iterable[dict[str, Any]], process: Process) -> None:
        """Every row to its end (unless stopped first); a row's unexpected error stops the starting
        and is raised once the started rows have ended. Cancelled, it cancels the rows alive and
        waits for them to end."""
        room = asyncio.Semaphore(self.size)
        try:
            for row in rows:
                await room.acquire()
                if self._stopped:
                    break
                self._start(row, process, room)
            while self.alive:
                await asyncio.wait(list(self.alive.values()))
        except asyncio.CancelledError:
            for task in self.alive.values():
                task.cancel()
            await asyncio.gather(*self.alive.values(), return_exceptions=True)
            raise
        if self._ended_with:
            raise self._ended_with[0]

    def _start(self, row: dict[str, Any], process: Process, room: asyncio.Semaphore) -> None:
        row_id = row["row_id"]
        if row_id in self.alive:  # `expand_grid` merges equal rows: two alive would pay twice for one
            raise ValueError(f"row {row_id} is already being driven")
        task = asyncio.create_task(process(row))
        self.alive[row_id] = task
        task.add_done_callback(partial(self._ended, row_id, room))

    def _ended(self, row_id: str, room: asyncio.Semaphore, task: asyncio.Task[None]) -> None:
        if self.alive.get(row_id) is task:
            del self.alive[row_id]
        room.release()
        if not task.cancelled() and task.exception() is not None:  # a bug: a row catches its own errors
            self._ended_with.append(task.exception())  # type: ignore[arg-type]
            self._stopped = True  # no more rows start, as the gather that raised at once started none
