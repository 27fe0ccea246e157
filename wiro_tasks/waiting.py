"""Waiting for one task to end: Wiro's task socket pushes its events, polls guard against a lost
one, and a task past its deadline (or stuck in `task_error`) is stopped and waited for to its end,
so what it cost is never lost. Plain coroutines on a given client: `prefect_tasks.wait` runs them
as a task run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from ._exceptions import NotFoundError, TaskStateError, WiroError
from .client import AsyncWiroClient
from .types import Task as WiroTask
from .types import TaskStatus

Outcome = Literal["succeeded", "failed", "timed_out", "cancelled"]
NOT_FOUND_GRACE = 60.0
SOCKET_POLL_FACTOR = 10.0  # with events pushed, polls only guard against a lost one
STOP_GRACE = 30.0  # how long a stopped task may take to show its end before it is recorded as it stands


@dataclass(frozen=True)
class WaitOutcome:
    """A final task as the manifest needs it, and when the wait noticed it was final."""

    status: Outcome
    task_id: str
    error: str = ""
    cost: Decimal | None = Decimal(0)  # None: Wiro's figure could not be read (the error says what it was)
    elapsed: Decimal | None = None
    output_url: str = ""
    output_bytes: int | None = None
    noticed_at: float = 0.0
    cps: Decimal = Decimal(0)  # the highest per-second rate the task's records gave while it was waited for
    ended: bool = True  # False: stopped, yet Wiro never showed its end; it ran, and may have billed, till now


async def wait_for_end(
    client: AsyncWiroClient,
    task_id: str,
    deadline: datetime,
    poll_interval: float = 3.0,
    poll_cap: float = 30.0,
    error_grace: float = 120.0,
    rates: dict[str, Decimal] | None = None,
    wakers: dict[str, Callable[[], None]] | None = None,
) -> WaitOutcome:
    """Poll a task to its end (or its deadline, then stop it); `fetch` saves its output after.

    With Wiro's task socket the wait is pushed: the socket opens at the first poll that finds
    the task still running (one that ends sooner costs no socket), then polls back off far
    (they only guard against a lost event) and an event wakes the wait at once. A task is only ever recorded once Wiro
    says it is final: after a Cancel or Kill the polling goes on until it is, so what it cost
    (and any output it still produced) is never lost. A task stuck in `task_error` past
    `error_grace` is final in Wiro-MCP's reading and interim in Wiro-Docs': it is stopped, and
    recorded failed as it stands when Wiro refuses the stop, or when it is still in `task_error`
    `error_grace` after the stop was taken. Any other task that shows no end `STOP_GRACE` s after
    its stop (a status no document names, a Kill that did not land) is returned as it stands,
    `ended` False, so `--timeout` bounds the wait: nothing here is raised for Prefect to retry.
    `rates` gets the task's per-second rate while it is watched (the budget guard reads it), and
    loses it at the end; `wakers` a call that makes the wait look at the task now (whoever stopped
    it calls it, so the wait ends as the task did rather than being cancelled mid-sleep).
    """
    rates = {} if rates is None else rates
    wakers = {} if wakers is None else wakers
    wakeups = _Wakeups(client, poll_interval, max(poll_interval, poll_cap))
    wakers[task_id] = wakeups.look_now
    try:
        return await _wait(client, wakeups, task_id, deadline, error_grace, rates)
    finally:
        wakeups.close()
        rates.pop(task_id, None)
        wakers.pop(task_id, None)


class _Wakeups:
    """When to look at a task next: a backed-off poll, or at once when the socket has news.

    While the socket delivers events, polls only guard against a lost one: the first waits at
    least `cap` and they back off x2 up to `cap * SOCKET_POLL_FACTOR`. An end or a `task_error`
    pushed over the socket wakes the wait at once (a `task_error` is then polled at the usual
    pace, to time its grace); without a socket, polls back off x1.5 up to `cap`.
    """

    def __init__(self, client: AsyncWiroClient, first: float, cap: float) -> None:
        self.client = client
        self.first = first
        self.delay = first
        self.cap = cap
        self.woken = asyncio.Event()  # the socket went live, or has news
        self.news = False  # an end or a task_error was pushed
        self.soon = False  # look again shortly: Task/Detail may lag what the socket said
        self.live = False  # the socket has delivered an event and is still open
        self.watcher: asyncio.Task[None] | None = None

    def look_now(self) -> None:
        """Someone stopped the task: look at it now, and again soon, as after pushed news."""
        self.news = True
        self.woken.set()

    def listen(self, socket_token: str) -> None:
        if self.watcher is None and self.client.socket_url and socket_token:
            self.watcher = asyncio.ensure_future(self._watch(socket_token))

    async def _watch(self, socket_token: str) -> None:
        last: TaskStatus | None = None
        try:
            async for event in self.client.events(socket_token):
                if not self.live:
                    self.live = True
                    self.woken.set()
                if event.status.is_terminal or (event.status is TaskStatus.ERROR and last is not TaskStatus.ERROR):
                    self.news = True
                    self.woken.set()
                last = event.status
        except WiroError:
            pass  # the socket is a hint; polling carries on at its usual pace
        finally:
            self.live = False
            self.woken.set()  # a wait sleeping as long as a guard poll must go back to its own pace

    async def sleep(self, deadline: datetime, *, stopping: bool, in_error: bool) -> None:
        if stopping or self.soon:
            self.soon = False
            await self._nap(0.5)
            return
        loop = asyncio.get_running_loop()
        started, jitter = loop.time(), random.uniform(0.9, 1.1)
        while True:
            guarding = self.live and not in_error
            delay = max(self.delay, self.cap) if guarding else min(self.delay, self.cap)
            left = _until(deadline, started + delay * jitter - loop.time())
            if left <= 0 or not await self._nap(left):
                break
            if self.news:  # an end or a task_error: look now, and again soon
                self.news, self.soon = False, True
                return
            # the socket went live or closed meanwhile: sleep on at the pace that goes with it
        if self.live and not in_error:
            self.delay = min(self.cap * SOCKET_POLL_FACTOR, max(self.delay, self.cap) * 2.0)
        else:
            self.delay = min(self.cap, self.delay * 1.5)

    async def _nap(self, seconds: float) -> bool:
        """Sleep up to `seconds`; whether the socket woke it first."""
        try:
            await asyncio.wait_for(self.woken.wait(), seconds)
        except TimeoutError:
            return False
        self.woken.clear()
        return True

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()


async def _wait(
    client: AsyncWiroClient,
    wakeups: _Wakeups,
    task_id: str,
    deadline: datetime,
    error_grace: float,
    rates: dict[str, Decimal],
) -> WaitOutcome:
    error_since: float | None = None
    missing_since: float | None = None
    stopped: tuple[Outcome, str] | None = None
    stopped_at = 0.0
    in_error = False
    while True:
        await wakeups.sleep(deadline, stopping=stopped is not None, in_error=in_error)
        try:
            current = await client.detail(task_id)
        except NotFoundError:
            # A task Wiro just named may not be visible everywhere yet: give it a while.
            missing_since = missing_since or time.monotonic()
            if time.monotonic() - missing_since < NOT_FOUND_GRACE:
                continue
            # Wiro named it, so it may run and bill where we cannot see it: its cost is unknown, not 0.
            return WaitOutcome("failed", task_id, error=f"task {task_id} not found: another account or base URL?",
                               cost=None)  # fmt: skip
        missing_since = None
        if current.cps > 0:
            rates[task_id] = max(current.cps, rates.get(task_id, Decimal(0)))
        if current.is_terminal:
            seen = rates.get(task_id, Decimal(0))
            if not stopped and current.cancelled and datetime.now(deadline.tzinfo) >= deadline:
                # A wait run again (a Prefect retry) after its first try stopped the task at the deadline.
                stopped = ("timed_out", f"timed out; stopped (it reads {current.raw_status})")
            if stopped and not (current.succeeded or current.failed):
                return _outcome(current, *stopped, seen_cps=seen)
            return _finish(current, seen)
        wakeups.listen(current.socket_token)
        if stopped:
            since_stop = time.monotonic() - stopped_at
            if current.status is TaskStatus.ERROR and since_stop >= error_grace:
                # Accepted, yet still task_error: final in Wiro-MCP's reading, and nothing will move it.
                return _outcome(current, stopped[0], f"{stopped[1]}; still task_error {since_stop:.0f} s after it",
                                rates.get(task_id, Decimal(0)))  # fmt: skip
            if current.status is not TaskStatus.ERROR and since_stop >= STOP_GRACE:
                return _unended(current, stopped, since_stop, rates.get(task_id, Decimal(0)))
            continue
        in_error = current.status is TaskStatus.ERROR
        if in_error:
            if error_since is None:  # its grace is timed by polls at the usual pace, from the first
                error_since, wakeups.delay = time.monotonic(), wakeups.first
            if time.monotonic() - error_since >= error_grace:
                reason = current.error_message or "task_error"
                stopped = ("failed", f"stuck in task_error for {error_grace:.0f} s: {reason}")
        else:
            error_since = None
        if not stopped and datetime.now(deadline.tzinfo) >= deadline:
            stopped = ("timed_out", f"timed out in {current.raw_status}; stopped")
        if stopped:
            stopped_at = time.monotonic()
            if not await stop_task(client, current) and current.status is TaskStatus.ERROR:
                try:  # refused: because it just ended, or as a final task_error
                    again = await client.detail(task_id)
                except WiroError:
                    continue  # the next polls tell, within `error_grace`
                if again.status is TaskStatus.ERROR:  # final (Wiro-MCP's reading): failed now, as it stands
                    return _outcome(again, stopped[0], f"{stopped[1]}; Wiro refused to stop it: task_error is final",
                                    rates.get(task_id, Decimal(0)))  # fmt: skip


def _unended(current: WiroTask, stopped: tuple[Outcome, str], since_stop: float, seen_cps: Decimal) -> WaitOutcome:
    """A stopped task that still shows no end: recorded as it stands, its cost left to the caller
    (at least its rate x its seconds so far: it ran, and may have billed all along)."""
    why = f"{stopped[1]}; still {current.raw_status} {since_stop:.0f} s after its Kill"
    return replace(_outcome(current, stopped[0], why, seen_cps), ended=False)


def _until(deadline: datetime, delay: float) -> float:
    left = (deadline - datetime.now(deadline.tzinfo)).total_seconds()
    return max(0.0, min(delay, left + 0.01))


async def stop_task(client: AsyncWiroClient, current: WiroTask) -> bool:
    """Cancel a queued task, kill any other; one that ended meanwhile is left as it ended.

    Whether Wiro took the stop: False when it refused it (code 1: the task ended, or is past
    stopping, as a final `task_error` is). What the task then is, the next Task/Detail says: a
    stop's own answer may not hold the task at all (`wiro_tasks.client`), and one whose task
    Wiro cannot find yet is left to the wait's own polls and their grace."""
    try:
        if current.status in (TaskStatus.QUEUE, TaskStatus.ERROR):
            try:
                await client.cancel(current.id)
                return True
            except TaskStateError:
                pass
        await client.kill(current.id)
    except TaskStateError:
        return False
    except NotFoundError:
        pass
    return True


def _finish(final: WiroTask, seen_cps: Decimal = Decimal(0)) -> WaitOutcome:
    """A final task's outcome. A paid output is never dropped: a `task_postprocess_end` with outputs
    but no `pexit` counts as succeeded (a failed run has none), with the oddity named."""
    notes = list(final.anomalies)
    no_pexit = final.pexit is None and final.status is TaskStatus.POSTPROCESS_END and bool(final.outputs)
    if no_pexit:
        notes.insert(0, "no pexit in Wiro's answer; counted as succeeded because it has outputs")
    if not (final.succeeded or no_pexit):
        status: Outcome = "cancelled" if final.cancelled else "failed"
        return _outcome(final, status, _join(final.error_message or f"ended in {final.raw_status}", *notes), seen_cps)
    if not final.outputs:
        return _outcome(final, "failed", _join("succeeded without outputs", *notes), seen_cps)
    return _outcome(final, "succeeded", _join(*notes), seen_cps)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _outcome(task: WiroTask, status: Outcome, error: str, seen_cps: Decimal = Decimal(0)) -> WaitOutcome:
    output = task.outputs[0] if task.outputs else None
    return WaitOutcome(
        status=status,
        task_id=task.id,
        error=error,
        cost=None if "totalcost" in task.unreadable else task.total_cost,
        elapsed=task.elapsed_seconds if task.elapsed_seconds or task.is_terminal else None,
        output_url=output.url if output else "",
        output_bytes=output.size if output else None,
        noticed_at=time.time(),
        cps=max(task.cps, seen_cps),  # the dearest rate its records gave while it was waited for
    )
