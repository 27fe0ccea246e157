"""One sweep over one OUT: the rows that have work left, each driven to its end (`RowDriver`)
within the concurrency and the budget (`BudgetGuard`), every change in the `Ledger`.

The pieces, each with one job:

    Ledger        the only writer of row state: the journal, then memory, then the manifest
    RowDriver     one row's submit -> wait -> download state machine
    BudgetGuard   admission, and stopping running tasks before the bill could pass the budget
    ImageUploads  start images, uploaded once per OUT and account
    TaskMatcher   which task is a row's: claims, and finding a lost Run answer's task
    RowTasks      the rows' coroutines, started in order, a window of them alive at once

The runner wires them together, starts the background loops (manifest, journal flush, budget
guard, Prefect's old result links forgotten, the Prefect cancel watcher) and returns a `SweepResult`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType

from flows.engine.chunks import CHUNK_ROWS, Chunks
from flows.engine.driver import RowDriver
from flows.engine.guard import BudgetGuard
from flows.engine.ledger import Halt, Ledger, live_task_ids
from flows.engine.matching import TaskMatcher
from flows.engine.progress import publish
from flows.engine.rows import maybe_live, needs_work, records
from flows.engine.settings import Settings
from flows.engine.steps import Steps
from flows.engine.stopping import stop_in_flight, stop_tasks
from flows.engine.strays import stray_lines
from flows.engine.uploads import ImageUploads
from flows.engine.window import RowTasks, window_size
from flows.memory import many_objects
from flows.store.claims import Claims, account_key, state_root
from flows.store.journal import Journal, JournalWriteError
from flows.store.rowstate import RowState
from wiro_tasks.prefect_tasks import current_session, forget_old_result_links

CANCEL_POLL_SECONDS = 2.0
STOPPED_ROWS_END_SECONDS = 5.0  # a cancel lets the rows whose tasks it stopped end on their own (a row
# cancelled in its `wait` leaves a Crashed task run and a "Crash detected!" error) before it cancels them

logger = logging.getLogger("flows.engine")


@dataclass(frozen=True)
class SweepResult:
    """How a run of the engine over one OUT ended: what the flow reports, shows and returns."""

    manifest: pd.DataFrame
    out_error: JournalWriteError | None = None  # OUT stopped taking writes: nothing more was submitted
    not_succeeded: frozenset[str] = frozenset()  # rows whose `wait` task run ended other than Completed
    strays: tuple[str, ...] = ()  # tasks matching a row that no sweep on this machine claimed, not provably ours
    kept: tuple[str, ...] = ()  # this OUT's strays: paid tasks no row adopted, fetched into OUT/strays
    cancelled: str | None = None  # why the run was cancelled by its user, if it was
    stopped: int = 0  # Wiro tasks stopped because the run was cancelled


class SweepRunner:
    """Runs the rows of one grid into one OUT directory, in the current `WiroSession`."""

    def __init__(self, grid: pd.DataFrame, out: Path, journal: Journal, settings: Settings) -> None:
        self.out = out
        self.settings = settings
        self.halt = Halt()
        with many_objects():  # every row's inputs, its state and the ledger's indexes
            self.rows = records(grid)
            self.ledger = Ledger(grid, [r["row_id"] for r in self.rows], out, journal, self.halt)
        self.stopped = 0

    async def run(self) -> SweepResult:
        """Drive every row that has work left to its end; how the run ended."""
        session = current_session()
        client = session.client()
        account = account_key(client.base_url, client.credentials.api_key)
        claims = self._open_claims(account)
        ledger = self.ledger
        guard = BudgetGuard(ledger, self.rows, self.settings, session.rates)
        self.matcher = TaskMatcher(ledger, claims, account)
        todo = self._todo(claims)
        steps = self._steps(len(todo))
        driver = RowDriver(ledger, guard, ImageUploads(ledger, account), self.matcher, self.settings, steps)
        await guard.price(todo)  # only rows this run may submit, wait for or bill are priced
        if todo:  # the id floor of this run's first intents (`TaskMatcher.newest`)
            await self.matcher.learn_newest()
        guard.hold_resumed(r["row_id"] for r in todo)
        ledger.work_on([r["row_id"] for r in todo])
        if todo:  # else the final manifest follows at once
            ledger.write()
        publish(ledger.progress(guard.spent))
        await self._run_rows(todo, driver, guard)
        return SweepResult(
            manifest=ledger.final_manifest(),
            out_error=self.halt.out_error,
            not_succeeded=frozenset(driver.not_succeeded),
            strays=self.matcher.unclaimed_strays(),
            kept=stray_lines(ledger.states),
            cancelled=self.halt.cancelled,
            stopped=self.stopped,
        )

    def _steps(self, rows: int) -> Steps:
        """A task run for each row's submit and wait, or, past `row_task_runs_max` rows, none (`steps.py`)."""
        limit = self.settings.row_task_runs_max
        if rows <= limit:
            return Steps(self.settings)
        logger.info("%d rows to run, over %d: their submit and wait run without task runs of their own; "
                    "one task run per %d rows shows them, and one each the rows that do not succeed",
                    rows, limit, CHUNK_ROWS)  # fmt: skip
        return Steps(self.settings, per_row=False)

    def _open_claims(self, account: str) -> Claims:
        """This machine's referee for tasks on the account (OUT's own, where the state dir is unwritable)."""
        try:
            return Claims(self.out, account)
        except OSError as exc:
            logger.warning("no claims under %s (%s): only this OUT's own tasks are told apart", state_root(), exc)
            return Claims(self.out, account, root=self.out / ".claims")

    def _todo(self, claims: Claims) -> list[dict[str, Any]]:
        """The rows with work left, those whose task may already exist first: they hold slots
        before any new submission, and their estimates count against the budget from the start."""
        ledger = self.ledger
        for state in ledger.states.values():
            if state.has_live_task:  # claims of this OUT's tasks, should the registry have lost them
                claims.claim(state.task_id, state.row_id)
            for task_id in state.strays:
                claims.claim(task_id, state.row_id)
        self._check_files()
        todo = [r for r in self.rows if self._has_work(ledger.states.get(r["row_id"]))]
        todo.sort(key=lambda r: not maybe_live(ledger.states.get(r["row_id"])))
        return todo

    def _has_work(self, state: RowState | None) -> bool:
        """Whether a row, or a stray of it, has work left in this run."""
        return needs_work(state, self.settings.retry_failed) or (state is not None and state.stray_work)

    def _check_files(self) -> None:
        """Saved videos (rows' and strays') that are gone or changed are fetched again."""
        ledger = self.ledger
        for state in list(ledger.states.values()):
            if state.downloaded and not self._saved_intact(state):
                ledger.record("file_missing", state.row_id,
                              error=f"{state.output_path} is missing or changed: fetching again")  # fmt: skip
            for stray in list(state.strays.values()):
                if stray.path and not self._intact(stray.path, stray.size):
                    ledger.record("stray_missing", state.row_id, task_id=stray.task_id,
                                  error=f"{stray.path} is missing or changed: fetching again")  # fmt: skip

    def _saved_intact(self, state: RowState) -> bool:
        return self._intact(state.output_path, state.output_bytes)

    def _intact(self, relative: str, size: int | None) -> bool:
        try:  # one stat, no Path: 100,000 saved videos are looked at on every resume
            info = os.stat(os.path.join(self.out, relative))
        except (OSError, ValueError):
            return False
        return stat.S_ISREG(info.st_mode) and info.st_size == size

    async def _run_rows(self, todo: list[dict[str, Any]], driver: RowDriver, guard: BudgetGuard) -> None:
        """The rows to their end, a window of them alive at once, with the background loops beside them."""
        ledger = self.ledger
        rows = RowTasks(window_size(self.settings.max_concurrency))
        chunks = None if driver.steps.per_row else Chunks(len(todo), lambda r: ledger.status.get(r, ""), CHUNK_ROWS)
        helpers = [
            asyncio.create_task(ledger.keep_manifest_fresh(self.settings.manifest_interval)),
            asyncio.create_task(ledger.keep_journal_flushed()),
            asyncio.create_task(guard.watch()),
            asyncio.create_task(forget_old_result_links()),
        ]
        watcher = asyncio.create_task(self._watch_cancellation(rows))
        try:
            await rows.run(todo, chunks.wrap(driver.process) if chunks else driver.process)
        except asyncio.CancelledError:
            if not self.halt.cancelled:
                raise
        finally:
            if self.halt.cancelled and not watcher.done():
                await asyncio.wait({watcher})  # it stops the live tasks, then the rows that wait on them
            for helper in [*helpers, watcher]:
                helper.cancel()
            for ended in await asyncio.gather(*helpers, watcher, return_exceptions=True):
                if isinstance(ended, Exception):  # a loop that died early must not go unseen
                    logger.error("a sweep's background loop failed: %r", ended)
            await driver.close()
            await guard.drain()
            ledger.flush_or_stop()
            if chunks:
                await chunks.close()
        if self.halt.cancelled:
            # What is left: tasks that could not be stopped yet, and those of unanswered Runs.
            client = current_session().client()
            self.stopped += await stop_in_flight(client, ledger.states.values(), ledger.record, self.matcher.claims)
            logger.warning("flow run cancelled: stopped %d Wiro task(s)", self.stopped)
            ledger.flush_or_stop()

    async def _watch_cancellation(self, tasks: RowTasks) -> None:
        """Cancel in the Prefect UI reaches a run started outside a worker only if it looks.

        Then nothing is submitted any more (rows without a live task stop at once, a Run being
        sent included), the live tasks are stopped while their rows still hold their slots (freed
        first, the account's slots would go to other runs while these tasks still bill), and
        only then do those rows stop: their waits look at once and end as the tasks did, and
        what is still running `STOPPED_ROWS_END_SECONDS` later is cancelled."""
        from prefect.client.orchestration import get_client
        from prefect.runtime import flow_run

        run_id = flow_run.id
        if not run_id:
            return
        async with get_client() as client:
            while True:
                await asyncio.sleep(CANCEL_POLL_SECONDS)
                reason = await cancel_requested(client, run_id)
                if reason:
                    self.halt.cancelled = reason
                    tasks.stop()  # rows not started yet stay as they are: not sent
                    rows = dict(tasks.alive)
                    live = live_task_ids(self.ledger.states, rows)
                    for row_id, row in rows.items():
                        if row_id not in live:
                            row.cancel()
                    session = current_session()
                    self.stopped += await stop_tasks(session.client(), live, self._record_once)
                    session.wake(live.values())  # their waits end as the tasks did, their task runs too
                    ending = [rows[row_id] for row_id in live if row_id in rows]
                    if ending:
                        await asyncio.wait(ending, timeout=STOPPED_ROWS_END_SECONDS)
                    for row in rows.values():
                        row.cancel()
                    return

    def _record_once(self, event: str, row_id: str, **fields: Any) -> None:
        """`Ledger.record` for the stops of a cancel: a task whose row's wait saw it end first is
        journaled once, by the wait (the wait, in turn, leaves one the stop recorded first)."""
        state = self.ledger.state(row_id)
        if event == "finished" and state.phase == "finished" and state.task_id == str(fields.get("task_id")):
            return
        self.ledger.record(event, row_id, **fields)


async def cancel_requested(client: PrefectClient, run_id: UUID | str) -> str:
    """Why the run was cancelled, if it is Cancelling or Cancelled; empty otherwise."""
    try:
        run = await client.read_flow_run(UUID(str(run_id)))
    except Exception:  # the API may blink; a cancel can wait a poll
        return ""
    return cancel_reason(run)


def cancel_reason(run: FlowRun) -> str:
    """Why `run` was cancelled, if it is Cancelling or Cancelled; empty otherwise."""
    if run.state is not None and run.state.type in (StateType.CANCELLING, StateType.CANCELLED):
        return run.state.message or "cancelled in Prefect"
    return ""
