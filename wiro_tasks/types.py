"""Typed answers of the Wiro API, parsed once at the boundary.

Wiro sends every value as a string; `Task.from_api` turns them into numbers, `Decimal` money, UTC
datetimes and a `TaskStatus`. Nothing past the client needs to touch the raw JSON.

Parsing never raises, whatever the server sends: a value that is not what it should be (a cost of
`NaN`, `Infinity`, a negative or an absurd amount; a time of `nan` or in the year 10^22; an output
size past reason) reads as unknown (0, or None for times) and is named in `Task.anomalies`, so
the caller can record which field held what instead of trusting or crashing on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from ._exceptions import InputValidationError
from .inputs import Param


class TaskStatus(StrEnum):
    """Where a task is in Wiro's lifecycle. Only `POSTPROCESS_END` and `CANCEL` are final."""

    QUEUE = "task_queue"
    ACCEPT = "task_accept"
    PREPROCESS_START = "task_preprocess_start"
    PREPROCESS_END = "task_preprocess_end"
    ASSIGN = "task_assign"
    START = "task_start"
    OUTPUT = "task_output"
    OUTPUT_FULL = "task_output_full"
    ERROR = "task_error"
    ERROR_FULL = "task_error_full"
    END = "task_end"
    POSTPROCESS_START = "task_postprocess_start"
    POSTPROCESS_END = "task_postprocess_end"
    CANCEL = "task_cancel"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> TaskStatus:
        try:
            return cls(str(value))
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_queued(self) -> bool:
        """Still waiting for a worker: Cancel applies; after this, only Kill does."""
        return self is TaskStatus.QUEUE


TERMINAL_STATUSES = frozenset({TaskStatus.POSTPROCESS_END, TaskStatus.CANCEL})


@dataclass(frozen=True)
class TaskOutput:
    """One file a task produced."""

    name: str
    url: str
    size: int
    content_type: str = ""
    id: str = ""

    @classmethod
    def from_api(cls, raw: Mapping[str, Any], anomalies: list[str] | None = None) -> TaskOutput:
        """One entry of `outputs`; a size that is not a plausible byte count reads as 0 (unknown)."""
        size = _int(raw.get("size"))
        if size is None or not 0 <= size <= MAX_FILE_BYTES:
            if raw.get("size") not in (None, "") and anomalies is not None:
                anomalies.append(f"outputs size {_shown(raw.get('size'))} is not a byte count")
            size = 0
        return cls(
            name=_text(raw.get("name")),
            url=_text(raw.get("url")),
            size=size,
            content_type=_text(raw.get("contenttype")),
            id=_text(raw.get("id")),
        )


@dataclass(frozen=True)
class Submission:
    """What Run answers: the new task's id, and its socket token (kept out of reprs)."""

    task_id: str
    socket_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class Task:
    """A task as Task/Detail, Task/List, Cancel and Kill describe it."""

    id: str
    status: TaskStatus
    raw_status: str = ""
    pexit: str | None = None
    debug_error: str = ""
    debug_output: str = ""
    cps: Decimal = Decimal(0)
    total_cost: Decimal = Decimal(0)
    elapsed_seconds: Decimal = Decimal(0)
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    cancelled_at: datetime | None = None
    outputs: tuple[TaskOutput, ...] = ()
    parameters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    uuid: str = ""
    socket_token: str = field(default="", repr=False)
    anomalies: tuple[str, ...] = ()
    """What the answer held that could not be read, e.g. `totalcost 'NaN' is not an amount in USD`."""
    unreadable: frozenset[str] = frozenset()
    """The wire names of the fields in `anomalies` (`totalcost`, `createtime`, ...)."""

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def succeeded(self) -> bool:
        """Wiro's rule: `task_postprocess_end` with `pexit == "0"`."""
        return self.status is TaskStatus.POSTPROCESS_END and self.pexit == "0"

    @property
    def failed(self) -> bool:
        """Finished, but the model exited non-zero (such tasks cost nothing)."""
        return self.status is TaskStatus.POSTPROCESS_END and self.pexit != "0"

    @property
    def cancelled(self) -> bool:
        return self.status is TaskStatus.CANCEL

    @property
    def error_message(self) -> str:
        """Why a task failed, in one line, for manifests and logs."""
        text = self.debug_error.strip() or (f"pexit {self.pexit}" if self.failed else "")
        return " ".join(text.split())[:500]

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Task:
        """Parse one task as Wiro describes it; never raises (see `anomalies`)."""
        fields = _Fields(raw)
        raw_status = _text(raw.get("status"))
        pexit = raw.get("pexit")
        outputs = tuple(
            TaskOutput.from_api(o, fields.anomalies) for o in _sequence(raw.get("outputs")) if isinstance(o, Mapping)
        )
        return cls(
            id=_text(raw.get("id")),
            status=TaskStatus.parse(raw_status),
            raw_status=raw_status,
            pexit=None if pexit in (None, "") or not isinstance(pexit, (str, int)) else str(pexit),
            debug_error=_text(raw.get("debugerror")),
            debug_output=_text(raw.get("debugoutput")),
            cps=fields.amount("cps", MAX_CPS, "an amount in USD per second"),
            total_cost=fields.amount("totalcost", MAX_TASK_COST, "an amount in USD"),
            elapsed_seconds=fields.amount("elapsedseconds", MAX_SECONDS, "a number of seconds"),
            created_at=fields.time("createtime"),
            started_at=fields.time("starttime"),
            ended_at=fields.time("endtime"),
            cancelled_at=fields.time("canceltime"),
            outputs=outputs,
            parameters=MappingProxyType(_parameters(raw.get("parameters"))),
            uuid=_text(raw.get("uuid")),
            socket_token=_text(raw.get("socketaccesstoken")),
            anomalies=tuple(fields.anomalies),
            unreadable=frozenset(fields.unreadable),
        )


@dataclass(frozen=True)
class TaskPage:
    """One page of Task/List: its tasks (newest first when asked so), and the `total` the answer
    gave, when it gave one that reads as a number. A short page is not the end of the list: a
    server may cap pages below the `limit` asked for."""

    tasks: tuple[Task, ...]
    total: int | None = None

    @classmethod
    def from_api(cls, payload: Mapping[str, Any]) -> TaskPage:
        """Parse a page; entries that are not tasks at all are left out, odd values in one are its own."""
        tasklist = _sequence(payload.get("tasklist"))
        total = _int(payload.get("total"))
        return cls(
            tasks=tuple(Task.from_api(raw) for raw in tasklist if isinstance(raw, Mapping)),
            total=total if total is not None and total >= 0 else None,
        )


@dataclass(frozen=True)
class UploadedFile:
    """A file File/Upload stored: `url` is what a model's file input (`inputImageUrl`) takes.

    `from_api` raises `ValueError` for an entry a model could not use (no http(s) `url`); the
    client turns that into a retryable `UploadError`.
    """

    id: str
    name: str
    url: str
    size: int | None = None
    content_type: str = ""
    parent_id: str = ""
    added_at: datetime | None = None
    access_key: str = field(default="", repr=False)

    @classmethod
    def from_api(cls, raw: object) -> UploadedFile:
        if not isinstance(raw, Mapping):
            raise ValueError(f"a file entry must be an object, got {type(raw).__name__}")
        url = raw.get("url")
        try:  # the rules of a model's URL input: a Run must be able to send it
            checked = str(_FILE_URL.coerce(url)) if isinstance(url, str) else ""
        except InputValidationError as exc:
            raise ValueError(f"the file has no usable url: {exc.rule} (got {str(url)[:80]!r})") from None
        if not checked:
            raise ValueError(f"the file has no http(s) url (got {str(url)[:80]!r})")
        return cls(
            id=str(raw.get("id") or ""),
            name=str(raw.get("name") or ""),
            url=checked,
            size=_int(raw.get("size")),
            content_type=str(raw.get("contenttype") or ""),
            parent_id=str(raw.get("parentid") or ""),
            added_at=_Fields(raw).time("addedtime"),
            access_key=str(raw.get("accesskey") or ""),
        )


def _sequence(value: object) -> Sequence[object]:
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return value
    return ()


_FILE_URL = Param("url", "url")
MAX_TASK_COST = Decimal(100_000)  # USD: no one task costs this; a larger figure is garbage
MAX_CPS = Decimal(1_000)  # USD per second
MAX_SECONDS = Decimal(10**7)  # about 115 days
MAX_FILE_BYTES = 1 << 40  # 1 TiB
_EARLIEST = 946_684_800  # 2000-01-01: Wiro's times are after this...
_LATEST = 7_258_118_400  # ...and before 2200-01-01, in seconds since the epoch


class _Fields:
    """Reads number and time fields of one answer, noting each that cannot be read."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.anomalies: list[str] = []
        self.unreadable: set[str] = set()

    def _odd(self, name: str, what: str) -> None:
        self.anomalies.append(f"{name} {_shown(self.raw.get(name))} is not {what}")
        self.unreadable.add(name)

    def amount(self, name: str, limit: Decimal, what: str) -> Decimal:
        """A non-negative finite decimal below `limit`; 0 when absent or unreadable."""
        value = self.raw.get(name)
        if value in (None, ""):
            return Decimal(0)
        number = finite_decimal(value)
        if number is None or not 0 <= number < limit:
            self._odd(name, what)
            return Decimal(0)
        return number

    def time(self, name: str) -> datetime | None:
        """Unix seconds (or milliseconds) as text; "0" or empty means "not yet"."""
        value = self.raw.get(name)
        if value in (None, "", "0", 0):
            return None
        number = finite_decimal(value)
        if number is not None and _EARLIEST * 1000 <= number < _LATEST * 1000:
            number /= 1000  # milliseconds
        if number is None or not _EARLIEST <= number < _LATEST:
            self._odd(name, "a time")
            return None
        return datetime.fromtimestamp(float(number), tz=UTC)


def finite_decimal(value: object) -> Decimal | None:
    """A finite decimal from text or a number; None for anything else (bools, lists, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _int(value: object) -> int | None:
    number = finite_decimal(value) if value not in (None, "") else None
    if number is None or number != number.to_integral_value() or abs(number) > 10**18:
        return None
    return int(number)


def numeric_id(task_id: str) -> int | None:
    """A task id as a number, when it is one Wiro could give: ASCII digits, fewer than 20 (ids of
    other digits, "²" or "٣", which `str.isdigit` accepts, and huge ones are no number here)."""
    return int(task_id) if task_id.isascii() and task_id.isdigit() and len(task_id) < 20 else None


def _text(value: object) -> str:
    """A string field as text; None and structures read as empty."""
    if value is None or isinstance(value, (Mapping, list, tuple)):
        return ""
    return str(value)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parameters(value: object) -> dict[str, str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, Mapping):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}
