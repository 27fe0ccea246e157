"""Which task is a row's: claiming the task a Run answer named, and finding the task of a Run
whose answer was lost (or whose process died around one).

A task is claimed for one row only: not another row's in this OUT, and not another OUT's on
this machine (`flows.store.claims`), and a Run answer's task only when its parameters are the
row's own where the answer is in doubt (`RowDriver`). Only several complete Task/List scans,
spread over a while, count as proof that a lost answer created no task; until then the row is
never submitted again.

Task times are the server's, and its `Date` header may disagree with them, so a scan trusts
neither clock alone: each intent records the highest task id this run knew to exist before its
Run was sent (`newest`: a Task/List at the start, Run answers and scans since), and a task
with a higher id is never judged older than the Run, whatever its time says.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from flows.engine.ledger import Ledger
from flows.grid import MODEL
from flows.store.claims import Claims, task_mark
from flows.store.rowstate import RowState
from wiro_tasks import WiroError
from wiro_tasks.inputs import Value
from wiro_tasks.prefect_tasks import find_task, wiro_client
from wiro_tasks.scan import FindOutcome
from wiro_tasks.types import numeric_id

FIND_RETRY_DELAYS = (5.0, 15.0)  # seconds between the Task/List scans that look for a lost answer's task

logger = logging.getLogger("flows.engine")


class TaskMatcher:
    """Ties tasks to rows for one run on one account."""

    def __init__(self, ledger: Ledger, claims: Claims, account: str) -> None:
        self.ledger = ledger
        self.claims = claims
        self.account = account
        self.strays: dict[str, list[str]] = {}  # row id -> matching tasks nobody claimed when it adopted one
        self.newest: int | None = None  # the highest task id known to exist on the account

    def saw(self, task_id: str | int | None) -> None:
        """A task id known to exist now (an answer named it, a scan listed it)."""
        number = numeric_id(str(task_id) if task_id is not None else "")
        if number is not None:
            self.newest = max(self.newest or 0, number)

    async def learn_newest(self) -> None:
        """The newest task on the account before this run submits anything (one Task/List page
        of one task); an empty account's floor is 0. Asked again before each intent while it is
        not known (a failed Task/List); without it, scans judge by time alone."""
        try:
            page = await wiro_client().list_page(start=0, limit=1)
        except WiroError as exc:
            logger.info("Task/List for the newest task id failed (%s): lost answers are matched by time alone", exc)
            return
        self.newest = self.newest or 0
        for task in page.tasks:
            self.saw(task.id)

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
            claimed = self.claimed()
            model = state.model or row[MODEL]
            found: FindOutcome = await find_task(model, inputs, label, since, claimed, since_server,
                                                 state.intent_id_floor)  # fmt: skip
            self.saw(found.newest)
            for task_id in found.task_ids:
                if self.take(task_id, row_id):
                    ledger.record("adopted", row_id, task_id=task_id)
                    others = [t for t in found.task_ids if t != task_id and self.claims.holder(t) is None]
                    others = self.keep_ours(row_id, others)  # the tasks of this row's earlier lost Runs
                    if others:  # nobody has claimed them yet: another OUT's lost answers, or another program's
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

    async def find_pending(self, row: dict[str, Any], inputs: dict[str, Value], label: str) -> str | None:
        """A Run whose answer is late: its task, if one scan finds it (claimed for the row), else None.
        Nothing is recorded as the row's task here: its answer, or its loss, still decides that."""
        row_id, state = row["row_id"], self.ledger.state(row["row_id"])
        since = datetime.fromisoformat(state.intent_at)
        since_server = datetime.fromisoformat(state.intent_server_at) if state.intent_server_at else None
        claimed = self.claimed()
        found: FindOutcome = await find_task(state.model or row[MODEL], inputs, label, since, claimed, since_server,
                                             state.intent_id_floor)  # fmt: skip
        self.saw(found.newest)
        return next((t for t in found.task_ids if self.take(t, row_id)), None)

    def claimed(self) -> frozenset[str]:
        """Every task this OUT's rows hold on this account, their strays included: never another's.
        A frozenset: Prefect walks a list parameter item by item (half a second at 100,000 rows)."""
        return self.ledger.paid_tasks(self.account)

    def keep_ours(self, row_id: str, task_ids: list[str]) -> list[str]:
        """Record as the row's strays (`flows.engine.strays`) the tasks, matching its inputs, that
        its lost Runs whose task was never found account for: one task per such Run, oldest
        first, each numbered above the newest task known before that Run was sent (made after
        it), and claimed for the row. The tasks left (another program's, as far as anyone can
        tell) are returned."""
        state, left = self.ledger.state(row_id), []
        for task_id in task_ids:
            lost = state.unfound[0] if state.unfound else None
            if lost is not None and made_after(task_id, lost.id_floor) and self.take(task_id, row_id):
                self.ledger.record("stray", row_id, task_id=task_id)
                logger.warning("row %s: task %s is a paid task of a lost Run of the row: kept as a stray", row_id,
                               task_id)  # fmt: skip
            else:
                left.append(task_id)
        return left

    def unclaimed_strays(self) -> tuple[str, ...]:
        """Tasks that matched a row's lost answer beside the one it adopted, that none of its lost
        Runs accounts for (`keep_ours`) and that no sweep on this machine has claimed since: not
        provably this sweep's, so not fetched; named in the log and the summary."""
        named = []
        for row_id, task_ids in self.strays.items():
            inputs = self.ledger.state(row_id).inputs or {}
            shown = ", ".join(f"{k}={v!r}" for k, v in inputs.items() if k in ("prompt", "seed", "size", "numFrames"))
            named += [f"task {t} ({shown})" for t in task_ids if self.claims.holder(t) is None]
        for line in named:
            logger.warning("a paid task that no sweep here claimed: %s", line)
        return tuple(named)


def made_after(task_id: str, floor: int | None) -> bool:
    """Whether a task's id is above `floor`, the newest known before a Run was sent (True when
    no floor is known: then the scan's times alone judged it, as for an adopted task)."""
    if floor is None:
        return True
    number = numeric_id(task_id)
    return number is not None and number > floor
