"""The row driver: one row's state machine, driven by its journal state so a resumed sweep picks
up where the last one stopped:

    new --intent--> submit --submitted--> wait --finished--> (downloaded)
                      |  \\--unknown--> find the task --adopted--> wait
                      |                        \\--no_task--> new (submit again)
                      \\--refused / no balance / over budget--> failed / skipped

A Run's answer is judged by `RunAnswers` (answers.py): one whose task may not be the row's
counts as lost, and a late one's task is found meanwhile for the budget guard.

A row holds a concurrency slot from before its Run request until its task is final, so the Wiro
tasks in flight never exceed `max_concurrency`; the download needs no slot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from flows.engine.account import AccountSlots
from flows.engine.answers import RunAnswers
from flows.engine.guard import BudgetGuard
from flows.engine.ledger import Ledger
from flows.engine.matching import TaskMatcher
from flows.engine.progress import publish
from flows.engine.rows import VIDEOS, iso, needs_work, row_label, run_inputs, video_name
from flows.engine.settings import Settings
from flows.engine.steps import Steps
from flows.engine.strays import StrayKeeper
from flows.engine.uploads import ImageUploads
from flows.grid import MODEL
from wiro_tasks.inputs import Value
from wiro_tasks.prefect_tasks import Saved, fetch, wiro_client
from wiro_tasks.waiting import WaitOutcome

MAX_SUBMIT_ATTEMPTS = 5
LOST_ANSWER_SETTLE_SECONDS = 1.0
SLOT_WAIT_SECONDS = 6 * 3600.0  # how long code 96 (account full) is waited out before a row gives up

logger = logging.getLogger("flows.engine")


class RowDriver:
    """Drives rows of one run: submit, wait, download, each step recorded in the ledger."""

    def __init__(self, ledger: Ledger, guard: BudgetGuard, uploads: ImageUploads, matcher: TaskMatcher,
                 settings: Settings, steps: Steps) -> None:  # fmt: skip
        self.ledger = ledger
        self.steps = steps
        self.guard = guard
        self.uploads = uploads
        self.matcher = matcher
        self.settings = settings
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        name = settings.concurrency_limit_name
        self.account = AccountSlots(name) if name else None  # shared by every run on the Wiro account
        self.not_succeeded: set[str] = set()  # rows whose `wait` task run in this flow run ended otherwise
        self.answers = RunAnswers(ledger, guard, matcher, self.steps)
        self.strays = StrayKeeper(ledger, guard, matcher, settings)

    async def process(self, row: dict[str, Any]) -> None:
        row_id = row["row_id"]
        try:
            state = self.ledger.states.get(row_id)
            if needs_work(state, self.settings.retry_failed) and not self._paid_not_saved(row_id):
                async with self.slots, self._account_slot():
                    await self._drive(row)
            if self._paid_not_saved(row_id):  # the download needs no Wiro slot: the next task starts
                await self._download(row)
            await self.strays.keep(row)  # tasks paid for the row that it did not adopt
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a row's failure must not stop the others
            logger.exception("row %s: %s", row_id, exc)
            self.ledger.record("download_failed" if self.ledger.state(row_id).phase == "finished" else "note",
                               row_id, error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        finally:
            await self.guard.end(row_id)
            self.ledger.through_with(row_id)
            publish(self.ledger.progress(self.guard.spent, row_id, self.ledger.status.get(row_id, "")))

    def _account_slot(self) -> AbstractAsyncContextManager[object]:
        """A slot of the global concurrency limit shared by every run on this Wiro account."""
        return self.account.slot() if self.account else nullcontext()

    async def close(self) -> None:
        """The rows have ended: the account's slots go back."""
        if self.account:
            await self.account.close()

    async def _drive(self, row: dict[str, Any]) -> None:
        row_id = row["row_id"]
        label = row_label(row)
        submissions = 0
        while True:
            state = self.ledger.state(row_id)
            if state.has_live_task:
                await self._wait(row)  # a task stopped yet never seen to end is looked at again, never paid again
                return
            if state.phase in ("intent", "unknown"):  # looked for by what its Run request sent
                await self.matcher.find(row, state.inputs or run_inputs(row), label, state)
                if state.phase == "submitted":  # adopted
                    self.answers.own(row_id, state.task_id)
                continue
            if submissions >= MAX_SUBMIT_ATTEMPTS:
                self.ledger.record("finished", row_id, status="failed", error=f"no task after {submissions} tries")
                return
            submissions += 1
            if not await self.guard.admit(row_id):
                return
            inputs = await self.uploads.inputs(row, label)
            if inputs is None:  # its hold is released as the row ends (`process`)
                return
            await self._submit(row, inputs, label)
            if self.ledger.state(row_id).phase in ("finished", "skipped"):
                return

    async def _submit(self, row: dict[str, Any], inputs: dict[str, Value], label: str) -> None:
        row_id, ledger, halt = row["row_id"], self.ledger, self.ledger.halt
        offset = wiro_client().server_clock.offset
        server_at = iso(time.time() + offset.low) if offset else ""  # the moment on Wiro's clock, at the earliest
        if self.matcher.newest is None:  # the run's first look failed: no intent goes without a floor if it can help
            await self.matcher.learn_newest()
        floor = {} if self.matcher.newest is None else {"id_floor": self.matcher.newest}  # ids above it are new
        ledger.record("intent", row_id, inputs=inputs, server_at=server_at, model=row[MODEL],
                      account=self.matcher.account, **floor)  # fmt: skip
        if not await ledger.commit(durable=True):  # whole and on disk before the request that may cost money
            ledger.record("no_task", row_id, reason="its intent could not be written: no Run request was sent")
            ledger.record("skipped", row_id, reason=halt.reason)
            return
        if halt.cancelled:
            ledger.record("no_task", row_id, reason="the sweep was cancelled before its Run request")
            return
        self.guard.launch(row_id)  # a per-second task may be billed from here on
        outcome, why = await self.answers.send(row, inputs, label, limit_wait=SLOT_WAIT_SECONDS)
        if why:  # this row's own task, if its Run made one, is looked for like a lost answer's
            ledger.record("unknown", row_id, error=f"{why}: looking for this row's own task")
            await asyncio.sleep(LOST_ANSWER_SETTLE_SECONDS)
        elif outcome.kind == "submitted":
            ledger.record("submitted", row_id, task_id=outcome.task_id)
        elif outcome.kind == "unknown":
            ledger.record("unknown", row_id, error=outcome.message)
            await asyncio.sleep(LOST_ANSWER_SETTLE_SECONDS)
        else:
            ledger.record("no_task", row_id, reason=outcome.message)  # the row ends: `process` releases its hold
            if outcome.kind in ("balance", "auth", "unreachable"):
                halt.reason = f"not submitted: {outcome.message}"
                ledger.record("skipped", row_id, reason=halt.reason)
            else:
                ledger.record("finished", row_id, status="failed", error=outcome.message, task_id="")

    async def _wait(self, row: dict[str, Any]) -> None:
        row_id = row["row_id"]
        state = self.ledger.state(row_id)
        started = datetime.fromisoformat(state.submitted_at) if state.submitted_at else None
        deadline = (started or datetime.now(UTC)) + timedelta(seconds=self.settings.timeout)
        already = state.costs.get(state.task_id, Decimal(0))  # billed in an earlier run, counted already
        finished_at = state.finished_at  # an unended task's record, from an earlier run
        outcome = await self.steps.wait(state.task_id, row_label(row), deadline)
        if outcome.status != "succeeded" and self.steps.per_row:
            self.not_succeeded.add(row_id)  # its `wait` task run shows it in the UI
        stopped = state.phase == "finished" and state.finished_at != finished_at  # meanwhile (Cancel, Ctrl-C):
        if stopped and state.task_id == outcome.task_id:
            await self.guard.settle(row_id, state.costs.get(outcome.task_id, Decimal(0)) - already)  # recorded once
            return
        cost = self._finish(row_id, outcome)
        await self.guard.settle(row_id, cost - already)

    def _finish(self, row_id: str, outcome: WaitOutcome) -> Decimal:
        """Record how a row's task ended; what it cost (an estimate where Wiro's figure was garbage)."""
        cost, note = self.guard.bill(row_id, outcome)
        error = "; ".join(part for part in (outcome.error, note) if part)
        stopped = outcome.status == "cancelled" and row_id in self.guard.stopped
        self.ledger.record(
            "finished",
            row_id,
            task_id=outcome.task_id,
            status=outcome.status,
            error=error,
            cost=str(cost),
            elapsed=str(outcome.elapsed) if outcome.elapsed is not None else "",
            output_url=outcome.output_url,
            output_bytes=outcome.output_bytes,
            at=iso(outcome.noticed_at),
            **({} if outcome.ended else {"ended": False}),  # a rerun looks at it again
        )
        if stopped:  # skipped, as rows the budget never let start: a rerun with more budget submits it again
            self.ledger.record("skipped", row_id, reason=f"{self.guard.stopped[row_id]}; ${cost:.6f} billed for it")
        return cost

    def _paid_not_saved(self, row_id: str) -> bool:
        state = self.ledger.state(row_id)
        return state.phase == "finished" and state.status == "succeeded" and not state.downloaded

    async def _download(self, row: dict[str, Any]) -> None:
        """Save a succeeded task's output under OUT/videos, by a name from the row."""
        row_id = row["row_id"]
        state = self.ledger.state(row_id)
        dest = self.ledger.out / VIDEOS / video_name(row)
        saved: Saved = await fetch(state.task_id, state.output_url, state.output_bytes_expected, str(dest))
        if saved.path:
            relative = Path(saved.path).resolve().relative_to(self.ledger.out)
            self.ledger.record("downloaded", row_id, path=str(relative), sha256=saved.sha256, bytes=saved.size)
        else:
            self.ledger.record("download_failed", row_id, error=saved.error)
