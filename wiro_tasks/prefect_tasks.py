"""Prefect tasks over the async client: submit one combination, wait for one task.

Only plain data crosses these task boundaries (inputs as a dict, ids, paths, dataclasses). The
client belongs to the flow run's `WiroSession` (`async with wiro_session(credentials)`), which
the run's tasks find in a context variable: it is never a parameter, a cache key or a result,
and nothing of it outlives the run or is shared with another. Retry rules:

- `submit` is never retried by Prefect. Inside, it submits again only when Wiro said no task was
  created (code 96, HTTP 429, a connection that never opened). A lost answer comes back as
  `unknown`, for the caller to look for the task before anything else. A connection that keeps
  failing to open comes back as `unreachable` after `CONNECT_WAIT_SECONDS`: a wrong
  `WIRO_BASE_URL` or an outage, which waiting out like code 96 would only hide.
- `wait` is retried by Prefect on transient errors only: polling and downloading are safe to
  repeat. It cancels (queued) or kills (running) a task past its deadline. A task that did not
  succeed ends the `wait` task run Failed, TimedOut or Cancelled, with the outcome as its data
  (`outcome_of` reads it back): a returned state is not an error, so it is never retried.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.exceptions import MissingContextError
from prefect.states import Cancelled, Failed

from . import (
    APIError,
    AsyncWiroClient,
    AuthenticationError,
    ConcurrencyLimitError,
    Credentials,
    InsufficientBalanceError,
    NotFoundError,
    RateLimitedError,
    SubmitOutcomeUnknownError,
    TaskStateError,
    TransientError,
    WiroConnectionError,
    WiroError,
)
from .downloads import check_mp4
from .inputs import ModelSpec, Value, model_spec
from .types import Task as WiroTask
from .types import TaskOutput, TaskStatus

SubmitKind = Literal["submitted", "unknown", "refused", "auth", "balance", "unreachable", "gave_up"]
"""How `submit` ended: `submitted` (a task id); `unknown` (sent, answer lost: look for the task);
`refused` (Wiro said no, e.g. code 0); `auth` (key refused); `balance` (code 97); `unreachable` (no
connection to the API opened for `connect_wait` s: no task was created, stop submitting new rows);
`gave_up` (no free slot, code 96 or 429, within `limit_wait`)."""
Outcome = Literal["succeeded", "failed", "timed_out", "cancelled"]


@dataclass
class WiroSession:
    """One flow run's link to Wiro: its credentials, its client (made on first use), and the
    per-second rate each of its tasks' records gave while `wait` watched it (the budget guard
    counts a task at that rate from then on)."""

    credentials: Credentials
    rates: dict[str, Decimal] = field(default_factory=dict)
    _client: AsyncWiroClient | None = None

    def client(self) -> AsyncWiroClient:
        if self._client is None or self._client.is_closed:
            self._client = AsyncWiroClient(self.credentials.api_key, self.credentials.api_secret)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


_session: ContextVar[WiroSession | None] = ContextVar("wiro_session", default=None)


@asynccontextmanager
async def wiro_session(credentials: Credentials | None = None) -> AsyncIterator[WiroSession]:
    """The Wiro session of the code inside (a flow run, a benchmark): its tasks and the coroutines
    it starts use it; its client is closed at the end. Credentials default to the environment's."""
    session = WiroSession(credentials or Credentials.resolve())
    token = _session.set(session)
    try:
        yield session
    finally:
        _session.reset(token)
        await session.aclose()


def current_session() -> WiroSession:
    """The session the calling code runs in (`wiro_session`)."""
    session = _session.get()
    if session is None:
        raise RuntimeError("no Wiro session: run this inside `async with wiro_session(...)`")
    return session


def wiro_client() -> AsyncWiroClient:
    """The current session's client, made on first use."""
    return current_session().client()


@dataclass(frozen=True)
class SubmitOutcome:
    """How a submission ended: `submitted` with a task id, or why not."""

    kind: SubmitKind
    task_id: str = ""
    message: str = ""


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


@dataclass(frozen=True)
class Saved:
    """An output saved to disk, or why it could not be."""

    path: str = ""
    sha256: str = ""
    size: int | None = None
    error: str = ""


CONNECT_WAIT_SECONDS = 120.0  # how long a Run whose connection never opens is retried
CONNECT_WARN_SECONDS = 30.0  # ... and when to say so in the log


@task(name="submit", task_run_name="submit {label}", cache_policy=NO_CACHE, persist_result=False)
async def submit(
    model: str,
    inputs: dict[str, Value],
    label: str,
    limit_wait: float = 3600.0,
    connect_wait: float | None = None,
) -> SubmitOutcome:
    """Send one Run request; resend only when Wiro said no task was created. A connection that
    never opens is retried for `connect_wait` s (default `CONNECT_WAIT_SECONDS`, read per call)."""
    connect = CONNECT_WAIT_SECONDS if connect_wait is None else connect_wait
    return await submit_with(wiro_client(), model, inputs, limit_wait=limit_wait, connect_wait=connect)


async def submit_with(
    client: AsyncWiroClient,
    model: str,
    inputs: dict[str, Value],
    *,
    limit_wait: float = 3600.0,
    connect_wait: float = CONNECT_WAIT_SECONDS,
) -> SubmitOutcome:
    """`submit`'s body, on a given client. Code 96 and 429 are waited out for `limit_wait` s; a
    connection that never opens (no task can exist) is retried for `connect_wait` s of its own."""
    started = time.monotonic()
    refusals = 0
    unreachable_since: float | None = None
    warned = False
    while True:
        try:
            submitted = await client.run(inputs, model=model)
            return SubmitOutcome("submitted", submitted.task_id)
        except SubmitOutcomeUnknownError as exc:
            return SubmitOutcome("unknown", message=str(exc))
        except InsufficientBalanceError as exc:
            return SubmitOutcome("balance", message=exc.message)
        except AuthenticationError as exc:
            return SubmitOutcome("auth", message=str(exc))
        except (ConcurrencyLimitError, RateLimitedError, WiroConnectionError) as exc:
            refusals += 1
            now = time.monotonic()
            if now - started > limit_wait:
                return SubmitOutcome("gave_up", message=f"no slot within {limit_wait:.0f} s: {exc}")
            delay = exc.retry_after if isinstance(exc, APIError) and exc.retry_after else min(10.0, refusals)
            delay *= random.uniform(0.8, 1.2)
            if not isinstance(exc, WiroConnectionError):
                unreachable_since = None
            else:
                unreachable_since = unreachable_since or now
                down = now - unreachable_since
                if down >= connect_wait:
                    return SubmitOutcome(
                        "unreachable",
                        message=f"could not connect to the Wiro API at {client.base_url} for {down:.0f} s "
                        f"(check WIRO_BASE_URL): {exc}",
                    )
                warn_at = min(CONNECT_WARN_SECONDS, connect_wait / 2)
                if down >= warn_at and not warned:
                    warned = True
                    _logger().warning("no connection to %s for %.0f s; retrying until %.0f s: %s",
                                      client.base_url, down, connect_wait, exc)  # fmt: skip
                delay = min(delay, (connect_wait if warned else warn_at) - down)
            await asyncio.sleep(max(0.0, delay))
        except WiroError as exc:
            return SubmitOutcome("refused", message=str(exc))


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The task run's logger (shown in the Prefect UI), or the package's outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:  # called as a plain coroutine (tests, benchmarks)
        return logging.getLogger("wiro_tasks")


async def _transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a task only for errors that another attempt can cure (Prefect awaits this)."""
    error = await state.aresult(raise_on_failure=False)
    return isinstance(error, (WiroConnectionError, TransientError))


NOT_FOUND_GRACE = 60.0
SOCKET_POLL_FACTOR = 10.0  # with events pushed, polls only guard against a lost one
STOP_GRACE = 300.0


@task(
    name="wait",
    task_run_name="wait {label}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=_transient,
)
async def wait(
    task_id: str,
    label: str,
    deadline: datetime,
    poll_interval: float = 3.0,
    poll_cap: float = 30.0,
    error_grace: float = 120.0,
) -> WaitOutcome | State[Any]:
    """`wait_for_end` as a task run that ends as the row's task did (`as_state`)."""
    return as_state(await wait_for_end(task_id, deadline, poll_interval, poll_cap, error_grace))


def as_state(outcome: WaitOutcome) -> WaitOutcome | State[Any]:
    """A success as itself (Completed); anything else as a state the Prefect UI shows and its state
    filter finds: Failed, Failed named TimedOut, or Cancelled, with the outcome as the data."""
    if outcome.status == "succeeded":
        return outcome
    cost = f"${outcome.cost.normalize():f}" if outcome.cost is not None else "cost unreadable"
    message = f"{outcome.status}: {outcome.error or 'no reason given'} (task {outcome.task_id}, {cost})"
    if outcome.status == "cancelled":
        return Cancelled(data=outcome, message=message)
    return Failed(data=outcome, message=message, name="TimedOut" if outcome.status == "timed_out" else "Failed")


async def outcome_of(state: State[Any]) -> WaitOutcome:
    """What a `wait` task run (called with `return_state=True`) ended with; an error it raised is raised."""
    result = await state.aresult(raise_on_failure=False)
    if isinstance(result, WaitOutcome):
        return result
    if isinstance(result, BaseException):
        raise result
    raise TypeError(f"wait ended in {state.name} without an outcome: {result!r}")


async def wait_for_end(
    task_id: str, deadline: datetime, poll_interval: float = 3.0, poll_cap: float = 30.0, error_grace: float = 120.0
) -> WaitOutcome:
    """Poll a task to its end (or its deadline, then stop it); `fetch` saves its output after.

    With Wiro's task socket the wait is pushed: the socket opens at the first poll that finds
    the task still running (one that ends sooner costs no socket), then polls back off far
    (they only guard against a lost event) and an event wakes the wait at once. A task is only ever recorded once Wiro
    says it is final: after a Cancel or Kill the polling goes on until it is, so what it cost
    (and any output it still produced) is never lost.
    """
    session = current_session()
    client, rates = session.client(), session.rates
    wakeups = _Wakeups(client, poll_interval, max(poll_interval, poll_cap))
    try:
        return await _wait(client, wakeups, task_id, deadline, error_grace, rates)
    finally:
        wakeups.close()
        rates.pop(task_id, None)


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
            return WaitOutcome("failed", task_id, error=f"task {task_id} not found: another account or base URL?")
        missing_since = None
        if current.cps > 0:
            rates[task_id] = max(current.cps, rates.get(task_id, Decimal(0)))
        if current.is_terminal:
            seen = rates.get(task_id, Decimal(0))
            if stopped and not (current.succeeded or current.failed):
                return _outcome(current, *stopped, seen_cps=seen)
            return _finish(current, seen)
        wakeups.listen(current.socket_token)
        if stopped:
            if time.monotonic() - stopped_at > STOP_GRACE:
                raise WiroConnectionError(f"task {task_id} still {current.raw_status} {STOP_GRACE:.0f} s after Kill")
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
            await stop_task(client, current)


def _until(deadline: datetime, delay: float) -> float:
    left = (deadline - datetime.now(deadline.tzinfo)).total_seconds()
    return max(0.0, min(delay, left + 0.01))


async def stop_task(client: AsyncWiroClient, current: WiroTask) -> None:
    """Cancel a queued task, kill any other; one that ended meanwhile is left as it ended."""
    try:
        if current.status in (TaskStatus.QUEUE, TaskStatus.ERROR):
            try:
                await client.cancel(current.id)
                return
            except TaskStateError:
                pass
        await client.kill(current.id)
    except TaskStateError:
        pass


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


async def fetch(task_id: str, url: str, size: int | None, dest: str) -> Saved:
    """Download a paid video to `dest`: atomically, within its announced size (or the client's
    cap) and deadline, an MP4 container or nothing, hashed. A plain coroutine, not a task: it
    runs after the task's concurrency slot is free. A stale URL is refreshed from Task/Detail
    once. `Saved.error` says why nothing was saved."""
    client = wiro_client()
    try:
        try:
            saved = await client.download(TaskOutput(name="", url=url, size=size or 0), dest, check=check_mp4)
        except APIError as exc:
            if exc.retryable:
                raise
            outputs = (await client.detail(task_id)).outputs
            if not outputs:
                raise
            saved = await client.download(outputs[0], dest, check=check_mp4)
    except WiroError as exc:
        return Saved(error=f"download failed: {exc}")
    except OSError as exc:  # a full disk or an unwritable OUT: the paid output is fetched by a rerun
        return Saved(error=f"download failed: cannot write {dest}: {exc.strerror or exc}")
    return Saved(str(saved.path), saved.sha256, saved.size)


@task(name="upload", task_run_name="upload {label}", cache_policy=NO_CACHE, persist_result=False)
async def upload(path: str, sha256: str, label: str) -> str:
    """Upload one start image (File/Upload) and return the URL a Run's `inputImageUrl` takes.

    The file must still hold the bytes that were checked (`sha256`): an image changed since the
    grid was read raises `ImageCheckError` and nothing is sent. Uploads are not billed, and the
    client retries them like reads."""
    uploaded = await wiro_client().upload(path, expected_sha256=sha256)
    return uploaded.url


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


@dataclass(frozen=True)
class FindOutcome:
    """What a Task/List scan found: the matching tasks not excluded (oldest first), and whether the
    scan reached back far enough for "none" to prove that no task exists."""

    task_ids: tuple[str, ...]
    complete: bool

    @property
    def task_id(self) -> str | None:
        return self.task_ids[0] if self.task_ids else None

    @property
    def matches(self) -> int:
        return len(self.task_ids)


MAX_SCAN = 20_000
SCAN_PAGE = 100
_PAST_END = 10**9  # a start no account reaches: a server that honours `start` answers an empty page
CLOCK_SKEW = timedelta(minutes=2)  # margin on the server's clock, beyond what its answers bound
UNKNOWN_CLOCK = timedelta(hours=1, minutes=2)  # ... and without any `Date` to go by


@task(name="find-task", task_run_name="find {label}", cache_policy=NO_CACHE, persist_result=False, retries=2,
      retry_delay_seconds=5, retry_condition_fn=_transient)  # fmt: skip
async def find_task(
    model: str,
    inputs: dict[str, Value],
    label: str,
    since: datetime,
    exclude: list[str],
    since_server: datetime | None = None,
) -> FindOutcome:
    """The tasks a lost Run answer may have created: same inputs, created after `since`."""
    return await scan_for_task(wiro_client(), model, inputs, since, exclude, since_server=since_server)


async def scan_for_task(
    client: AsyncWiroClient,
    model: str,
    inputs: dict[str, Value],
    since: datetime,
    exclude: list[str],
    *,
    since_server: datetime | None = None,
    page_size: int = SCAN_PAGE,
    max_scan: int = MAX_SCAN,
) -> FindOutcome:
    """`find_task`'s body, on a given client: scan Task/List newest first for the task.

    `since` is when the Run request was about to be sent, on the local clock, and `since_server`
    the same moment on the server's clock when it was known then. Task times are the server's,
    so they are judged on its clock: `since_server`, else `since` moved by the offset that the
    answers' `Date` headers bound (`client.server_clock`), else `since` less an hour (`UNKNOWN_CLOCK`);
    then less `CLOCK_SKEW`.

    `complete` says the scan saw every task that could be it, and only then may "no task" let a
    row be paid for again. So the end of the list is never inferred from a short page (a server
    may cap pages below `page_size`), nor from a `total` (whose meaning Wiro does not document):
    `start` moves on by the tasks received, and the end is an empty page, or a page of tasks all
    older than that bound (trusted only on a page in newest-first order). A scan that stops short
    of that (more than `max_scan` tasks, or a server that answers the first page whatever the
    `start`) proves nothing. A listed task that cannot be read whole (an odd field) is judged on
    what can be read: one without a readable `createtime` always counts as recent.
    """
    spec = model_spec(model)
    wanted = spec.validate(inputs, allow_unknown=True)
    wanted.pop("callbackUrl", None)
    found: list[WiroTask] = []
    seen: set[str] = set()
    first_page: list[str] = []
    start, complete = 0, False
    while start < max_scan:
        page = await client.list_page(start=start, limit=page_size)
        if not page.tasks:
            complete = True
            break
        oldest = _oldest(client, since, since_server)  # the first answer has taught the server's clock
        ids = [t.id for t in page.tasks]
        fresh = [t for t in page.tasks if t.id not in seen]
        # A page of tasks already seen is normal: tasks created meanwhile push the list down
        # (the scan goes on to an empty page). The first page again may mean `start` is ignored,
        # or that exactly that many tasks were created meanwhile: a page far past the end tells.
        if start and not fresh and ids == first_page and (await client.list_page(start=_PAST_END, limit=1)).tasks:
            break
        first_page = first_page or ids
        seen.update(ids)
        found.extend(t for t in fresh if t.id not in exclude and _same_inputs(spec, t, wanted, oldest))
        start += len(page.tasks)
        if _newest_first(page.tasks) and all(t.created_at is not None and t.created_at < oldest for t in page.tasks):
            complete = True
            break
    found.sort(key=lambda t: (t.created_at or since, int(t.id) if t.id.isdigit() else 0))
    return FindOutcome(tuple(dict.fromkeys(t.id for t in found)), complete or bool(found))


def _oldest(client: AsyncWiroClient, since: datetime, since_server: datetime | None) -> datetime:
    """The earliest server time at which the task looked for may have been created."""
    if since_server is not None:
        return since_server - CLOCK_SKEW
    offset = client.server_clock.offset
    if offset is None:
        return since - UNKNOWN_CLOCK
    return since + timedelta(seconds=offset.low) - CLOCK_SKEW


def _same_inputs(spec: ModelSpec, candidate: WiroTask, wanted: dict[str, Value], oldest: datetime) -> bool:
    """Whether a listed task was made from `wanted` (defaults filled in) no earlier than `oldest`."""
    if not candidate.parameters or (candidate.created_at is not None and candidate.created_at < oldest):
        return False
    try:
        have = spec.validate(dict(candidate.parameters), allow_unknown=True)
    except WiroError:
        return False
    have.pop("callbackUrl", None)
    return have == wanted


def _newest_first(tasks: tuple[WiroTask, ...]) -> bool:
    """Whether a page is in the order asked for (ids descending), so nothing after it is newer."""
    ids = [int(t.id) if t.id.isdigit() else None for t in tasks]
    return all(a is not None and b is not None and a > b for a, b in itertools.pairwise(ids))
