"""Prefect tasks over the async client: submit one combination, wait for one task.

Only plain data crosses these task boundaries (inputs as a dict, ids, paths, dataclasses). The
client belongs to the flow run's `WiroSession` (`async with wiro_session(credentials)`), which
the run's tasks find in a context variable: it is never a parameter, a cache key or a result,
and nothing of it outlives the run or is shared with another. Retry rules:

- `submit` is never retried by Prefect. Inside, it submits again only when Wiro said no task was
  created (code 96, HTTP 429, a connection that never opened, a nonce another process on the key
  sent first: HTTP 401 "not valid", up to `NONCE_RESIGNS` times). A lost answer comes back as
  `unknown`, for the caller to look for the task before anything else. A connection that keeps
  failing to open comes back as `unreachable` after `CONNECT_WAIT_SECONDS`: a wrong
  `WIRO_BASE_URL` or an outage, which waiting out like code 96 would only hide.
- `wait` is retried by Prefect on transient errors only: polling and downloading are safe to
  repeat. It cancels (queued) or kills (running) a task past its deadline; one that shows no end
  `STOP_GRACE` s after that is returned as it stands, never raised for a retry. A task that did not
  succeed ends the `wait` task run Failed, TimedOut or Cancelled, with the outcome as its data
  (`outcome_of` reads it back): a returned state is not an error, so it is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar, cast

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.exceptions import MissingContextError
from prefect.states import Cancelled, Failed
from prefect.utilities.annotations import quote

from . import (
    APIError,
    AsyncWiroClient,
    AuthenticationError,
    ConcurrencyLimitError,
    Credentials,
    InsufficientBalanceError,
    RateLimitedError,
    SubmitOutcomeUnknownError,
    TransientError,
    WiroConnectionError,
    WiroError,
)
from ._base import NONCE_RESIGNS, refused_as_not_valid
from .downloads import check_mp4
from .inputs import Value
from .scan import FindOutcome, scan_for_task
from .types import TaskOutput
from .waiting import WaitOutcome
from .waiting import wait_for_end as wait_on

SubmitKind = Literal["submitted", "unknown", "refused", "auth", "balance", "unreachable", "gave_up"]
"""How `submit` ended: `submitted` (a task id); `unknown` (sent, answer lost: look for the task);
`refused` (Wiro said no, e.g. code 0); `auth` (key refused); `balance` (code 97); `unreachable` (no
connection to the API opened for `connect_wait` s: no task was created, stop submitting new rows);
`gave_up` (no free slot, code 96 or 429, within `limit_wait`)."""


@dataclass
class WiroSession:
    """One flow run's link to Wiro: its credentials, its client (made on first use), and the
    per-second rate each of its tasks' records gave while `wait` watched it (the budget guard
    counts a task at that rate from then on), and for each task waited on, a call that makes its
    wait look at it now (`wake`)."""

    credentials: Credentials
    rates: dict[str, Decimal] = field(default_factory=dict)
    wakers: dict[str, Callable[[], None]] = field(default_factory=dict)
    _client: AsyncWiroClient | None = None

    def wake(self, task_ids: Iterable[str]) -> None:
        """Make the waits on these tasks (stopped by the caller) look at them now."""
        for task_id in task_ids:
            waker = self.wakers.get(task_id)
            if waker is not None:
                waker()

    def client(self) -> AsyncWiroClient:
        if self._client is None or self._client.is_closed:
            self._client = AsyncWiroClient(self.credentials.api_key, self.credentials.api_secret)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


_session: ContextVar[WiroSession | None] = ContextVar("wiro_session", default=None)


@asynccontextmanager
async def wiro_session(
    credentials: Credentials | None = None, client: AsyncWiroClient | None = None
) -> AsyncIterator[WiroSession]:
    """The Wiro session of the code inside (a flow run, a benchmark): its tasks and the coroutines
    it starts use it; its client is closed at the end. Credentials default to the client's, else
    the environment's; a client given (a test's, on a mock transport) is used as it is."""
    session = WiroSession(credentials or (client.credentials if client else Credentials.resolve()), _client=client)
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
    socket_token: str = field(default="", repr=False)  # the Run answer's, to tell its task from another with its id


@dataclass(frozen=True)
class Saved:
    """An output saved to disk, or why it could not be."""

    path: str = ""
    sha256: str = ""
    size: int | None = None
    error: str = ""


CONNECT_WAIT_SECONDS = 120.0  # how long a Run whose connection never opens is retried
CONNECT_WARN_SECONDS = 30.0  # ... and when to say so in the log


@dataclass(frozen=True)
class RunRequest:
    """One Run request for `submit`, and how long to keep sending it while Wiro says no task was made."""

    model: str
    inputs: dict[str, Value]
    limit_wait: float = 3600.0  # code 96 and 429 are waited out this long
    connect_wait: float | None = None  # a connection that never opens is retried this long (None: CONNECT_WAIT_SECONDS)
    sending: Callable[[bool], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class WaitRequest:
    """One task for `wait` to see to its end, by `deadline`, and how to look at it."""

    task_id: str
    deadline: datetime
    poll_interval: float = 3.0
    poll_cap: float = 30.0
    error_grace: float = 120.0


T = TypeVar("T")


def unwalked(value: T) -> T:
    """`value` as a task run's parameter that Prefect's engine passes on without walking into it
    for futures and states (`quote`): a request holds none, and the walk cost about 0.3 ms a row."""
    return cast(T, quote(value))


@task(name="submit", task_run_name="submit {label}", cache_policy=NO_CACHE, persist_result=False)
async def submit(label: str, request: RunRequest) -> SubmitOutcome:
    """Send one Run request; resend only when Wiro said no task was created. A connection that
    never opens is retried for `request.connect_wait` s (default `CONNECT_WAIT_SECONDS`, read per
    call). `request.sending(True)` is called as each attempt goes out, `sending(False)` when Wiro
    said it made no task (it will be sent again, or not at all).

    Two parameters, the request passed as `unwalked(request)`: each parameter of a task run costs
    Prefect's engine work on every call (binding, walking, its task inputs), about 0.7 ms a row
    for the six the request holds."""
    connect = CONNECT_WAIT_SECONDS if request.connect_wait is None else request.connect_wait
    client = wiro_client()
    return await submit_with(client, request.model, request.inputs, limit_wait=request.limit_wait,
                             connect_wait=connect, sending=request.sending)  # fmt: skip


async def submit_with(
    client: AsyncWiroClient,
    model: str,
    inputs: dict[str, Value],
    *,
    limit_wait: float = 3600.0,
    connect_wait: float = CONNECT_WAIT_SECONDS,
    sending: Callable[[bool], None] | None = None,
) -> SubmitOutcome:
    """`submit`'s body, on a given client. Code 96 and 429 are waited out for `limit_wait` s; a
    connection that never opens (no task can exist) is retried for `connect_wait` s of its own."""
    started = time.monotonic()
    refusals = clashes = 0
    unreachable_since: float | None = None
    warned = False
    while True:
        if sending is not None:
            sending(True)
        try:
            submitted = await client.run(inputs, model=model)
            return SubmitOutcome("submitted", submitted.task_id, socket_token=submitted.socket_token)
        except SubmitOutcomeUnknownError as exc:
            return SubmitOutcome("unknown", message=str(exc))
        except InsufficientBalanceError as exc:
            return SubmitOutcome("balance", message=exc.message)
        except AuthenticationError as exc:
            if not (client.credentials.api_secret and refused_as_not_valid(exc) and clashes < NONCE_RESIGNS):
                return SubmitOutcome("auth", message=str(exc))
            clashes += 1  # a nonce another process on the key sent: no task was made, so send it again
            client.avoid_nonce_clash()
            if sending is not None:
                sending(False)
        except (ConcurrencyLimitError, RateLimitedError, WiroConnectionError) as exc:
            if sending is not None:
                sending(False)
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


CURABLE = (WiroConnectionError, TransientError)  # errors another try of a wait or a look may cure


async def _transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a task only for errors that another attempt can cure (Prefect awaits this)."""
    error = await state.aresult(raise_on_failure=False)
    return isinstance(error, CURABLE)


WAIT_RETRY_DELAYS = (2.0, 10.0, 30.0)  # `wait` is tried again after these pauses, for errors another try can cure


@task(
    name="wait",
    task_run_name="wait {label}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=len(WAIT_RETRY_DELAYS),
    retry_delay_seconds=list(WAIT_RETRY_DELAYS),
    retry_condition_fn=_transient,
)
async def wait(label: str, request: WaitRequest) -> WaitOutcome | State[Any]:
    """`wait_for_end` as a task run that ends as the row's task did (`as_state`); the request is
    passed as `unwalked(request)`, as `submit`'s is."""
    return as_state(await _ended(request))


async def wait_for_end(
    task_id: str, deadline: datetime, poll_interval: float = 3.0, poll_cap: float = 30.0, error_grace: float = 120.0
) -> WaitOutcome:
    """`waiting.wait_for_end` on the current session's client, its rates recorded in the session."""
    session = current_session()
    return await wait_on(
        session.client(), task_id, deadline, poll_interval, poll_cap, error_grace, session.rates, session.wakers
    )


async def _ended(r: WaitRequest) -> WaitOutcome:
    """`wait_for_end` of one request: the body of `wait`, and each try of `wait_retrying`."""
    return await wait_for_end(r.task_id, r.deadline, r.poll_interval, r.poll_cap, r.error_grace)


async def wait_retrying(request: WaitRequest) -> WaitOutcome:
    """`wait` without a task run: its body, tried again as the task is (after `WAIT_RETRY_DELAYS`,
    for a lost connection or a transient error only)."""
    for delay in WAIT_RETRY_DELAYS:
        try:
            return await _ended(request)
        except CURABLE as exc:
            _logger().warning("waiting for task %s failed (%s); trying again in %.0f s", request.task_id, exc, delay)
            await asyncio.sleep(delay)
    return await _ended(request)  # its last try raises


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


@task(name="find-task", task_run_name="find {label}", cache_policy=NO_CACHE, persist_result=False, retries=2,
      retry_delay_seconds=5, retry_condition_fn=_transient)  # fmt: skip
async def find_task(
    model: str,
    inputs: dict[str, Value],
    label: str,
    since: datetime,
    exclude: Collection[str],
    since_server: datetime | None = None,
    id_floor: int | None = None,
) -> FindOutcome:
    """The tasks a lost Run answer may have created: same inputs, created after `since` (and,
    with `id_floor`, numbered above it: see `scan_for_task`)."""
    client = wiro_client()
    return await scan_for_task(client, model, inputs, since, exclude, since_server=since_server, id_floor=id_floor)


RESULT_LINK_SECONDS = 60.0


async def forget_old_result_links(keep_seconds: float = RESULT_LINK_SECONDS, every: float = 10.0) -> None:
    """Drop, every `every` s, the flow run's links from task results to the states that made them
    once they are `keep_seconds` old.

    Prefect keeps such a link (`FlowRunContext.run_results`) for each task result and each of its
    fields for the flow run's whole life, so that a later task given one of them shows it as
    upstream: about 7 KiB a row here, 700 MiB at 100,000 rows. A row's `wait` is given its
    `submit`'s task id within seconds, and nothing later is given either's results. Plain values
    (strings, dicts) are linked by `id()` alone, so an old link can also attach a later task to a
    task whose result died long ago (PrefectHQ/prefect#20558): forgetting it mends that too."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None:
        return
    links = context.run_results
    first_seen: dict[int, float] = {}  # a link's own state has no usable time (its copy drops it)
    while True:
        await asyncio.sleep(every)
        now = time.monotonic()
        for key in list(links):  # a copy: sync task runs link from other threads
            if now - first_seen.setdefault(key, now) >= keep_seconds:
                links.pop(key, None)
        first_seen = {key: at for key, at in first_seen.items() if key in links}
