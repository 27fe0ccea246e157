"""Stopping a sweep's Wiro tasks (Ctrl-C, Cancel in the Prefect UI): the tasks its journal knows,
and the ones its unanswered Run requests may have created.

Known tasks are stopped first: every second they run is billed. Then each row whose Run request
was sent but not answered is looked for in Task/List, twice (a new task may show there a moment
late), and its task is stopped too, but only when it is the one unclaimed match: another sweep
on the account may have sent the same inputs, and its task is not ours to kill.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from wiro_tasks import TEXT_TO_VIDEO, AsyncWiroClient, Credentials, TaskStateError, WiroError
from wiro_tasks.prefect_tasks import scan_for_task

from .journal import Journal, RowState

Record = Callable[..., Any]  # record(event, row_id, **fields): a journal line about the row
LOOKS = (1.0, 5.0)  # seconds before each Task/List scan for an unanswered Run's task
RECENT = timedelta(minutes=15)  # older unanswered intents are left to the next run's own search


async def stop_tasks(client: AsyncWiroClient, live: Mapping[str, str], record: Record) -> int:
    """Cancel (queued) or kill (running) each task of `live` (row id -> task id); records how each
    ended with what it cost. Returns how many it tried."""
    for row_id, task_id in live.items():
        try:
            try:
                stopped = await client.cancel(task_id)
            except TaskStateError:
                stopped = await client.kill(task_id)
        except WiroError as exc:
            record("note", row_id, error=f"could not stop task {task_id}: {exc}")
            continue
        if stopped.is_terminal:
            record("finished", row_id, task_id=task_id, status="cancelled", error="sweep cancelled",
                   cost=str(stopped.total_cost), elapsed=str(stopped.elapsed_seconds))  # fmt: skip
    return len(live)


def unanswered(states: Iterable[RowState], now: datetime | None = None) -> list[RowState]:
    """Rows whose last Run request, sent recently, got no answer: each may have a task."""
    cutoff = (now or datetime.now(UTC)) - RECENT
    return [
        s
        for s in states
        if s.phase in ("intent", "unknown")
        and s.inputs
        and datetime.fromisoformat(s.intent_at.replace("Z", "+00:00")) >= cutoff
    ]


async def find_unanswered(
    client: AsyncWiroClient, rows: list[RowState], claimed: list[str], model: str = TEXT_TO_VIDEO
) -> dict[str, str]:
    """The tasks that `rows`' unanswered Run requests created (row id -> task id)."""
    found: dict[str, str] = {}
    for delay in LOOKS:
        await asyncio.sleep(delay)
        for state in rows:
            if state.row_id in found:
                continue
            since = datetime.fromisoformat(state.intent_at.replace("Z", "+00:00"))
            try:
                outcome = await scan_for_task(client, model, dict(state.inputs or {}), since, claimed)
            except WiroError:
                continue  # the next look, or the next run's own search, tries again
            if outcome.task_id and outcome.matches == 1:
                found[state.row_id] = outcome.task_id
                claimed.append(outcome.task_id)
        if len(found) == len(rows):
            break
    return found


def kill_in_flight(out: Path, credentials: Credentials | None = None, journal: Journal | None = None) -> int:
    """Stop every Wiro task of OUT's journal that has not finished, and those of its recent
    unanswered Run requests; returns how many. Runs on an event loop of its own, in a thread of
    its own, so any caller may use it (a cancellation hook, a thread, a running event loop)."""
    own = journal is None
    journal = journal or Journal(out)
    try:
        states = list(journal.load().values())
        live = {s.row_id: s.task_id for s in states if s.has_live_task}
        lost = unanswered(states)
        if not live and not lost:
            return 0
        creds = credentials or Credentials.resolve()

        async def stop() -> int:
            async with AsyncWiroClient(creds.api_key, creds.api_secret) as client:
                count = await stop_tasks(client, live, journal.append)
                if lost:
                    claimed = [t for s in states for t in s.task_ids]
                    found = await find_unanswered(client, lost, claimed)
                    for row_id, task_id in found.items():
                        journal.append("adopted", row_id, task_id=task_id)
                    count += await stop_tasks(client, found, journal.append)
                return count

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, stop()).result()
    finally:
        if own:
            journal.close()
