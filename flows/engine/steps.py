"""How a row's Run request and its wait run: each as a Prefect task run of its own, or bare.

A row's `submit` and `wait` task runs are what the Prefect UI shows of it, by name and state.
They are also two task runs a row: their state events, and the server recording them, cost
about as much as the sweep's own work. Past `Settings.row_task_runs_max` rows to run (a Prefect
server strains past a few thousand task runs a flow run), the same two steps run as plain
coroutines, the same retries included. The runner then shows the rows as chunk task runs
(`flows.engine.chunks`), and the flow a task run for every row that did not succeed, as it does
for rows without a `wait` task run of their own (`flows.orchestrate.outcomes`).

A row's task runs that succeed log nothing: Prefect's "Finished in state Completed()" line, two a
row, cost the sweep about 2.5 ms a row (console and API log handlers on the event loop's thread)
and the server two log rows, and say no more than the task run's state. Every other line stays:
a failed step's "Finished in state Failed(...)" (ERROR), retries, warnings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prefect.client.schemas.objects import State

from flows.engine.settings import Settings
from wiro_tasks.inputs import Value
from wiro_tasks.prefect_tasks import (
    RunRequest,
    SubmitOutcome,
    WaitRequest,
    outcome_of,
    submit,
    unwalked,
    wait,
    wait_retrying,
)
from wiro_tasks.waiting import WaitOutcome

ROW_TASKS = frozenset({submit.name, wait.name})


class QuietSuccess(logging.Filter):
    """Drops the "Finished in state Completed()" line of a row's `submit` and `wait` task runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno < logging.WARNING
            and getattr(record, "task_name", None) in ROW_TASKS
            and str(record.msg).startswith("Finished in state")
        )


QUIET_SUCCESS = QuietSuccess()


def quiet_row_successes() -> None:
    """Put `QuietSuccess` on Prefect's task-run logger, once a process."""
    task_runs = logging.getLogger("prefect.task_runs")
    if QUIET_SUCCESS not in task_runs.filters:
        task_runs.addFilter(QUIET_SUCCESS)


class Steps:
    """A row's two steps: in task runs of their own (`per_row`) or as plain coroutines."""

    def __init__(self, settings: Settings, per_row: bool = True) -> None:
        self.settings = settings
        self.per_row = per_row
        if per_row:
            quiet_row_successes()

    async def submit(self, model: str, inputs: dict[str, Value], label: str, limit_wait: float,
                     sending: Callable[[bool], None]) -> SubmitOutcome:  # fmt: skip
        """The Run request (`wiro_tasks.prefect_tasks.submit`)."""
        request = RunRequest(model, inputs, limit_wait=limit_wait, sending=sending)
        if not self.per_row:
            return await submit.fn(label, request)
        return await submit(label, unwalked(request))

    async def wait(self, task_id: str, label: str, deadline: datetime) -> WaitOutcome:
        """The task's end (`wiro_tasks.prefect_tasks.wait`); its task run, if it has one, ends as the task did."""
        s = self.settings
        request = WaitRequest(task_id, deadline, s.poll_interval, s.poll_cap, s.error_grace)
        if not self.per_row:
            return await wait_retrying(request)
        # a row that did not succeed ends its task run Failed: still an outcome, so its state is returned
        ended: State[Any] = await wait(label, unwalked(request), return_state=True)  # type: ignore[misc]  # Prefect types return_state=True as sync
        return await outcome_of(ended)
