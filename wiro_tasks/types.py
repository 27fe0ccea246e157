"""Typed answers of the Wiro API, parsed once at the boundary.

Wiro sends every value as a string; `Task.from_api` turns them into numbers, `Decimal` money, UTC
datetimes and a `TaskStatus`. Nothing past the client needs to touch the raw JSON.
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
from urllib.parse import urlsplit


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
    def from_api(cls, raw: Mapping[str, Any]) -> TaskOutput:
        return cls(
            name=str(raw.get("name", "")),
            url=str(raw.get("url", "")),
            size=_int(raw.get("size")) or 0,
            content_type=str(raw.get("contenttype", "")),
            id=str(raw.get("id", "")),
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
        raw_status = str(raw.get("status", ""))
        pexit = raw.get("pexit")
        outputs = raw.get("outputs") or ()
        return cls(
            id=str(raw.get("id", "")),
            status=TaskStatus.parse(raw_status),
            raw_status=raw_status,
            pexit=None if pexit in (None, "") else str(pexit),
            debug_error=str(raw.get("debugerror") or ""),
            debug_output=str(raw.get("debugoutput") or ""),
            cps=_decimal(raw.get("cps")),
            total_cost=_decimal(raw.get("totalcost")),
            elapsed_seconds=_decimal(raw.get("elapsedseconds")),
            created_at=_time(raw.get("createtime")),
            started_at=_time(raw.get("starttime")),
            ended_at=_time(raw.get("endtime")),
            cancelled_at=_time(raw.get("canceltime")),
            outputs=tuple(TaskOutput.from_api(o) for o in _sequence(outputs) if isinstance(o, Mapping)),
            parameters=MappingProxyType(_parameters(raw.get("parameters"))),
            uuid=str(raw.get("uuid", "")),
            socket_token=str(raw.get("socketaccesstoken", "")),
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
        parts = urlsplit(url.strip()) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the file has no http(s) url (got {str(url)[:80]!r})")
        return cls(
            id=str(raw.get("id") or ""),
            name=str(raw.get("name") or ""),
            url=url.strip() if isinstance(url, str) else "",
            size=_int(raw.get("size")),
            content_type=str(raw.get("contenttype") or ""),
            parent_id=str(raw.get("parentid") or ""),
            added_at=_time(raw.get("addedtime")),
            access_key=str(raw.get("accesskey") or ""),
        )


def _sequence(value: object) -> Sequence[object]:
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return value
    return ()


def _int(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _decimal(value: object) -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def _time(value: object) -> datetime | None:
    """Unix seconds as text; "0" or empty means "not yet"."""
    try:
        seconds = float(str(value))
    except ValueError:
        return None
    if seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def _parameters(value: object) -> dict[str, str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, Mapping):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}
