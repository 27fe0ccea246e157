"""Past `row_task_runs_max` rows to run, a row's submit and wait run without task runs of their
own; what the Prefect UI shows of the sweep is a task run per chunk of rows, and one for every
row that did not succeed, named after it and in its state, as a smaller sweep shows it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

import flows.engine.runner
import wiro_tasks.prefect_tasks
from flows.engine.chunks import Chunks
from flows.engine.rows import row_label
from flows.engine.window import Process
from wiro_tasks import TransientError, WiroConnectionError
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.prefect_tasks import WaitRequest, wait_retrying
from wiro_tasks.waiting import WaitOutcome

from .conftest import EmulatorFactory
from .test_sweep import grid_file, manifest_rows, run_sweep, task_runs

pytestmark = pytest.mark.usefixtures("prefect_api")

PROMPTS = ["fine", "breaks [emulator:fail]", "stalls [emulator:hang]", "fine too", "fine three"]


def test_past_the_limit_rows_show_as_chunks_and_each_row_that_did_not_succeed_by_name(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    emulator = make_emulator()
    wiro_env(emulator)
    monkeypatch.setattr(flows.engine.runner, "CHUNK_ROWS", 2)
    out = tmp_path / "out"
    state = run_sweep(grid_file(tmp_path, PROMPTS), out, timeout=1.5, row_task_runs_max=4)
    assert state.is_failed()
    rows = manifest_rows(out)
    assert {p: r["status"] for p, r in rows.items()} == {
        "fine": "succeeded", "breaks [emulator:fail]": "failed", "stalls [emulator:hang]": "timed_out",
        "fine too": "succeeded", "fine three": "succeeded"}  # fmt: skip
    assert emulator.account.stats()["tasks"] == 5, "one task a row, as with a task run a step"
    run_id = state.state_details.flow_run_id
    runs = task_runs(run_id)
    label = {p: row_label(r) for p, r in rows.items()}
    shown = {name: (run.state.type.value, run.state.name) for name, run in runs.items()}
    assert shown == {
        "rows 1-2 of 5": ("COMPLETED", "Completed"),
        "rows 3-4 of 5": ("COMPLETED", "Completed"),
        "rows 5-5 of 5": ("COMPLETED", "Completed"),
        f"failed {label['breaks [emulator:fail]']}": ("FAILED", "Failed"),
        f"timed_out {label['stalls [emulator:hang]']}": ("FAILED", "TimedOut"),
    }
    assert list(task_runs(run_id, "Failed")) == [f"failed {label['breaks [emulator:fail]']}"]
    assert rows["breaks [emulator:fail]"]["error"] in runs[f"failed {label['breaks [emulator:fail]']}"].state.message
    said = Counter[str]()
    for name in ("rows 1-2 of 5", "rows 3-4 of 5", "rows 5-5 of 5"):
        _, _, kinds = runs[name].state.message.partition(": ")
        for kind in kinds.split(", "):
            n, status = kind.split(" ", 1)
            said[status] += int(n)
    assert said == Counter(r["status"] for r in rows.values()), "the chunks' messages add up to the manifest"


def test_at_the_limit_every_row_keeps_its_submit_and_wait_task_runs(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    wiro_env(make_emulator())
    out = tmp_path / "out"
    state = run_sweep(grid_file(tmp_path, ["one", "two"]), out, row_task_runs_max=2)
    assert state.is_completed()
    labels = [row_label(r) for r in manifest_rows(out).values()]
    assert set(task_runs(state.state_details.flow_run_id)) == {f"{v} {lb}" for v in ("submit", "wait") for lb in labels}


def chunk_messages(total: int, size: int, drive: Callable[[Chunks, Process], Awaitable[None]]) -> list[str]:
    """In a flow, `drive(chunks, counted)` over `Chunks(total)` of rows that all succeed; the
    messages the chunk task runs ended with, as the UI shows them."""
    from prefect.client.schemas.objects import State

    ended: list[State[None]] = []

    @flow
    async def chunked() -> None:
        chunks = Chunks(total, lambda row_id: "succeeded", size=size)

        async def process(row: dict[str, Any]) -> None:
            await asyncio.sleep(0)

        await drive(chunks, chunks.wrap(process))
        await chunks.close()
        ended.extend(await asyncio.gather(*chunks.runs))

    asyncio.run(chunked())
    assert all(state.is_completed() for state in ended), ended
    return [str(state.message) for state in ended]


def test_a_chunk_of_a_stopped_sweep_counts_the_rows_it_never_started() -> None:
    async def three_of_five(chunks: Chunks, counted: Process) -> None:
        for n in range(3):
            await counted({"row_id": str(n)})

    assert chunk_messages(5, 5, three_of_five) == ["5 rows: 3 succeeded, 2 not started"]


def test_a_row_cancelled_before_it_ran_counts_as_not_started_in_its_own_chunk() -> None:
    """A cancel can reach a row whose coroutine was made but never ran: it stays in its chunk."""

    async def second_cancelled(chunks: Chunks, counted: Process) -> None:
        tasks = [asyncio.create_task(counted({"row_id": str(n)})) for n in range(4)]
        assert len(chunks.runs) == 2, "both chunks open as their rows' coroutines are made"
        tasks[1].cancel()  # before it ran
        await asyncio.gather(*tasks, return_exceptions=True)

    assert chunk_messages(4, 2, second_cancelled) == ["2 rows: 1 succeeded, 1 not started", "2 rows: 2 succeeded"]


def test_a_chunk_task_run_cancelled_under_its_rows_does_not_stop_them() -> None:
    ended: list[BaseException | None] = []

    @flow
    async def chunk_cancelled() -> None:
        chunks = Chunks(2, lambda row_id: "succeeded", size=2)
        go = asyncio.Event()

        async def process(row: dict[str, Any]) -> None:
            await go.wait()

        counted = chunks.wrap(process)
        rows = [asyncio.create_task(counted({"row_id": str(n)})) for n in range(2)]
        await asyncio.sleep(0.5)  # the chunk's task run is running
        chunks.runs[0].cancel()
        await asyncio.gather(chunks.runs[0], return_exceptions=True)
        go.set()
        ended.extend(await asyncio.gather(*rows, return_exceptions=True))
        await chunks.close()

    asyncio.run(chunk_cancelled())
    assert ended == [None, None], "a row ends as it would have, whatever became of its chunk's task run"


@pytest.mark.parametrize("error", [TransientError("busy"), WiroConnectionError("reset")])
def test_a_bare_wait_is_tried_again_as_the_wait_task_is(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    calls: list[str] = []
    done = WaitOutcome(task_id="7", status="succeeded")

    async def flaky(task_id: str, *args: Any) -> WaitOutcome:
        calls.append(task_id)
        if len(calls) < 3:
            raise error
        return done

    monkeypatch.setattr(wiro_tasks.prefect_tasks, "wait_for_end", flaky)
    monkeypatch.setattr(wiro_tasks.prefect_tasks, "WAIT_RETRY_DELAYS", (0.0, 0.0, 0.0))
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    assert asyncio.run(wait_retrying(WaitRequest("7", deadline))) is done
    assert calls == ["7", "7", "7"]

    calls.clear()
    monkeypatch.setattr(wiro_tasks.prefect_tasks, "WAIT_RETRY_DELAYS", (0.0,))
    with pytest.raises(type(error)):
        asyncio.run(wait_retrying(WaitRequest("7", deadline)))
    assert calls == ["7", "7"], "tried once more than there are delays, then raised"
