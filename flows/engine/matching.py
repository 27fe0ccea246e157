"""Which task is a row's: claiming the task a Run answer named, and finding the task of a Run
whose answer was lost (or whose process died around one).

A task is claimed for one row only: not another row's in this OUT, and not another OUT's on
this machine (`flows.store.claims`). Only several complete Task/List scans, spread over a while,
count as proof that a lost answer created no task; until then the row is never submitted again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from flows.engine.ledger import Ledger, owned_by
from flows.grid import MODEL
from flows.store.claims import Claims, task_mark
from flows.store.journal import RowState
from wiro_tasks import WiroError
from wiro_tasks.inputs import Value
from wiro_tasks.prefect_tasks import find_task, wiro_client
from wiro_tasks.scan import FindOutcome

FIND_RETRY_DELAYS = (5.0, 15.0)  # seconds between the Task/List scans that look for a lost answer's task

logger = logging.getLogger("flows.engine")


class TaskMatcher:
    """Ties tasks to rows for one run on one account."""

    def __init__(self, ledger: Ledger, claims: Claims, account: str) -> None:
        self.ledger = ledger
        self.claims = claims
        self.account = account
        self.strays: dict[str, list[str]] = {}  # row id -> matching tasks nobody claimed when it adopted one

    def take(self, task_id: str, row_id: str, task: str = "") -> bool:
        """Claim a task for a row: not another row's here, and not another OUT's on this machine.
        `task` (`claims.task_mark`) says which task has the id now, where that is known."""
        if self.ledger.held_by_another(task_id, row_id, self.account):
            return False
        return self.claims.claim(task_id, row_id, task)

    async def take_answered(self, task_id: str, row_id: str, socket_token: str) -> bool:
        """`take` for the task a Run answer named. Another OUT's claim on the id, made for another
        task (a server that started its ids again), does not block it once Task/Detail shows
        that the id is now this answer's task: that claim is taken over."""
        mark = task_mark(socket_token)
        if self.take(task_id, row_id, mark):
            return True
        recorded = self.claims.recorded_task(task_id)
        if self.ledger.held_by_another(task_id, row_id, self.account) or recorded in ("", mark):
            return False
        try:
            now = await wiro_client().detail(task_id)
        except WiroError as exc:
            logger.warning("row %s: Task/Detail of task %s, claimed for another task: %s", row_id, task_id, exc)
            return False
        if task_mark(now.socket_token) != mark or not self.claims.take_over(task_id, row_id, mark):
            return False
        self.ledger.record("note", row_id, error=f"task id {task_id} was claimed on this machine for an earlier task "
                           "with that id (a server that started its ids again): that claim was taken over")  # fmt: skip
        return True

    async def find(self, row: dict[str, Any], inputs: dict[str, Value], label: str, state: RowState) -> None:
        """A Run answer was lost: adopt its task if it exists, else record that none was made.

        Times are judged on Wiro's clock (`find_task`), and a match that another row or another
        OUT on this machine has claimed is never adopted: it is theirs, and theirs is this row's
        if both lost answers."""
        row_id, ledger = row["row_id"], self.ledger
        since = datetime.fromisoformat(state.intent_at)
        since_server = datetime.fromisoformat(state.intent_server_at) if state.intent_server_at else None
        for delay in (0.0, *FIND_RETRY_DELAYS):
            await asyncio.sleep(delay)
            claimed = [t for s in ledger.states.values() if owned_by(s, self.account) for t in s.task_ids]
            model = state.model or row[MODEL]
            found: FindOutcome = await find_task(model, inputs, label, since, claimed, since_server)
            for task_id in found.task_ids:
                if self.take(task_id, row_id):
                    ledger.record("adopted", row_id, task_id=task_id)
                    others = [t for t in found.task_ids if t != task_id and self.claims.holder(t) is None]
                    if others:  # nobody has claimed them yet: another OUT's lost answers, or paid strays
                        ledger.record("note", row_id, error=f"unclaimed tasks with these inputs: {' '.join(others)}")
                        self.strays[row_id] = others
                    return
            if found.blind:  # no scan on this account can tell: every further lost answer would be a row in doubt
                ledger.record("note", row_id, error=f"{found.blind}; not resubmitted")
                why = f"not submitted: a lost Run answer cannot be traced: {found.blind}"
                ledger.halt.reason = ledger.halt.reason or why
                raise LookupError(found.blind)
            if not found.complete:
                ledger.record("note", row_id, error="Task/List too long to prove no task exists; not resubmitted")
                raise LookupError(f"could not scan back to {state.intent_at}")
        ledger.record("no_task", row_id, reason="the lost Run answer created no task")

    def unclaimed_strays(self) -> tuple[str, ...]:
        """Tasks that matched a row's lost answer beside the one it adopted, and that no sweep on this
        machine has claimed since: paid, in no manifest. Named in the log and the summary."""
        named = []
        for row_id, task_ids in self.strays.items():
            inputs = self.ledger.state(row_id).inputs or {}
            shown = ", ".join(f"{k}={v!r}" for k, v in inputs.items() if k in ("prompt", "seed", "size", "numFrames"))
            named += [f"task {t} ({shown})" for t in task_ids if self.claims.holder(t) is None]
        for line in named:
            logger.warning("a paid task that no sweep here claimed: %s", line)
        return tuple(named)
