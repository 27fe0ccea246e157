"""Strays: tasks this sweep paid for that no row adopted. Never lose a paid result: a stray is
journaled with its row, waited for, counted at what it cost (in the row's `cost_usd`, the OUT's
total and the budget) and its video saved as `OUT/strays/<task id>.mp4`. No Run request is ever
sent for one.

Only a task provably this sweep's is a stray: one that a Run of a row may have made (its answer
was lost, and its task was never found, so the row was submitted again), matching the row's
inputs, numbered above the newest task known before that Run was sent, claimed by no sweep on
this machine; one such task per such Run (`TaskMatcher.keep_ours`). They are found when a later
lost answer's scan lists them beside the task it adopts, or by one more Task/List scan once the
row is done (a list may lag behind its writes). A matching task that no lost Run of ours
accounts for (another program's, on the same account) is named in the summary, never fetched.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flows.engine.guard import BudgetGuard
from flows.engine.ledger import Ledger
from flows.engine.matching import TaskMatcher
from flows.engine.rows import STRAYS, row_label, run_inputs
from flows.engine.settings import Settings
from flows.grid import MODEL
from flows.store.rowstate import RowState, Stray
from wiro_tasks import WiroError
from wiro_tasks.prefect_tasks import Saved, fetch, find_task, wait_for_end
from wiro_tasks.scan import FindOutcome

logger = logging.getLogger("flows.engine")


def stray_name(task_id: str) -> str:
    """A stray's file name under OUT/strays: its task id, made safe (a server's id is not a path)."""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', task_id)[:64] or 'task'}.mp4"


class StrayKeeper:
    """Finds, waits for, bills and saves the strays of one run's rows."""

    def __init__(self, ledger: Ledger, guard: BudgetGuard, matcher: TaskMatcher, settings: Settings) -> None:
        self.ledger = ledger
        self.guard = guard
        self.matcher = matcher
        self.settings = settings

    async def keep(self, row: dict[str, Any]) -> None:
        """Once a row is done: look for its lost Runs' tasks once more, then wait for and fetch
        each of its strays. Nothing is asked of Wiro for a row without either."""
        state = self.ledger.state(row["row_id"])
        try:
            if state.unfound and not self.ledger.halt.cancelled:
                await self._seek(row, state)
            for stray in list(state.strays.values()):
                if not stray.status:
                    await self._wait(row["row_id"], stray)
                if stray.status == "succeeded" and not stray.path:
                    await self._fetch(row["row_id"], stray)
        except WiroError as exc:  # the row's own outcome stands; a rerun tries again
            logger.warning("row %s: its strays: %s; a rerun tries again", row["row_id"], exc)

    async def _seek(self, row: dict[str, Any], state: RowState) -> None:
        """One Task/List scan, from the oldest lost Run whose task was never found, for tasks of the
        row's inputs that no row holds; those the lost Runs account for become strays."""
        row_id, lost = row["row_id"], state.unfound[0]
        since_server = datetime.fromisoformat(lost.server_at) if lost.server_at else None
        try:
            found: FindOutcome = await find_task(state.model or row[MODEL], state.inputs or run_inputs(row),
                                                 row_label(row), datetime.fromisoformat(lost.at),
                                                 self.matcher.claimed(), since_server, lost.id_floor)  # fmt: skip
        except WiroError as exc:  # looked for again by a rerun
            logger.warning("row %s: looking for the tasks of its lost Run answers: %s", row_id, exc)
            return
        self.matcher.saw(found.newest)
        free = [t for t in found.task_ids if self.matcher.claims.holder(t) is None]
        self.matcher.keep_ours(row_id, free)
        if found.complete:  # what is not found now counts as no task, as after the scans that proved it
            self.ledger.record("strays_sought", row_id)

    async def _wait(self, row_id: str, stray: Stray) -> None:
        """Wait for a stray to end and record what it cost; one not seen to end is waited for by a rerun."""
        deadline = datetime.now(UTC) + timedelta(seconds=self.settings.timeout)
        settings = self.settings
        try:
            outcome = await wait_for_end(stray.task_id, deadline, settings.poll_interval, settings.poll_cap,
                                         settings.error_grace)  # fmt: skip
        except WiroError as exc:
            logger.warning("row %s: waiting for its stray task %s: %s", row_id, stray.task_id, exc)
            return
        if not outcome.ended:  # it ran, and may have billed, till now: this run's budget counts it (not journaled,
            # so the rerun that waits for it again counts it once)
            logger.warning("row %s: stray task %s not seen to end: a rerun waits for it", row_id, stray.task_id)
            await self.guard.charge(self.guard.bill(row_id, outcome)[0])
            return
        cost, note = self.guard.bill(row_id, outcome)
        self.ledger.record("stray_finished", row_id, task_id=stray.task_id, status=outcome.status, cost=str(cost),
                           note=note, output_url=outcome.output_url, output_bytes=outcome.output_bytes)  # fmt: skip
        await self.guard.charge(cost)

    async def _fetch(self, row_id: str, stray: Stray) -> None:
        """Save a succeeded stray's video as OUT/strays/<task id>.mp4, as a row's is saved."""
        dest = self.ledger.out / STRAYS / stray_name(stray.task_id)
        saved: Saved = await fetch(stray.task_id, stray.output_url, stray.output_bytes_expected, str(dest))
        if saved.path:
            relative = Path(saved.path).resolve().relative_to(self.ledger.out)
            self.ledger.record("stray_saved", row_id, task_id=stray.task_id, path=str(relative), sha256=saved.sha256,
                               bytes=saved.size or 0)  # fmt: skip
        else:
            logger.warning("row %s: stray task %s: %s; a rerun fetches it", row_id, stray.task_id, saved.error)


def stray_lines(states: dict[str, RowState]) -> tuple[str, ...]:
    """Each recorded stray, for the summary: its task, its row, what it cost, where its video is."""
    lines = []
    for state in states.values():
        for stray in state.strays.values():
            where = stray.path or ("not saved yet: a rerun fetches it" if stray.work_left else "no video")
            status = stray.status or "not seen to end yet"
            lines.append(f"task {stray.task_id} (row {state.row_id}, {status}, ${stray.cost:.6f}): {where}")
    return tuple(lines)
