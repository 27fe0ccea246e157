"""How a row's Run request and its wait run: each as a Prefect task run of its own, or bare.

A row's `submit` and `wait` task runs are what the Prefect UI shows of it, by name and state.
They are also two task runs a row: their state events, and the server recording them, cost
about as much as the sweep's own work. Past `Settings.row_task_runs_max` rows to run (a Prefect
server strains past a few thousand task runs a flow run), the same two steps run as plain
coroutines, the same retries included. The runner then shows the rows as chunk task runs
(`flows.engine.chunks`), and the flow a task run for every row that did not succeed, as it does
for rows without a `wait` task run of their own (`flows.orchestrate.outcomes`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from prefect.client.schemas.objects import State

from flows.engine.settings import Settings
from wiro_tasks.inputs import Value
from wiro_tasks.prefect_tasks import SubmitOutcome, outcome_of, submit, wait, wait_retrying
from wiro_tasks.waiting import WaitOutcome


class Steps:
    """A row's two steps: in task runs of their own (`per_row`) or as plain coroutines."""

    def __init__(self, settings: Settings, per_row: bool = True) -> None:
        self.settings = settings
        self.per_row = per_row

    async def submit(self, model: str, inputs: dict[str, Value], label: str, limit_wait: float,
                     sending: Callable[[bool], None]) -> SubmitOutcome:  # fmt: skip
        """The Run request (`wiro_tasks.prefect_tasks.submit`)."""
        run = submit if self.per_row else submit.fn
        return await run(model, inputs, label, limit_wait=limit_wait, sending=sending)

    async def wait(self, task_id: str, label: str, deadline: datetime) -> WaitOutcome:
        """The task's end (`wiro_tasks.prefect_tasks.wait`); its task run, if it has one, ends as the task did."""
        s = self.settings
        if not self.per_row:
            return await wait_retrying(task_id, deadline, s.poll_interval, s.poll_cap, s.error_grace)
        ended: State[Any] = await wait(  # type: ignore[misc]  # Prefect types return_state=True as sync
            task_id,
            label,
            deadline,
            poll_interval=s.poll_interval,
            poll_cap=s.poll_cap,
            error_grace=s.error_grace,
            return_state=True,  # a row that did not succeed ends its task run Failed: still an outcome
        )
        return await outcome_of(ended)
