"""The budget guard: which row may be submitted now (admission), and which running tasks to stop
before the bill could pass the budget. The arithmetic is `Budget`'s; this holds it to the rows.

Prices come from Tool/Detail once per model. Rates that a task's own records gave while it was
waited for come from the run's `WiroSession` (`rates`): a task billed dearer than advertised is
counted at its own rate from then on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flows.engine.budget import UNANSWERED_SECONDS, Budget, least_bill, work_by_row
from flows.engine.ledger import Ledger
from flows.engine.rows import maybe_live, quote_rows
from flows.engine.settings import Settings
from flows.grid import MODEL
from flows.store.rowstate import RowState
from wiro_tasks import Quote, TaskStateError, ToolPrice, WiroError
from wiro_tasks.prefect_tasks import current_session, wiro_client
from wiro_tasks.waiting import WaitOutcome

logger = logging.getLogger("flows.engine")


class BudgetGuard:
    """Admission and stopping for the rows of one run, on the budget they share."""

    def __init__(self, ledger: Ledger, rows: Iterable[Mapping[str, Any]], settings: Settings,
                 rates: Mapping[str, Decimal]) -> None:  # fmt: skip
        self.ledger = ledger
        self.limit = settings.budget
        self.rates = rates
        self.work = work_by_row(rows)
        self.quotes: dict[str, Quote | None] = {}  # row id -> its price, once Tool/Detail has been asked
        self.stopped: dict[str, str] = {}  # row id -> why the guard stopped its running task
        self.pending: dict[str, str] = {}  # row id -> its task, found while its Run answer is late
        self.changed = asyncio.Condition()  # a hold ended or was settled: rows waiting on the budget look again
        self._stopping: set[asyncio.Task[None]] = set()
        spent, observed = self._billed(ledger.states)
        self.budget = Budget(settings.budget, spent=spent, estimate_usd=settings.estimate_usd, observed_rates=observed,
                             unanswered=UNANSWERED_SECONDS)  # fmt: skip

    def _billed(self, states: Mapping[str, RowState]) -> tuple[Decimal, list[Decimal]]:
        """What the rows' tasks cost together, and the rates (cost per work unit) their finished
        ones were billed at: for each work, its dearest task's (the budget takes the dearest rate)."""
        spent = Decimal(0)
        dearest: dict[Decimal, Decimal] = {}  # work -> the dearest finished task of that work
        for row_id, state in states.items():
            cost = state.cost
            spent += cost
            work = self.work.get(row_id)
            if work is not None and cost > 0 and state.phase == "finished" and cost > dearest.get(work, 0):
                dearest[work] = cost
        return spent, [cost / work for work, cost in dearest.items()]

    @property
    def spent(self) -> Decimal:
        return self.budget.spent

    async def price(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Each row's quote, from its model's Tool/Detail (asked once per model)."""
        rows = list(rows)
        prices = {model: await self._price(model) for model in dict.fromkeys(r[MODEL] for r in rows)}
        for r, quote in zip(rows, quote_rows(rows, prices), strict=True):
            self.quotes[r["row_id"]] = quote

    async def _price(self, model: str) -> ToolPrice | None:
        """A model's price from Tool/Detail; None (with a warning) when the API gives none."""
        price: ToolPrice | None = None
        try:
            price = (await wiro_client().tool(model)).price
        except WiroError as exc:
            reason = f"Tool/Detail failed: {exc}"
        else:
            reason = "Tool/Detail gives no price"
            for anomaly in price.anomalies:
                logger.warning("Tool/Detail: %s", anomaly)
        if price is None or not price.known:
            if self.limit is not None:
                logger.warning("%s: the budget is kept on estimates (--estimate-usd, then the dearest rate "
                               "billed), which a dearer task can pass", reason)  # fmt: skip
            return None
        return price

    def hold_resumed(self, row_ids: Iterable[str]) -> None:
        """Holds for rows whose task may already exist: billed, if per second, since their intent."""
        for row_id in row_ids:
            state = self.ledger.states.get(row_id)
            if maybe_live(state):
                assert state is not None
                age = (datetime.now(UTC) - datetime.fromisoformat(state.intent_at)).total_seconds()
                self.budget.hold(row_id, self.work[row_id], self.quotes.get(row_id), age)

    async def admit(self, row_id: str) -> bool:
        """Whether this row may be submitted now: no stop, and within the budget (waits its turn)."""
        halt = self.ledger.halt
        while True:
            if halt.cancelled:
                return False
            if halt.reason:
                self.ledger.record("skipped", row_id, reason=halt.reason)
                return False
            quote = self.quotes.get(row_id)
            verdict = self.budget.reserve(row_id, self.work[row_id], quote)
            if verdict == "ok":
                return True
            if verdict == "over":
                plan = self.budget.plan(quote, self.work[row_id])
                self.ledger.record("skipped", row_id, reason=f"budget: ${self.budget.spent:.4f} spent, this task "
                                   f"${plan:.4f}, budget ${self.limit}")  # fmt: skip
                return False
            async with self.changed:
                await self.changed.wait()

    def launch(self, row_id: str) -> None:
        """Its Run request is about to be sent: a per-second task may be billed from here on."""
        self.budget.launch(row_id)

    def own_task(self, row_id: str, task_id: str) -> None:
        """The row's task is now known to be `task_id`. A task found for it while its Run answer
        was late (`pending`) that is another (another OUT's, with the same inputs) may have been
        stopped in its place: then the row's own task runs on, counted as running, to be stopped
        in its turn."""
        found = self.pending.pop(row_id, "")
        if found and found != task_id and self.stopped.pop(row_id, None) is not None:
            self.budget.unstop(row_id)

    async def settle(self, row_id: str, cost: Decimal) -> None:
        """A row's task ended with this (new) cost: the hold becomes the bill."""
        self.budget.settle(row_id, cost, self.work[row_id])
        await self._notify()

    async def charge(self, cost: Decimal) -> None:
        """A stray (`flows.engine.strays`) ended with this cost: it is spent, as a row's task is."""
        self.budget.spent += cost
        await self._notify()

    async def end(self, row_id: str) -> None:
        """A row is done in this run. A Run may have made a task that runs and bills, which nobody
        here waits for: its hold stays (orphaned); any other hold is released."""
        if maybe_live(self.ledger.states.get(row_id)):
            self.budget.orphan(row_id)  # a task found while its answer was late can still be stopped
        else:
            self.budget.release(row_id)
            self.pending.pop(row_id, None)
        await self._notify()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def bill(self, row_id: str, outcome: WaitOutcome) -> tuple[Decimal, str]:
        """What a row's final task is counted at, and a note when that is not its record's figure:
        an unreadable bill is estimated, and a per-second task is never counted below its rate x
        its seconds (`least_bill`), whatever its record says; one never seen to end after its stop,
        below its rate x the seconds since its Run request."""
        quote = self.quotes.get(row_id)
        if quote is not None and quote.fixed is not None:
            rate, per_second = Decimal(0), False  # a tier's price is the price
        else:
            per_second = quote is not None and quote.cps is not None
            rate = max(quote.cps if quote is not None and quote.cps is not None else Decimal(0), outcome.cps)
        if outcome.cost is None:  # Wiro's figure was garbage: count what the task could have cost, never nothing
            cost = self._estimate(row_id, outcome, rate)
            return cost, f"counted as ${cost:.6f} (an estimate)"
        seconds = outcome.elapsed
        if not outcome.ended or (outcome.status == "succeeded" and not seconds):  # it ran: from its Run request
            seconds = max(seconds or Decimal(0), self.budget.age(row_id) or Decimal(0))
        status = outcome.status if outcome.ended else "timed_out"  # never seen to end: not known to be free
        return least_bill(status, outcome.cost, seconds, rate, per_second=per_second)

    def _estimate(self, row_id: str, outcome: WaitOutcome, rate: Decimal) -> Decimal:
        """What a task whose bill could not be read may have cost: its fixed price, its seconds at
        its rate, or what the budget planned for it."""
        quote = self.quotes.get(row_id)
        if quote is not None and quote.fixed is not None:
            return quote.fixed
        if rate > 0 and outcome.elapsed:
            return outcome.elapsed * rate
        return self.budget.plan(quote, self.work[row_id])

    async def watch(self) -> None:
        """Stops running per-second tasks, youngest first, before the bill could pass the budget
        (see `Budget.to_stop`); their rows are recorded `skipped` with what they cost. A Run whose
        answer is late counts as billing since it was sent, and can be stopped once its task is
        found (`pending`, `RowDriver`)."""
        if self.budget.limit is None:
            return
        states = self.ledger.states
        while True:
            await asyncio.sleep(self.budget.period)
            for row_id in self.budget.flights:
                rate = self.rates.get(states[row_id].task_id) if row_id in states else None
                if rate is not None:
                    self.budget.observe(row_id, rate)
            for row_id in self.budget.to_stop(lambda r: bool(self._task_of(r))):
                task_id = self._task_of(row_id)
                self.stopped[row_id] = (f"budget: stopped while running, at ${self.budget.committed:.4f} "
                                        f"billed and held of ${self.budget.limit}")  # fmt: skip
                self.ledger.record("note", row_id, error=f"budget: stopping task {task_id}")
                stopping = asyncio.create_task(self.stop(row_id, task_id))
                self._stopping.add(stopping)
                stopping.add_done_callback(self._stopping.discard)

    def _task_of(self, row_id: str) -> str:
        """The running task the guard may stop for a row: its recorded one, or the one found while
        its Run answer is late (`pending`); "" when none is known."""
        state = self.ledger.state(row_id)
        return state.task_id if state.has_live_task else self.pending.get(row_id, "")

    async def stop(self, row_id: str, task_id: str) -> None:
        """Kill one task at once (every second until a Kill lands is billed, and the guard counts
        `horizon` from its decision); a task still queued is cancelled instead, and one that ended
        meanwhile is left as it ended. Its row's wait records how it ended. If Wiro could not be
        told, the budget counts the task as running again and the guard tries once more."""
        session = current_session()
        client = session.client()
        try:
            try:
                await client.kill(task_id)
            except TaskStateError:  # not running: queued (cancel it), or ended (nothing to do)
                await client.cancel(task_id)
        except TaskStateError:
            pass
        except WiroError as exc:
            logger.warning("budget: could not stop task %s: %s", task_id, exc)
            self.budget.unstop(row_id)
            return
        session.wake([task_id])  # its row's wait looks now, and frees its slot as soon as it ended

    async def drain(self) -> None:
        """Wait for the stops already sent."""
        await asyncio.gather(*self._stopping, return_exceptions=True)
