"""Stopping a sweep's Wiro tasks (Ctrl-C, Cancel in the Prefect UI): the tasks its journal knows,
and the ones its unanswered Run requests may have created.

Known tasks are stopped first: every second they run is billed. Then each row whose Run request
was sent but not answered is looked for in Task/List, twice (a new task may show there a moment
late), and its task is stopped too, but only when it is the one unclaimed match: another sweep
on the account may have sent the same inputs, and its task is not ours to kill.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flows.engine.budget import least_bill
from flows.store.claims import Claims, account_key
from flows.store.journal import JOURNAL, Journal, fold, iter_events
from flows.store.rowstate import RowState
from wiro_tasks import TEXT_TO_VIDEO, AsyncWiroClient, Credentials, TaskStateError, WiroError
from wiro_tasks.scan import scan_for_task
from wiro_tasks.types import Task as WiroTask

Record = Callable[..., Any]  # record(event, row_id, **fields): a journal line about the row
LOOKS = (1.0, 5.0)  # seconds before each Task/List scan for an unanswered Run's task
RECENT = timedelta(minutes=15)  # older unanswered intents are left to the next run's own search
CONFIRM_SECONDS = 5.0  # how long stopped tasks are read again for their end
CONFIRM_STEP = 0.5
STOPS_AT_ONCE = 16  # stop (and confirming read) requests in flight at once


async def stop_tasks(client: AsyncWiroClient, live: Mapping[str, str], record: Record) -> int:
    """Cancel (queued) or kill (running) each task of `live` (row id -> task id), `STOPS_AT_ONCE`
    at a time: every second a task runs is billed, so no stop waits behind another task's slow
    answer. Records how each ended with what it cost. A task that ended on its own meanwhile (it
    cannot be stopped any more) is recorded as Wiro says it ended: a success stays a paid output
    a rerun fetches. A stop is confirmed by reading the task (its answer may not hold it): one
    still running is read again for up to `CONFIRM_SECONDS`, then left to the next run's wait.
    Returns how many it tried."""
    pending = await _each(functools.partial(_stop, client, record), live)
    deadline = asyncio.get_running_loop().time() + CONFIRM_SECONDS
    while pending and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(CONFIRM_STEP)
        pending = await _each(functools.partial(_confirm, client, record), pending)
    for row_id, task_id in pending.items():
        record("note", row_id, error=f"stop sent to task {task_id}, still running: the next run waits for its end")
    return len(live)


async def _each(step: Callable[[str, str], Awaitable[bool]], tasks: Mapping[str, str]) -> dict[str, str]:
    """`step(row_id, task_id)` for each of `tasks`, `STOPS_AT_ONCE` at a time; the rows whose
    step did not see their task end. An error stops the rest, as it would one at a time."""
    gate = asyncio.Semaphore(STOPS_AT_ONCE)

    async def gated(row_id: str, task_id: str) -> bool:
        async with gate:
            return await step(row_id, task_id)

    try:
        async with asyncio.TaskGroup() as group:
            ended = {row_id: group.create_task(gated(row_id, task_id)) for row_id, task_id in tasks.items()}
    except BaseExceptionGroup as failed:  # the first error, as one at a time raised it
        raise failed.exceptions[0] from None
    return {row_id: tasks[row_id] for row_id, done in ended.items() if not done.result()}


async def _stop(client: AsyncWiroClient, record: Record, row_id: str, task_id: str) -> bool:
    """Stop one task and record how it ended; False when it is still to be seen to end."""
    try:
        try:
            stopped = await client.cancel(task_id)
        except TaskStateError:
            stopped = await client.kill(task_id)
    except WiroError as exc:
        ended = await _ended(client, task_id)
        if ended is None:
            record("note", row_id, error=f"could not stop task {task_id}: {exc}")
        else:
            record("finished", row_id, task_id=task_id, **as_finished(ended))
        return True  # nothing more to confirm: a rerun looks at a task it could not stop
    return _record_stopped(stopped, row_id, record)


async def _confirm(client: AsyncWiroClient, record: Record, row_id: str, task_id: str) -> bool:
    ended = await _ended(client, task_id)
    return ended is not None and _record_stopped(ended, row_id, record)


def _record_stopped(task: WiroTask, row_id: str, record: Record) -> bool:
    """Record a task read after its stop, when it has ended: stopped, or ended as it would have."""
    if not task.is_terminal:
        return False
    if not task.cancelled:
        record("finished", row_id, task_id=task.id, **as_finished(task))
        return True
    cost, note = least_bill("cancelled", task.total_cost, task.elapsed_seconds, task.cps, per_second=False)
    record("finished", row_id, task_id=task.id, status="cancelled", error=_join("sweep cancelled", note),
           cost=str(cost), elapsed=str(task.elapsed_seconds))  # fmt: skip
    return True


async def _ended(client: AsyncWiroClient, task_id: str) -> WiroTask | None:
    """The task as Wiro has it, when it has ended; None when it runs on or cannot be read."""
    try:
        task = await client.detail(task_id)
    except WiroError:
        return None
    return task if task.is_terminal else None


def as_finished(task: WiroTask) -> dict[str, Any]:
    """A `finished` journal line's fields for a task that ended without being stopped."""
    output = task.outputs[0] if task.outputs else None
    if task.succeeded and output is not None:
        status, error = "succeeded", ""
    elif task.cancelled:
        status, error = "cancelled", "cancelled on Wiro"
    else:
        status, error = "failed", task.error_message or f"ended in {task.raw_status}"
    cost, note = least_bill(status, task.total_cost, task.elapsed_seconds, task.cps, per_second=False)
    return {"status": status, "error": _join(error, note), "cost": str(cost), "elapsed": str(task.elapsed_seconds),
            "output_url": output.url if output else "", "output_bytes": output.size if output else None}  # fmt: skip


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def unanswered(states: Iterable[RowState], now: datetime | None = None) -> list[RowState]:
    """Rows whose last Run request, sent recently, got no answer: each may have a task."""
    cutoff = (now or datetime.now(UTC)) - RECENT
    return [
        s
        for s in states
        if s.phase in ("intent", "unknown") and s.inputs and datetime.fromisoformat(s.intent_at) >= cutoff
    ]


async def find_unanswered(
    client: AsyncWiroClient,
    rows: list[RowState],
    claimed: list[str],
    claims: Claims | None = None,
) -> dict[str, str]:
    """The tasks that `rows`' unanswered Run requests created (row id -> task id): the one match that
    no other OUT on this machine has claimed."""
    found: dict[str, str] = {}
    for delay in LOOKS:
        await asyncio.sleep(delay)
        for state in rows:
            if state.row_id in found:
                continue
            since = datetime.fromisoformat(state.intent_at)
            since_server = datetime.fromisoformat(state.intent_server_at) if state.intent_server_at else None
            try:
                model = state.model or TEXT_TO_VIDEO
                outcome = await scan_for_task(client, model, dict(state.inputs or {}), since, claimed,
                                              since_server=since_server)  # fmt: skip
            except WiroError:
                continue  # the next look, or the next run's own search, tries again
            mine = [t for t in outcome.task_ids if claims is None or not claims.held_elsewhere(t)]
            if len(mine) == 1 and (claims is None or claims.claim(mine[0], state.row_id)):
                found[state.row_id] = mine[0]
                claimed.append(mine[0])
        if len(found) == len(rows):
            break
    return found


def in_flight(states: Iterable[RowState]) -> bool:
    """Whether any row has a task still running or a recent Run request left unanswered."""
    states = list(states)
    return any(s.has_live_task for s in states) or bool(unanswered(states))


async def stop_in_flight(
    client: AsyncWiroClient, states: Iterable[RowState], record: Record, claims: Claims | None = None
) -> int:
    """Stop every task of `states` that has not finished, then those of its recent unanswered Run
    requests (adopted first, never one another OUT has claimed); returns how many were tried."""
    states = list(states)
    count = await stop_tasks(client, {s.row_id: s.task_id for s in states if s.has_live_task}, record)
    lost = unanswered(states)
    if lost:
        found = await find_unanswered(client, lost, [t for s in states for t in s.task_ids], claims=claims)
        for row_id, task_id in found.items():
            record("adopted", row_id, task_id=task_id)
        count += await stop_tasks(client, found, record)
    return count


def kill_in_flight(out: Path, credentials: Callable[[], Credentials] = Credentials.resolve) -> int:
    """`stop_in_flight` for OUT's journal, from synchronous code (Ctrl-C, a cancellation hook):
    on an event loop of its own, in a thread of its own. Credentials are read only when there is
    something to stop, and the journal opened (made, where there is none) only then."""
    if not in_flight(fold(iter_events(out / JOURNAL)).values()):
        return 0
    creds = credentials()
    journal = Journal(out)
    try:
        states = list(journal.load().values())

        async def stop() -> int:
            async with AsyncWiroClient(creds.api_key, creds.api_secret) as client:
                try:
                    claims: Claims | None = Claims(out, account_key(client.base_url, creds.api_key))
                except OSError:
                    claims = None
                return await stop_in_flight(client, states, journal.append, claims)

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, stop()).result()
    finally:
        journal.close()
