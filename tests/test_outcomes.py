"""The outcome pass (flows/orchestrate/outcomes.py) against the session's Prefect test server, on a
flow run made for each test: every row that did not succeed shows as a task run in the state the
UI's filter finds it under, once, whatever task runs the sweep left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import State
from prefect.states import Crashed, Failed, Running

from flows.engine.rows import row_label
from flows.orchestrate import outcomes
from flows.orchestrate.outcomes import row_outcome, show_row_outcomes, state_for

pytestmark = pytest.mark.usefixtures("prefect_api")


@flow(name="outcome-test")
def a_sweep() -> None:
    """Never run: the flow the test flow runs are made for."""


def row(n: int, status: str, error: str = "") -> dict[str, Any]:
    return {"row_id": f"{n:02d}" + "ab" * 15, "prompt": f"scene {n}", "seed": "1", "status": status, "error": error}


def shown(runs: Iterable[Any]) -> dict[str, tuple[str, str | None, str | None]]:
    """Task runs by name: (state type, state name, message)."""
    return {r.name: (r.state.type.value, r.state.name, r.state.message) for r in runs}


async def task_runs(client: PrefectClient, flow_run_id: UUID) -> dict[str, tuple[str, str | None, str | None]]:
    runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return shown(runs)


async def left_behind(client: PrefectClient, flow_run_id: UUID, name: str, state: State[Any]) -> None:
    """A task run the sweep's own tasks left, e.g. `wait <label>` Crashed under a cancelled run."""
    await client.create_task_run(row_outcome, flow_run_id, dynamic_key=name, name=name, state=state)


def test_the_ui_state_of_each_final_status() -> None:
    assert (state_for("failed", "CUDA").type.value, state_for("failed", "CUDA").name) == ("FAILED", "Failed")
    assert state_for("failed", "CUDA").message == "failed: CUDA"
    assert state_for("timed_out", "").name == "TimedOut"
    assert state_for("timed_out", "").message == "timed_out: no reason recorded"
    assert {state_for(s, "x").type.value for s in ("cancelled", "skipped", "not_started")} == {"CANCELLED"}


def test_rows_with_no_task_run_get_one_named_after_them_in_their_final_state() -> None:
    rows = [row(1, "succeeded"), row(2, "skipped", "budget: $0.50 would pass"), row(3, "failed", "download failed"),
            row(4, "timed_out", "no end in 600 s"), row(5, "cancelled", "sweep cancelled"),
            row(6, "not_started", "the sweep stopped before its Run request")]  # fmt: skip

    async def scenario() -> tuple[int, int, dict[str, Any]]:
        async with get_client() as client:
            run = await client.create_flow_run(a_sweep, state=Running())
            made = await show_row_outcomes(run.id, rows)
            again = await show_row_outcomes(run.id, rows)
            return made, again, await task_runs(client, run.id)

    made, again, runs = asyncio.run(scenario())
    label = {r["row_id"]: row_label(r) for r in rows}
    assert runs == {
        f"skipped {label[rows[1]['row_id']]}": ("CANCELLED", "Cancelled", "skipped: budget: $0.50 would pass"),
        f"failed {label[rows[2]['row_id']]}": ("FAILED", "Failed", "failed: download failed"),
        f"timed_out {label[rows[3]['row_id']]}": ("FAILED", "TimedOut", "timed_out: no end in 600 s"),
        f"cancelled {label[rows[4]['row_id']]}": ("CANCELLED", "Cancelled", "cancelled: sweep cancelled"),
    }, "the succeeded row shows nothing extra, and the row never started no task run at all"
    assert (made, again) == (4, 0), "a second pass creates nothing twice"


def test_a_crashed_or_unfinished_task_run_takes_its_rows_state_and_a_right_one_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A `wait` task run Crashed under a cancelled sweep, and one of this run still Running on the
    server (its end not recorded yet), are set to their rows' states; one already right stays."""
    monkeypatch.setattr(outcomes, "SETTLE_SECONDS", 0.3)
    crashed, running, right = row(1, "cancelled", "sweep cancelled"), row(2, "failed", "CUDA"), row(3, "timed_out")
    never = row(4, "not_started", "the sweep was cancelled before its Run request")

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with get_client() as client:
            run = await client.create_flow_run(a_sweep, state=Running())
            await left_behind(client, run.id, f"wait {row_label(crashed)}", Crashed(message="cancelled under it"))
            await left_behind(client, run.id, f"wait {row_label(running)}", Running())
            await left_behind(client, run.id, f"wait {row_label(right)}", state_for("timed_out", ""))
            await left_behind(client, run.id, f"submit {row_label(never)}", Crashed(message="cancelled under it"))
            changed = await show_row_outcomes(run.id, [crashed, running, right, never], waited={running["row_id"]})
            return changed, await task_runs(client, run.id)

    changed, runs = asyncio.run(scenario())
    assert changed == 3
    assert runs == {
        f"submit {row_label(never)}": ("CANCELLED", "Cancelled", f"not_started: {never['error']}"),
        f"wait {row_label(crashed)}": ("CANCELLED", "Cancelled", "cancelled: sweep cancelled"),
        f"wait {row_label(running)}": ("FAILED", "Failed", "failed: CUDA"),
        f"wait {row_label(right)}": ("FAILED", "TimedOut", "timed_out: no reason recorded"),
    }, "corrected in place: no second task run for any row"


def test_a_waited_task_run_that_reaches_the_server_late_is_not_shown_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `wait` task run of a row ended Failed in this flow run, but the server records it a
    moment later: the pass waits for it rather than making a `failed <label>` one as well."""
    monkeypatch.setattr(outcomes, "SETTLE_SECONDS", 5.0)
    failed = row(1, "failed", "CUDA")
    name = f"wait {row_label(failed)}"

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with get_client() as client:
            run = await client.create_flow_run(a_sweep, state=Running())

            async def arrives_late() -> None:
                await asyncio.sleep(0.6)
                await left_behind(client, run.id, name, Failed(message="failed: CUDA"))

            changed, _ = await asyncio.gather(show_row_outcomes(run.id, [failed], waited={failed["row_id"]}),
                                              arrives_late())  # fmt: skip
            return changed, await task_runs(client, run.id)

    changed, runs = asyncio.run(scenario())
    assert runs == {name: ("FAILED", "Failed", "failed: CUDA")}
    assert changed == 0


def test_a_waited_task_run_that_never_arrives_is_made_after_the_settling_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcomes, "SETTLE_SECONDS", 0.3)
    failed = row(1, "failed", "CUDA")

    async def scenario() -> dict[str, Any]:
        async with get_client() as client:
            run = await client.create_flow_run(a_sweep, state=Running())
            assert await show_row_outcomes(run.id, [failed], waited={failed["row_id"]}) == 1
            return await task_runs(client, run.id)

    assert asyncio.run(scenario()) == {f"failed {row_label(failed)}": ("FAILED", "Failed", "failed: CUDA")}


def test_more_rows_than_a_page_are_all_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcomes, "PAGE", 2)
    rows = [row(n, "failed", f"reason {n}") for n in range(5)]

    async def scenario() -> tuple[int, int, dict[str, Any]]:
        async with get_client() as client:
            run = await client.create_flow_run(a_sweep, state=Running())
            await left_behind(client, run.id, f"wait {row_label(rows[0])}", Crashed())
            first = await show_row_outcomes(run.id, rows)
            second = await show_row_outcomes(run.id, rows)
            return first, second, await task_runs(client, run.id)

    first, second, runs = asyncio.run(scenario())
    assert (first, second) == (5, 0), "the pass read every page of what it had made"
    assert len(runs) == 5
    assert {state[0] for state in runs.values()} == {"FAILED"}
