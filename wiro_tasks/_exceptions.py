"""One small error tree that tells a caller what to do next.

    WiroError
    ├── ConfigurationError       a setting (argument or WIRO_* variable) is missing or malformed
    ├── InputValidationError     a value breaks the model's rules; found before anything is sent
    ├── APIError                 Wiro answered `result: false` or an HTTP error
    │   ├── InvalidRequestError      code 0, HTTP 400: fix the input, never resend as is
    │   ├── NotFoundError            code 1, HTTP 404: no such task (or endpoint)
    │   ├── TaskStateError           code 1 on Cancel/Kill: the task is past that (e.g. finished)
    │   ├── AuthenticationError      HTTP 401/403, codes 98/99
    │   ├── ConcurrencyLimitError    code 96: no task was created; submit again when a slot frees
    │   ├── InsufficientBalanceError code 97: stop submitting, finish what is in flight
    │   └── TransientError           429 and 5xx: safe to retry after `retry_after`
    │       └── RateLimitedError         429
    ├── WiroConnectionError      the request never reached Wiro, or a read failed: retry reads
    ├── UploadError              File/Upload answered without a usable file: safe to upload again
    └── SubmitOutcomeUnknownError  a Run request may have created a paid task; never resend blindly

`retryable` says whether sending the same request again is safe and useful. Uploads count as
reads here: File/Upload is not billed, so repeating one whose answer was lost costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import ClassVar

import httpx


class WiroError(Exception):
    """Base of every error this package raises."""

    retryable: ClassVar[bool] = False


class ConfigurationError(WiroError, ValueError):
    """A client setting is missing or malformed; `setting` names the argument or variable.

    Raised when a client is built (or its settings are resolved up front), never after a request.
    """

    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        super().__init__(message)


class InputValidationError(WiroError, ValueError):
    """An input breaks a rule of the model; `field` and `rule` say which."""

    def __init__(self, field: str, rule: str, value: object = None) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(f"{field}: {rule}" + ("" if value is None else f" (got {shown(value)})"))


MAX_SHOWN = 80


def shown(value: object) -> str:
    """A value's repr for a message, cut short: a 400-digit number or a long text stays readable
    (and an int past Python's 4300-digit limit cannot make building the message fail)."""
    try:
        text = repr(value)
    except ValueError:
        return f"<an integer of {value.bit_length() if isinstance(value, int) else '?'} bits>"
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 12]}… ({len(text)} chars)"


class APIError(WiroError):
    """Wiro refused a request; `code` is Wiro's error code, `status_code` the HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status_code: int | None = None,
        endpoint: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.status_code = status_code
        self.endpoint = endpoint
        self.retry_after = retry_after
        super().__init__(message)

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        tags = [f"HTTP {self.status_code}"] if self.status_code not in (None, 200) else []
        if self.code is not None:
            tags.append(f"code {self.code}")
        suffix = f" ({', '.join(tags)})" if tags else ""
        return f"{where}{self.message}{suffix}"

    @classmethod
    def from_response(cls, response: httpx.Response, endpoint: str, payload: object = None) -> APIError:
        """The most specific error for an answer, built once at the boundary."""
        code, message = _first_error(payload)
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if message is None:
            message = _reason(response)
        kind = _classify(status, code)
        if kind is NotFoundError and endpoint in ("/Task/Cancel", "/Task/Kill") and "no task" not in message.lower():
            kind = TaskStateError
        return kind(message, code=code, status_code=status, endpoint=endpoint, retry_after=retry_after)


class InvalidRequestError(APIError):
    """Wiro rejected the inputs (code 0): fix them."""


class NotFoundError(APIError):
    """No such task, or no such endpoint."""


class TaskStateError(APIError):
    """Cancel or Kill refused because of where the task is (already running, or finished)."""


class AuthenticationError(APIError):
    """The key, secret or signature was refused."""


class ConcurrencyLimitError(APIError):
    """The account runs as many tasks as its balance allows. No task was created."""

    retryable = True


class InsufficientBalanceError(APIError):
    """The balance cannot pay for another task."""


class TransientError(APIError):
    """The server was busy or failed; the same request may succeed later."""

    retryable = True


class RateLimitedError(TransientError):
    """HTTP 429: slow down for `retry_after` seconds."""


class WiroConnectionError(WiroError):
    """The connection failed or timed out before an answer came back."""

    retryable = True


class UploadError(WiroError):
    """File/Upload answered `result: true` without a file whose URL a model can take, or with a
    size other than what was sent. Uploads are not billed, so uploading again is safe."""

    retryable = True


class SubmitOutcomeUnknownError(WiroError):
    """A Run request was sent but no answer came back: a paid task may exist.

    Look for it (Task/List) before submitting the same inputs again.
    """


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds form, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _first_error(payload: object) -> tuple[int | None, str | None]:
    if not isinstance(payload, Mapping):
        return None, None
    errors = payload.get("errors")
    if isinstance(errors, Sequence) and not isinstance(errors, str) and errors:
        first = errors[0]
        if isinstance(first, Mapping):
            raw_code = first.get("code")
            try:
                code = int(raw_code) if raw_code is not None else None
            except (TypeError, ValueError):
                code = None
            message = first.get("message")
            return code, str(message) if message is not None else None
        return None, str(first)
    return None, None


def _reason(response: httpx.Response) -> str:
    text = response.text.strip() if response.headers.get("content-type", "").startswith("text") else ""
    return text[:200] or response.reason_phrase or f"HTTP {response.status_code}"


def _classify(status: int, code: int | None) -> type[APIError]:
    if status == 429:
        return RateLimitedError
    if status >= 500 or status == 408:
        return TransientError
    if status in (401, 403) or code in (98, 99):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    by_code: dict[int | None, type[APIError]] = {
        0: InvalidRequestError,
        1: NotFoundError,
        96: ConcurrencyLimitError,
        97: InsufficientBalanceError,
    }
    if code in by_code:
        return by_code[code]
    if status == 400:
        return InvalidRequestError
    return APIError
