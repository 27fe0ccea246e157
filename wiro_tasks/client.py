"""Sync and async clients for Wiro's task API.

    with WiroClient() as wiro:                      # WIRO_API_KEY / WIRO_API_SECRET / WIRO_BASE_URL
        submitted = wiro.run(TextToVideoInput(prompt="a red fox in snow", seed="7"))
        task = wiro.wait(submitted.task_id)
        if task.succeeded:
            wiro.download(task.outputs[0], "fox.mp4")
        start = wiro.upload("fox.png")              # File/Upload; start.url is an inputImageUrl

Stops (`cancel`, `kill`) are confirmed by reading the task after them, never by their own answer:
Wiro-Docs shows no answer for Task/Cancel and Task/Kill, and Wiro's own clients' fixtures model it
without the task (`{"result": true}` in WiroKit's, an empty `tasklist` in Wiro-MCP's).

Both clients share request building, answer parsing and the retry rule (`_retry.py`); only the
loops that send and sleep differ. Downloads use a separate client without credentials, so the API
key never travels to the file host, and are bounded in bytes and time (`downloads.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from ._base import (
    _CHUNK,
    DEFAULT_ERROR_GRACE,
    NONCE_RESIGNS,
    UPLOAD,
    ImageSource,
    Kind,
    TaskStalledError,
    WaitTimeoutError,
    _BaseClient,
    _check_status,
    _checked,
    _clamp,
    _content,
    _error_clock,
    _fetch_error,
    _Form,
    _target,
    nonce_refused,
)
from ._config import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    ENV_SOCKET_URL,
    resolve_socket_url,
)
from ._exceptions import (
    UploadError,
    WiroError,
)
from ._retry import PollSchedule, RetryPolicy
from .downloads import Allowance, Check, Download, PartFile, Watchdog
from .inputs import TEXT_TO_VIDEO, ModelInput
from .pricing import Tool
from .socket import TaskEvent, task_events
from .types import Submission, Task, TaskOutput, TaskPage, UploadedFile

logger = logging.getLogger("wiro_tasks")


class WiroClient(_BaseClient):
    """Blocking client. Arguments fall back to `WIRO_API_KEY`, `WIRO_API_SECRET`, `WIRO_BASE_URL`,
    and for downloads `WIRO_DOWNLOAD_MAX_BYTES` and `WIRO_DOWNLOAD_TIMEOUT` (see `downloads.py`)."""

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        max_download_bytes: int | None = None,
        download_timeout: float | None = None,
    ) -> None:
        super().__init__(api_key, api_secret, base_url=base_url, timeout=timeout, max_retries=max_retries, retry=retry,
                         max_download_bytes=max_download_bytes, download_timeout=download_timeout)  # fmt: skip
        self._http = httpx.Client(base_url=self._api_url, auth=self._auth, timeout=self._timeout, transport=transport)
        self._files = httpx.Client(timeout=self._timeout, transport=transport, follow_redirects=True)

    def __enter__(self) -> WiroClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._files.close()

    def _call(self, endpoint: str, body: Mapping[str, Any] | _Form, kind: Kind = "read") -> dict[str, Any]:
        attempt, resigns = 0, 0
        while True:
            started, sent = time.monotonic(), time.time()
            try:
                response = self._http.post(endpoint, **_content(body))
                self.server_clock.observe(response.headers.get("date"), sent, time.time())
                self._log(endpoint, started, response.status_code)
                return self._decode(response, endpoint, kind)
            except httpx.HTTPError as exc:
                self._log(endpoint, started, type(exc).__name__)
                error = self._transport_error(exc, endpoint, kind)
            except WiroError as exc:
                error = exc
            if resigns < NONCE_RESIGNS and nonce_refused(error, bool(self.credentials.api_secret), kind):
                resigns += 1
                self.avoid_nonce_clash()
                continue
            if kind == "run" or not self.retry.should_retry(error, attempt):
                raise error
            time.sleep(self.retry.delay(error, attempt))
            attempt += 1

    def run(self, inputs: ModelInput | Mapping[str, object], *, model: str = TEXT_TO_VIDEO) -> Submission:
        """Submit one task. Validates first; never retried (see `SubmitOutcomeUnknownError`)."""
        endpoint, body = self._run_body(inputs, model)
        return self._submission(self._call(endpoint, body, "run"), endpoint)

    def detail(self, task_id: str | None = None, *, socket_token: str | None = None) -> Task:
        """The task's current state, by id or by socket token."""
        body = self._detail_ref(task_id, socket_token)
        return self._one_task(self._call("/Task/Detail", body), "/Task/Detail")

    def list_tasks(self, *, start: int = 0, limit: int = 50) -> list[Task]:
        """The account's tasks, newest first."""
        return list(self.list_page(start=start, limit=limit).tasks)

    def list_page(self, *, start: int = 0, limit: int = 50) -> TaskPage:
        """One page of the account's tasks, newest first, with the list's `total` when Wiro gives it.
        The page may hold fewer than `limit` tasks before the end: advance `start` by what came."""
        return TaskPage.from_api(self._call("/Task/List", self._list_body(start, limit)))

    def cancel(self, task_id: str) -> Task:
        """Cancel a task that is still queued (nothing is billed); the task as read after (see `kill`)."""
        self._call("/Task/Cancel", {"taskid": task_id})
        return self.detail(task_id)

    def tool(self, model: str = TEXT_TO_VIDEO) -> Tool:
        """The model's details from Tool/Detail, with its price: what a run will cost, before it runs."""
        return self._tool(self._call("/Tool/Detail", self._tool_body(model)), model)

    def kill(self, task_id: str | None = None, *, socket_token: str | None = None) -> Task:
        """Stop a running task; time already used may be billed. Returns the task as Task/Detail
        reads it after the stop (see the module's docstring): it may not have ended yet."""
        self._call("/Task/Kill", self._task_ref(task_id, socket_token))
        return self.detail(task_id, socket_token=socket_token)

    def wait(
        self,
        task_id: str,
        *,
        schedule: PollSchedule | None = None,
        timeout: float | None = None,
        error_grace: float = DEFAULT_ERROR_GRACE,
    ) -> Task:
        """Poll until the task is final; `TaskStalledError` after `error_grace` s in `task_error`."""
        started = time.monotonic()
        delays = (schedule or PollSchedule()).delays()
        error_since: float | None = None
        while True:
            task = self.detail(task_id)
            now = time.monotonic()
            error_since = _error_clock(task, error_since, now)
            if task.is_terminal:
                return task
            if error_since is not None and now - error_since >= error_grace:
                raise TaskStalledError(task, now - error_since)
            if timeout is not None and now - started >= timeout:
                raise WaitTimeoutError(task, now - started)
            time.sleep(_clamp(next(delays), started, timeout))

    def upload(
        self,
        source: ImageSource,
        *,
        name: str | None = None,
        folder_id: str | None = None,
        expected_sha256: str | None = None,
    ) -> UploadedFile:
        """Upload a start image to Wiro (File/Upload); its `url` is what `inputImageUrl` takes.

        Checked first (`wiro_tasks.images.check_image`): a bad image raises `ImageCheckError` and
        nothing is sent; with `expected_sha256`, so does content other than that. Streamed from
        disk; retried like a read, since uploads are not billed.
        """
        info = _checked(source, expected_sha256)
        attempt = 0
        with _Form(source, info, name, folder_id) as form:
            while True:  # `_call` retries what failed on the way; this, an answer without a usable file
                try:
                    return self._uploaded(self._call(UPLOAD, form), info)
                except UploadError as error:
                    if not self.retry.should_retry(error, attempt):
                        raise
                    time.sleep(self.retry.delay(error, attempt))
                    attempt += 1

    def download(
        self, output: TaskOutput | str, dest: str | os.PathLike[str], *, check: Check | None = None
    ) -> Download:
        """Stream a task output to `dest` (atomically), within the announced size (else
        `max_download_bytes`) and `download_timeout` s, hashing it; `check` (e.g. `check_mp4`)
        must pass before the file takes its name. See `downloads.py` for the errors."""
        url, announced = _target(output)
        allowance = Allowance.plan(url, announced, self.max_download_bytes, self.download_timeout)
        path = Path(dest)
        attempt = 0
        while True:
            if allowance.left() <= 0:
                raise allowance.expired()
            try:
                with (
                    PartFile(path, allowance) as part,
                    self._files.stream("GET", url, timeout=allowance.timeout(self._timeout)) as response,
                    Watchdog(response, allowance.left()) as watchdog,  # a read blocked past the deadline ends
                ):
                    _check_status(response, url)
                    allowance.check_length(response)
                    for chunk in response.iter_bytes(_CHUNK):
                        part.write(chunk)
                    if watchdog.fired:  # the body may look whole: it was cut short
                        raise allowance.expired()
                    return part.commit(check)
            except httpx.HTTPError as exc:
                error = _fetch_error(exc, url, allowance)
            except WiroError as exc:
                error = exc
            delay = self.retry.delay(error, attempt)
            if not self.retry.should_retry(error, attempt) or delay >= allowance.left():
                raise error
            time.sleep(delay)
            attempt += 1


class AsyncWiroClient(_BaseClient):
    """The asyncio twin of `WiroClient`; one instance per event loop."""

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
        socket_url: str | None = None,
        max_download_bytes: int | None = None,
        download_timeout: float | None = None,
    ) -> None:
        super().__init__(api_key, api_secret, base_url=base_url, timeout=timeout, max_retries=max_retries, retry=retry,
                         max_download_bytes=max_download_bytes, download_timeout=download_timeout)  # fmt: skip
        self.socket_url = resolve_socket_url(socket_url, self._api_url)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(
            base_url=self._api_url, auth=self._auth, timeout=self._timeout, transport=transport, limits=limits
        )
        self._files = httpx.AsyncClient(
            timeout=self._timeout, transport=transport, limits=limits, follow_redirects=True
        )

    async def __aenter__(self) -> AsyncWiroClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def is_closed(self) -> bool:
        """Whether `aclose` has been called: the client sends nothing more."""
        return self._http.is_closed

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._files.aclose()

    async def _call(self, endpoint: str, body: Mapping[str, Any] | _Form, kind: Kind = "read") -> dict[str, Any]:
        attempt, resigns = 0, 0
        while True:
            started, sent = time.monotonic(), time.time()
            try:
                response = await self._http.post(endpoint, **_content(body))
                self.server_clock.observe(response.headers.get("date"), sent, time.time())
                self._log(endpoint, started, response.status_code)
                return self._decode(response, endpoint, kind)
            except httpx.HTTPError as exc:
                self._log(endpoint, started, type(exc).__name__)
                error = self._transport_error(exc, endpoint, kind)
            except WiroError as exc:
                error = exc
            if resigns < NONCE_RESIGNS and nonce_refused(error, bool(self.credentials.api_secret), kind):
                resigns += 1
                self.avoid_nonce_clash()
                continue
            if kind == "run" or not self.retry.should_retry(error, attempt):
                raise error
            await asyncio.sleep(self.retry.delay(error, attempt))
            attempt += 1

    async def run(self, inputs: ModelInput | Mapping[str, object], *, model: str = TEXT_TO_VIDEO) -> Submission:
        """Submit one task. Validates first; never retried (see `SubmitOutcomeUnknownError`)."""
        endpoint, body = self._run_body(inputs, model)
        return self._submission(await self._call(endpoint, body, "run"), endpoint)

    async def detail(self, task_id: str | None = None, *, socket_token: str | None = None) -> Task:
        """The task's current state, by id or by socket token."""
        body = self._detail_ref(task_id, socket_token)
        return self._one_task(await self._call("/Task/Detail", body), "/Task/Detail")

    def events(self, socket_token: str) -> AsyncIterator[TaskEvent]:
        """A task's pushed status events (see `wiro_tasks.socket`); needs a `socket_url`."""
        if not self.socket_url:
            raise ValueError(f"no socket URL: pass socket_url= or set {ENV_SOCKET_URL}")
        return task_events(self.socket_url, socket_token)

    async def list_tasks(self, *, start: int = 0, limit: int = 50) -> list[Task]:
        """The account's tasks, newest first."""
        return list((await self.list_page(start=start, limit=limit)).tasks)

    async def list_page(self, *, start: int = 0, limit: int = 50) -> TaskPage:
        """One page of the account's tasks, newest first, with the list's `total` when Wiro gives it.
        The page may hold fewer than `limit` tasks before the end: advance `start` by what came."""
        return TaskPage.from_api(await self._call("/Task/List", self._list_body(start, limit)))

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task that is still queued (nothing is billed); the task as read after (see `kill`)."""
        await self._call("/Task/Cancel", {"taskid": task_id})
        return await self.detail(task_id)

    async def tool(self, model: str = TEXT_TO_VIDEO) -> Tool:
        """The model's details from Tool/Detail, with its price: what a run will cost, before it runs."""
        return self._tool(await self._call("/Tool/Detail", self._tool_body(model)), model)

    async def kill(self, task_id: str | None = None, *, socket_token: str | None = None) -> Task:
        """Stop a running task; time already used may be billed. Returns the task as Task/Detail
        reads it after the stop (see the module's docstring): it may not have ended yet."""
        await self._call("/Task/Kill", self._task_ref(task_id, socket_token))
        return await self.detail(task_id, socket_token=socket_token)

    async def wait(
        self,
        task_id: str,
        *,
        schedule: PollSchedule | None = None,
        timeout: float | None = None,
        error_grace: float = DEFAULT_ERROR_GRACE,
    ) -> Task:
        """Poll until the task is final; `TaskStalledError` after `error_grace` s in `task_error`."""
        started = time.monotonic()
        delays = (schedule or PollSchedule()).delays()
        error_since: float | None = None
        while True:
            task = await self.detail(task_id)
            now = time.monotonic()
            error_since = _error_clock(task, error_since, now)
            if task.is_terminal:
                return task
            if error_since is not None and now - error_since >= error_grace:
                raise TaskStalledError(task, now - error_since)
            if timeout is not None and now - started >= timeout:
                raise WaitTimeoutError(task, now - started)
            await asyncio.sleep(_clamp(next(delays), started, timeout))

    async def upload(
        self,
        source: ImageSource,
        *,
        name: str | None = None,
        folder_id: str | None = None,
        expected_sha256: str | None = None,
    ) -> UploadedFile:
        """Upload a start image to Wiro (File/Upload); its `url` is what `inputImageUrl` takes.

        Checked first, off the event loop (`wiro_tasks.images.check_image`): a bad image raises
        `ImageCheckError` and nothing is sent; with `expected_sha256`, so does content other than
        that. Streamed from disk; retried like a read, since uploads are not billed.
        """
        info = await asyncio.to_thread(_checked, source, expected_sha256)
        attempt = 0
        with _Form(source, info, name, folder_id) as form:
            while True:  # `_call` retries what failed on the way; this, an answer without a usable file
                try:
                    return self._uploaded(await self._call(UPLOAD, form), info)
                except UploadError as error:
                    if not self.retry.should_retry(error, attempt):
                        raise
                    await asyncio.sleep(self.retry.delay(error, attempt))
                    attempt += 1

    async def download(
        self, output: TaskOutput | str, dest: str | os.PathLike[str], *, check: Check | None = None
    ) -> Download:
        """Stream a task output to `dest` (atomically), within the announced size (else
        `max_download_bytes`) and `download_timeout` s, hashing it; `check` (e.g. `check_mp4`)
        must pass before the file takes its name. See `downloads.py` for the errors."""
        url, announced = _target(output)
        allowance = Allowance.plan(url, announced, self.max_download_bytes, self.download_timeout)
        path = Path(dest)
        attempt = 0
        while True:
            if allowance.left() <= 0:
                raise allowance.expired()
            try:
                with PartFile(path, allowance) as part:
                    try:
                        async with asyncio.timeout(allowance.left()):
                            async with self._files.stream("GET", url, timeout=allowance.timeout(self._timeout)) as r:
                                _check_status(r, url)
                                allowance.check_length(r)
                                async for chunk in r.aiter_bytes(_CHUNK):
                                    part.write(chunk)
                    except TimeoutError:
                        raise allowance.expired() from None
                    # The deadline is for the bytes: the check, fsync and rename always finish, so a
                    # file is either wholly in place or not at all.
                    return await asyncio.to_thread(part.commit, check)
            except httpx.HTTPError as exc:
                error = _fetch_error(exc, url, allowance)
            except WiroError as exc:
                error = exc
            delay = self.retry.delay(error, attempt)
            if not self.retry.should_retry(error, attempt) or delay >= allowance.left():
                raise error
            await asyncio.sleep(delay)
            attempt += 1
