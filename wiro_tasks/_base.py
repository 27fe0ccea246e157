"""What the sync and async clients share: request bodies, answer parsing, errors and the
small helpers of uploads and downloads. Only the loops that send and sleep live in `client.py`."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any, Literal

import httpx

from ._auth import WiroAuth
from ._clock import ServerClock
from ._config import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    Credentials,
    DownloadLimits,
    resolve_base_url,
    shown_url,
    without_userinfo,
)
from ._exceptions import (
    APIError,
    AuthenticationError,
    NotFoundError,
    SubmitOutcomeUnknownError,
    TransientError,
    UploadError,
    WiroConnectionError,
    WiroError,
)
from ._retry import RetryPolicy
from .downloads import Allowance, DownloadError
from .images import CheckedReader, ImageCheckError, ImageInfo, check_image
from .inputs import ModelInput, Value, model_spec
from .pricing import Tool
from .types import Submission, Task, TaskOutput, TaskPage, TaskStatus, UploadedFile

logger = logging.getLogger("wiro_tasks")

Kind = Literal["run", "read"]
DEFAULT_ERROR_GRACE = 60.0
UPLOAD = "/File/Upload"
_CHUNK = 1 << 16
ImageSource = str | os.PathLike[str] | bytes


class TaskStalledError(WiroError):
    """`wait` saw the task sit in `task_error` past the grace period: record it as failed."""

    def __init__(self, task: Task, seconds: float) -> None:
        self.task = task
        reason = task.error_message or "no reason given"
        super().__init__(f"task {task.id} stuck in task_error for {seconds:.0f} s: {reason}")


class WaitTimeoutError(WiroError, TimeoutError):
    """`wait` gave up before the task finished; `task` is the last state seen."""

    def __init__(self, task: Task, seconds: float) -> None:
        self.task = task
        super().__init__(f"task {task.id} still {task.raw_status} after {seconds:.0f} s")


NOT_VALID = "project authorization is not valid"  # Wiro's 401 for a bad signature, or a nonce it refused
# A request refused "not valid" is signed again under another digit this many times: a read by
# the client, a Run by `prefect_tasks.submit` (which made no task); a wrong secret then ends in
# an authentication error. Once was too few: four shards on one key, each sending 40 signed
# requests a second, clash again on the digit they move to about one time in six.
NONCE_RESIGNS = 3


def nonce_refused(error: WiroError, signed: bool, kind: Kind) -> bool:
    """Whether a signed read was refused as Wiro refuses a signature or a nonce it has seen: a
    request with a fresh nonce may pass (`NonceSource`); a wrong secret is refused again, and
    raised after `NONCE_RESIGNS` more. A Run is never sent twice by the client, not even then (`submit` decides)."""
    return kind == "read" and signed and refused_as_not_valid(error)


def refused_as_not_valid(error: WiroError) -> bool:
    """Whether Wiro refused a request's signature or nonce ("not valid"): no task was made."""
    return isinstance(error, AuthenticationError) and NOT_VALID in error.message.lower()


class _BaseClient:
    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry: RetryPolicy | None = None,
        max_download_bytes: int | None = None,
        download_timeout: float | None = None,
    ) -> None:
        self.credentials = Credentials.resolve(api_key, api_secret)
        limits = DownloadLimits.resolve(max_download_bytes, download_timeout)
        self.max_download_bytes = limits.max_bytes  # when the API announces no size
        self.download_timeout = limits.timeout  # seconds for one whole download, retries included
        resolved = resolve_base_url(base_url)
        # Requests go to the URL without any user:password (Wiro authenticates by key, and httpx
        # would log it); messages show it with them masked.
        self._api_url = without_userinfo(resolved)
        self.base_url = shown_url(resolved)
        self.retry = retry or RetryPolicy(max_retries=max_retries)
        self._timeout = httpx.Timeout(timeout, connect=min(10.0, timeout))
        self._auth = WiroAuth(self.credentials)
        self.server_clock = ServerClock()  # what time the server thinks it is, from its answers

    def avoid_nonce_clash(self) -> None:
        """Wiro refused a nonce as seen: another process on the key drew the same digit. Sign the
        next requests from another (`NonceSource.avoid`)."""
        self._auth.avoid_clash()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, credentials={self.credentials!r})"

    # Request bodies and answer decoding, shared by both clients.

    @staticmethod
    def _run_body(inputs: ModelInput | Mapping[str, object], model: str) -> tuple[str, dict[str, Value]]:
        if isinstance(inputs, Mapping):
            spec = model_spec(model)
            checked = spec.validate(inputs)
            return f"/Run/{spec.slug}", checked
        return f"/Run/{inputs.MODEL}", inputs.to_wire()

    @staticmethod
    def _task_ref(task_id: str | None, socket_token: str | None) -> dict[str, str]:
        if task_id:
            return {"taskid": str(task_id)}
        if socket_token:
            # Current docs name it `socketaccesstoken`, older ones `tasktoken`: send both.
            return {"socketaccesstoken": socket_token, "tasktoken": socket_token}
        raise ValueError("give a task_id or a socket_token")

    @staticmethod
    def _detail_ref(task_id: str | None, socket_token: str | None) -> dict[str, str]:
        if task_id:
            return {"taskid": str(task_id)}
        if socket_token:
            return {"tasktoken": socket_token}
        raise ValueError("give a task_id or a socket_token")

    @staticmethod
    def _list_body(start: int, limit: int) -> dict[str, Any]:
        return {"type": "model", "sort": "id", "order": "DESC", "start": start, "limit": limit}

    @staticmethod
    def _tool_body(model: str) -> dict[str, str]:
        owner, _, project = model_spec(model).slug.partition("/")
        return {"slugowner": owner, "slugproject": project}

    @staticmethod
    def _tool(payload: Mapping[str, Any], model: str) -> Tool:
        tool = Tool.from_api(payload, model)
        if tool is None:
            raise NotFoundError("Tool is not found.", code=1, endpoint="/Tool/Detail")
        return tool

    @staticmethod
    def _submission(payload: Mapping[str, Any], endpoint: str) -> Submission:
        task_id = payload.get("taskid")
        if not task_id:
            raise SubmitOutcomeUnknownError(f"{endpoint}: answer holds no taskid")
        return Submission(task_id=str(task_id), socket_token=str(payload.get("socketaccesstoken", "")))

    @staticmethod
    def _one_task(payload: Mapping[str, Any], endpoint: str) -> Task:
        tasks = TaskPage.from_api(payload).tasks
        if not tasks:
            raise NotFoundError("There is no task yet.", code=1, endpoint=endpoint)
        return tasks[0]

    @staticmethod
    def _uploaded(payload: Mapping[str, Any], info: ImageInfo) -> UploadedFile:
        entries = payload.get("list")
        if not isinstance(entries, list) or not entries:
            raise UploadError(f"{UPLOAD}: the answer lists no file")
        try:
            uploaded = UploadedFile.from_api(entries[0])
        except ValueError as exc:
            raise UploadError(f"{UPLOAD}: {exc}") from None
        if uploaded.size is not None and uploaded.size != info.size:
            raise UploadError(f"{UPLOAD}: Wiro stored {uploaded.size} bytes of the {info.size} sent")
        return uploaded

    @staticmethod
    def _decode(response: httpx.Response, endpoint: str, kind: Kind) -> dict[str, Any]:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400 or not isinstance(payload, dict) or payload.get("result") is False:
            error = APIError.from_response(response, endpoint, payload)
            if not isinstance(payload, dict) and response.status_code < 400:
                error = TransientError("answer is not Wiro JSON", status_code=response.status_code, endpoint=endpoint)
            if kind == "run" and isinstance(error, TransientError) and error.status_code != 429:
                raise SubmitOutcomeUnknownError(f"{error}; the task may have been created") from error
            raise error
        return payload

    @staticmethod
    def _transport_error(exc: httpx.HTTPError, endpoint: str, kind: Kind) -> WiroError:
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL)):
            raise ValueError(f"{endpoint}: the request could not be built: {exc}") from exc
        nothing_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
        if kind == "run" and not nothing_sent:
            return SubmitOutcomeUnknownError(
                f"{endpoint}: {type(exc).__name__} after sending; the task may have been created"
            )
        return WiroConnectionError(f"{endpoint}: {type(exc).__name__}: {exc}")

    def _log(self, endpoint: str, started: float, outcome: object) -> None:
        logger.debug("POST %s -> %s in %.0f ms", endpoint, outcome, (time.monotonic() - started) * 1000)


class _Form:
    """A File/Upload body: the checked image under the field `file`, and `folderid` if given."""

    def __init__(self, source: ImageSource, info: ImageInfo, name: str | None, folder_id: str | None) -> None:
        self.reader = CheckedReader(source, info)
        self.files = {"file": (info.upload_name(name), self.reader, info.content_type)}
        self.data = {"folderid": folder_id} if folder_id else {}

    def __enter__(self) -> _Form:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()


def _content(body: Mapping[str, Any] | _Form) -> dict[str, Any]:
    """httpx arguments for a body: JSON, as every official client sends, or a multipart upload."""
    if isinstance(body, _Form):
        return {"files": body.files, "data": body.data}
    return {"json": body}


def _checked(source: ImageSource, expected_sha256: str | None) -> ImageInfo:
    info = check_image(source)
    if expected_sha256 is not None and info.sha256 != expected_sha256.lower():
        rule = f"changed since it was checked (sha256 {info.sha256[:12]}…, expected {expected_sha256[:12]}…)"
        raise ImageCheckError(info.path, rule)
    return info


def _clamp(delay: float, started: float, timeout: float | None) -> float:
    if timeout is None:
        return delay
    return max(0.0, min(delay, started + timeout - time.monotonic()))


def _error_clock(task: Task, since: float | None, now: float) -> float | None:
    """When the task entered its current run of `task_error` polls (None when not in one)."""
    if task.status is not TaskStatus.ERROR:
        return None
    return now if since is None else since


def _target(output: TaskOutput | str) -> tuple[str, int | None]:
    """The URL, and the size the API announced (None when it gave none, or none that makes sense)."""
    if isinstance(output, TaskOutput):
        return output.url, output.size if output.size > 0 else None
    return output, None


def _fetch_error(exc: httpx.HTTPError, url: str, allowance: Allowance) -> WiroError:
    """A download's transport error: the deadline's own error once its time is up (a read cut
    short at the deadline), else a retryable `DownloadError`."""
    if allowance.left() <= 0:
        return allowance.expired()
    return DownloadError(f"{url}: {type(exc).__name__}: {exc}")


def _check_status(response: httpx.Response, url: str) -> None:
    if response.status_code >= 400:
        kind = TransientError if response.status_code >= 500 or response.status_code == 429 else APIError
        raise kind(f"download failed: {url}", status_code=response.status_code, endpoint="GET")
