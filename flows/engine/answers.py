"""A row's Run answer: whether the task it names is the row's, and finding the task of a Run
whose answer is late so the budget guard can stop it.

A Run answer whose task may not be the row's is checked before it is claimed: one that names
the same task as another Run's answer, one still in doubt `DOUBT_WAIT_SECONDS` after it came
because a Run sent before it is still unanswered (a server may name that Run's task), one naming
a task older than the Run (`TaskMatcher.newest`), or one that differs from the task found while
it was late. Its task's parameters (Task/Detail) must be the row's own; if not, the answer
counts as lost and the row looks for its own task. Answers in the usual order cost no request
more.

With a budget, a Run whose answer is `RUN_LATE_SECONDS` late has its task looked for in
Task/List (as for a lost answer), again at growing pauses, so the guard can stop it
(`BudgetGuard.pending`). Lateness counts from the attempt in flight: a Run refused with code
96 or 429 (no task made) is sent again, late from then on. A task so found that the answer shows
was another's (another OUT's, with the same inputs) is given up once the row claims its own: its
claim is released for its owner, and a stop the guard sent it no longer counts for the row
(`BudgetGuard.own_task`), whose own task is stopped in its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

from flows.engine.budget import RUN_LATE_SECONDS
from flows.engine.guard import BudgetGuard
from flows.engine.ledger import Ledger
from flows.engine.matching import TaskMatcher
from flows.engine.steps import Steps
from flows.grid import MODEL
from wiro_tasks import WiroError
from wiro_tasks.inputs import Value
from wiro_tasks.prefect_tasks import SubmitOutcome, wiro_client
from wiro_tasks.scan import inputs_match
from wiro_tasks.types import numeric_id

RUN_LATE_MAX_GAP = 30.0  # the longest pause between two looks for a late Run's task
LATE_TICK_SECONDS = 0.5  # how often a Run awaiting its answer is looked at (no request unless it is late)
DOUBT_WAIT_SECONDS = 1.0  # how long an answer waits for those of Runs sent before it, before Task/Detail decides

logger = logging.getLogger("flows.engine")


class RunAnswers:
    """Sends the Run requests of one run's rows and judges their answers."""

    def __init__(self, ledger: Ledger, guard: BudgetGuard, matcher: TaskMatcher, steps: Steps) -> None:
        self.ledger = ledger
        self.steps = steps
        self.guard = guard
        self.matcher = matcher
        self.sending: dict[str, int] = {}  # rows whose Run answer is awaited -> the order their Runs were sent in
        self.attempted: dict[str, float] = {}  # ... -> when its attempt in flight went out
        self.named: dict[str, set[str]] = {}  # task id -> rows whose Run answer named it
        self._order = itertools.count()
        self._answers = asyncio.Condition()  # a Run answer came (or its request ended)

    async def send(self, row: dict[str, Any], inputs: dict[str, Value], label: str,
                   limit_wait: float) -> tuple[SubmitOutcome, str]:  # fmt: skip
        """The Run request's outcome, its task claimed for the row when it names one; and why the
        task it names is not the row's ("" when it is, or when it names none)."""
        outcome, order = await self._send(row, inputs, label, limit_wait)
        why = await self._claim(row, inputs, outcome, order) if outcome.kind == "submitted" else ""
        return outcome, why

    async def _send(self, row: dict[str, Any], inputs: dict[str, Value], label: str,
                    limit_wait: float) -> tuple[SubmitOutcome, int]:  # fmt: skip
        """The Run request and the order its last attempt was sent in (a Run refused with code 96
        or 429 is sent again). While its answer is late, its task is looked for."""
        row_id = row["row_id"]
        answered = asyncio.Event()
        self._sending(row_id, True)
        looking = (
            asyncio.create_task(self._look_while_late(row, inputs, label, answered))
            if self.guard.limit is not None
            else None
        )  # without a budget, no guard to hand a task to
        outcome: SubmitOutcome | None = None
        try:
            outcome = await self.steps.submit(row[MODEL], inputs, label, limit_wait,
                                              lambda out: self._sending(row_id, out))  # fmt: skip
        finally:
            if outcome is not None and outcome.kind == "submitted":
                self.matcher.saw(outcome.task_id)
                self.named.setdefault(outcome.task_id, set()).add(row_id)
            order = self.sending.pop(row_id, -1)
            self.attempted.pop(row_id, None)
            answered.set()
            if outcome is None and looking is not None:  # cancelled (or failed): no look for its task now
                looking.cancel()
            async with self._answers:
                self._answers.notify_all()
            if looking is not None:
                await asyncio.gather(looking, return_exceptions=True)
        assert outcome is not None  # `submit` returned
        return outcome, order

    def _sending(self, row_id: str, out: bool) -> None:
        """A Run attempt for the row goes out now (`out`), or was refused without a task."""
        if out:
            self.sending[row_id] = next(self._order)
            self.attempted[row_id] = time.monotonic()
        else:
            self.sending.pop(row_id, None)
            self.attempted.pop(row_id, None)

    async def _in_doubt(self, task_id: str, order: int) -> bool:
        """Whether a Run answer may name another Run's task: another answer named it too, or a Run
        sent before it is still unanswered `DOUBT_WAIT_SECONDS` on (usually its answer comes first)."""

        def earlier_answered() -> bool:
            return all(sent > order for sent in self.sending.values())

        if not earlier_answered():
            async with self._answers:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._answers.wait_for(earlier_answered), DOUBT_WAIT_SECONDS)
        return not earlier_answered() or len(self.named.get(task_id, ())) > 1

    async def _look_while_late(self, row: dict[str, Any], inputs: dict[str, Value], label: str,
                               answered: asyncio.Event) -> None:  # fmt: skip
        """With a budget, a Run whose answer is late: find its task (Task/List, as for a lost answer),
        so the guard can stop it (`BudgetGuard.pending`) before its answer comes. Lateness counts
        from the attempt in flight (none between attempts refused without a task)."""
        row_id, pause, attempt, due = row["row_id"], RUN_LATE_SECONDS, 0.0, 0.0
        while not answered.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered.wait(), LATE_TICK_SECONDS)
            sent = self.attempted.get(row_id)
            if answered.is_set() or sent is None:
                continue
            if sent != attempt:  # a new attempt: late from then on
                attempt, pause = sent, RUN_LATE_SECONDS
                due = sent + pause
            if time.monotonic() < due:
                continue
            if await self._look_once(row, inputs, label, answered):
                return
            pause = min(pause * 2, RUN_LATE_MAX_GAP)
            due = time.monotonic() + pause

    async def _look_once(self, row: dict[str, Any], inputs: dict[str, Value], label: str,
                         answered: asyncio.Event) -> bool:  # fmt: skip
        """One look for a late Run's task; whether it was found (and handed to the guard)."""
        row_id = row["row_id"]
        try:
            task_id = await self.matcher.find_pending(row, inputs, label)
        except Exception as exc:  # a look that failed is tried again; the answer may still come
            logger.warning("row %s: looking for the task of a late Run answer: %s", row_id, exc)
            return False
        if not task_id:
            return False
        # Claimed: an answer that came meanwhile decides whether it is the row's (`own`).
        self.guard.pending[row_id] = task_id
        if answered.is_set():
            return False
        self.ledger.record("note", row_id, error=f"its Run answer is late: its task {task_id} was found in "
                           "Task/List, for the budget guard to stop if it must")  # fmt: skip
        return True

    async def _claim(self, row: dict[str, Any], inputs: dict[str, Value], outcome: SubmitOutcome, order: int) -> str:
        """Claim the task a Run answer named; why it is not this row's, or "" when it is claimed.

        An answer in doubt (see the module docstring) is believed only when its task's parameters
        (Task/Detail) are the row's own."""
        row_id, task_id = row["row_id"], outcome.task_id
        found = self.guard.pending.get(row_id, "")
        floor = self.ledger.state(row_id).intent_id_floor
        number = numeric_id(task_id)
        older = floor is not None and number is not None and number <= floor
        in_doubt = older or found not in ("", task_id) or await self._in_doubt(task_id, order)
        held = self.ledger.held_by_another(task_id, row_id, self.matcher.account)  # then `take` refuses it anyway
        if in_doubt and not held and not await self._made_from(row, inputs, task_id):
            return f"the Run answer named task {task_id}, whose parameters are not this row's"
        if not await self.matcher.take_answered(task_id, row_id, outcome.socket_token):  # one id given to two Runs
            return f"the Run answer named task {task_id}, which another row holds"
        self.own(row_id, task_id)
        return ""

    def own(self, row_id: str, task_id: str) -> None:
        """The row's task is `task_id` (its answer's, or one adopted after a lost or refused
        answer): a task claimed for it while its answer was late that is another is given up, for
        its own row to claim, and the guard is told."""
        found = self.guard.pending.get(row_id, "")
        if found not in ("", task_id):
            self.matcher.claims.release(found, row_id)
        self.guard.own_task(row_id, task_id)

    async def _made_from(self, row: dict[str, Any], inputs: dict[str, Value], task_id: str) -> bool:
        """Whether Task/Detail says the task was made from this row's inputs (False when it cannot say)."""
        try:
            task = await wiro_client().detail(task_id)
        except WiroError as exc:
            logger.warning("row %s: Task/Detail of task %s, named by its Run answer: %s", row["row_id"], task_id, exc)
            return False
        return inputs_match(row[MODEL], task, inputs)
