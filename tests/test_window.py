"""The runner's window of rows (`flows/engine/window.py`): rows start in order as earlier ones
end, and what goes wrong with one row does not pass unseen or start more."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flows.engine.window import RowTasks


def rows(n: int) -> list[dict[str, Any]]:
    return [{"row_id": f"r{k}"} for k in range(n)]


def test_rows_start_in_order_and_never_more_than_the_window_at_once() -> None:
    started: list[str] = []
    alive = [0, 0]  # now, most

    async def process(row: dict[str, Any]) -> None:
        started.append(row["row_id"])
        alive[0] += 1
        alive[1] = max(alive[1], alive[0])
        await asyncio.sleep(0.001 * (len(started) % 3))
        alive[0] -= 1

    asyncio.run(RowTasks(4).run(rows(40), process))
    assert started == [f"r{k}" for k in range(40)]
    assert alive == [0, 4]


def test_a_row_that_raises_stops_the_starting_and_its_error_comes_out_once_the_others_end() -> None:
    ended: list[str] = []

    async def process(row: dict[str, Any]) -> None:
        if row["row_id"] == "r1":
            raise RuntimeError("a bug in a row")
        await asyncio.sleep(0.01)
        ended.append(row["row_id"])

    tasks = RowTasks(3)
    with pytest.raises(RuntimeError, match="a bug in a row"):
        asyncio.run(tasks.run(rows(50), process))
    assert ended == ["r0", "r2"], "the rows already started end; none starts after the error"
    assert not tasks.alive


def test_one_row_id_twice_is_refused_rather_than_driven_twice() -> None:
    async def process(row: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)

    with pytest.raises(ValueError, match="already being driven"):
        asyncio.run(RowTasks(3).run([{"row_id": "same"}, {"row_id": "same"}], process))


def test_cancelled_it_cancels_the_rows_alive_and_waits_for_them() -> None:
    cleaned: list[str] = []

    async def process(row: dict[str, Any]) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append(row["row_id"])

    async def main() -> RowTasks:
        tasks = RowTasks(2)
        runner = asyncio.create_task(tasks.run(rows(5), process))
        await asyncio.sleep(0.05)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        return tasks

    tasks = asyncio.run(main())
    assert cleaned == ["r0", "r1"]
    assert not tasks.alive
