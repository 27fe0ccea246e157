"""Every row that did not succeed shows in the Prefect UI as a task run in a state its filters find.

A `wait` task run already ends as its Wiro task did (Failed, TimedOut, Cancelled: see
`wiro_tasks.prefect_tasks.as_state`). This pass, at the end of a sweep, covers the rest of the
rows that did not succeed:

- a row with no such task run in this flow run (skipped by the budget, refused at submission, a
  download that failed, failed in an earlier run and not retried, or run without task runs of its
  own past `row_task_runs_max` rows: `flows.engine.steps`) gets one, named
  `<status> <row label>`, created in its final state;
- a task run Crashed because the sweep was cancelled under it takes the state its row ended in;
- a `wait` task run that ended as its Wiro task did while its row says more takes the row's
  status and reason: a task the budget stopped ended `task_cancel`, and its row is `skipped:
  budget: stopped while running, ...`, as the manifest says.

So the UI's state filter lists exactly the rows of each kind: Failed the failed rows, TimedOut
the timed-out ones, Cancelled the cancelled and skipped ones. A row the sweep stopped before
(`not_started`) ran nothing and gets no task run; one of its own left Crashed or unfinished
reads Cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Coroutine, Iterable, Mapping
from typing import Any
from uuid import UUID

from prefect import task
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterName,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import State, StateType, TaskRun
from prefect.states import Cancelled, Failed

from flows.engine.rows import row_label
from flows.store.manifest import NOT_STARTED

PAGE = 200
CONCURRENT_CALLS = 8
SETTLE_SECONDS = 30.0  # how long a `wait` task run that ended not Completed may take to reach the server (a
# loaded server took over 10 s in CI, and the row was shown twice); waited only while one is missing
STOPPED_SETTLE_SECONDS = 5.0  # ... in a stopped run, whose process a worker kills 30 s after its SIGTERM


@task(name="row", task_run_name="{status} {label}")
def row_outcome(status: str, label: str) -> None:
    """Never run: the task its outcome runs are recorded under (created straight in their end state)."""


def state_for(status: str, error: str) -> State[Any]:
    """The Prefect state a row's final status reads as in the UI."""
    message = f"{status}: {error or 'no reason recorded'}"
    if status in ("cancelled", "skipped", NOT_STARTED):
        return Cancelled(message=message)
    return Failed(message=message, name="TimedOut" if status == "timed_out" else "Failed")


async def show_row_outcomes(
    flow_run_id: UUID, rows: Iterable[Mapping[str, Any]], waited: Collection[str] = (), stopped: bool = False
) -> int:
    """Make the UI show each of `rows` (manifest records) that did not succeed; how many task runs
    were created or corrected. `waited` names the rows (by id) whose `wait` task ran in this flow
    run: the server records task runs a moment after they end, so those are waited for (up to
    `SETTLE_SECONDS`, or `STOPPED_SETTLE_SECONDS` in a `stopped` run) rather than shown twice."""
    todo = [r for r in rows if r["status"] != "succeeded"]
    if not todo:
        return 0
    async with get_client() as client:
        expected = {f"wait {row_label(r)}" for r in todo if r["row_id"] in waited}
        shown = await _unfinished_task_runs(client, flow_run_id)
        deadline = time.monotonic() + (STOPPED_SETTLE_SECONDS if stopped else SETTLE_SECONDS)
        while not expected <= shown.keys() and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            shown = await _unfinished_task_runs(client, flow_run_id)
        if not expected <= shown.keys():  # recorded, but its end not yet: it is corrected below, never doubled
            shown = {**await _task_runs_named(client, flow_run_id, sorted(expected - shown.keys())), **shown}
        calls: list[Coroutine[Any, Any, object]] = []
        for row in todo:
            label = row_label(row)
            wanted = state_for(str(row["status"]), str(row.get("error") or ""))
            runs = [
                shown[f"{verb} {label}"] for verb in ("wait", "submit", row["status"]) if f"{verb} {label}" in shown
            ]
            if any(_shows(r, wanted) for r in runs):
                continue
            stale = [r for r in runs if r.state and (r.state.type is StateType.CRASHED or not r.state.is_final()
                                                     or r.state.type is wanted.type)]  # fmt: skip
            if stale:
                calls.append(client.set_task_run_state(stale[0].id, wanted, force=True))
            elif row["status"] != NOT_STARTED:
                calls.append(client.create_task_run(row_outcome, flow_run_id, dynamic_key=f"row-{row['row_id']}",
                                                    name=f"{row['status']} {label}", state=wanted))  # fmt: skip
        limit = asyncio.Semaphore(CONCURRENT_CALLS)

        async def call(coroutine: Any) -> None:
            async with limit:
                await coroutine

        await asyncio.gather(*(call(c) for c in calls))
    return len(calls)


def _shows(run: TaskRun, wanted: State[Any]) -> bool:
    """Whether a task run already reads as `wanted`: its state, and its row's status and reason (a
    task the budget stopped ended `cancelled` in its `wait` run; its row is `skipped: budget: ...`)."""
    state = run.state
    said = (wanted.message or "").split(":", 1)[0] + ":"
    return state is not None and (state.type, state.name) == (wanted.type, wanted.name) and (
        state.message or "").startswith(said)  # fmt: skip


async def _task_runs_named(client: PrefectClient, flow_run_id: UUID, names: list[str]) -> dict[str, TaskRun]:
    """This flow run's task runs of these names, in whatever state the server has them."""
    found: dict[str, TaskRun] = {}
    for start in range(0, len(names), PAGE):  # a page of names, a page of runs
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=names[start : start + PAGE])),
            limit=PAGE,
        )
        found.update((run.name, run) for run in runs)
    return found


async def _unfinished_task_runs(client: PrefectClient, flow_run_id: UUID) -> dict[str, TaskRun]:
    """This flow run's task runs that did not complete, by name."""
    found: dict[str, TaskRun] = {}
    offset = 0
    ended = TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED, StateType.CANCELLED])
    while True:
        page = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=ended)),
            offset=offset,
            limit=PAGE,
        )
        found.update((run.name, run) for run in page)
        if len(page) < PAGE:
            return found
        offset += PAGE
