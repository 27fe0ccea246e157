"""The sweep's memory on disk: what was asked of Wiro, what it answered, what was saved.

An append-only file of JSON lines, `OUT/journal.jsonl`. A line is written with one `write()` to
a file opened for appending before the step it records goes ahead (an `intent` before every
Run request), so a process killed at any moment leaves a journal that says which rows may have
a task. A torn line (not JSON: a write cut short) is ignored. A line that is JSON but not a whole
record (an event without the fields it needs) is refused with `JournalError`: skipping it could
forget an `intent`, and the row would be paid for twice. Folding the lines gives each row's
`RowState`.

    intent      a Run request is about to be sent for the row, with its inputs
    submitted   Wiro answered with a task id          adopted   a lost answer's task was found
    no_task     no task exists for the last intent (refused, or looked for and not found)
    unknown     the Run answer was lost: look for the task before submitting again
    finished    the task ended (succeeded | failed | timed_out | cancelled), with its cost
    downloaded  the output is saved under OUT          skipped   not submitted (budget, balance)
    file_missing  a saved output is gone or changed size: fetch it again
    uploaded    a start image (by sha256) is on Wiro at a URL, for one account at one API: not
                uploaded again for this OUT while that account is the one swept
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from flows.errors import InputError, SweepError
from flows.store.files import MAX_JOURNAL_BYTES, open_regular, require_regular
from wiro_tasks.types import MAX_SECONDS, MAX_TASK_COST, finite_decimal, numeric_id

JOURNAL = "journal.jsonl"
REQUIRED: dict[str, tuple[str, ...]] = {
    "intent": ("at",),
    "submitted": ("task_id",),
    "adopted": ("task_id",),
    "finished": ("status",),
    "downloaded": ("path", "sha256", "bytes"),
    "uploaded": ("sha256", "url"),
}
"""The fields each kind of event needs besides `event` and `row_id`. Kinds not named here need
none; kinds this version does not know are kept and ignored by `RowState.apply`."""


class JournalError(InputError):
    """A journal line is JSON but not a record this sweep can trust; the command exits with 2.

    The sweep refuses to run rather than guess: a damaged `intent` skipped could pay twice.
    """

    def __init__(self, path: Path, line: int, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        super().__init__(
            f"{path}, line {line}: {problem}; the journal is damaged and the sweep will not guess "
            "(a lost record could pay twice): fix or delete that line, or restore the file from a backup"
        )


class JournalWriteError(SweepError):
    """The journal could not be written (disk full, I/O error, read-only): nothing more may be submitted.

    Prints as one line naming the file and the cause; `exit_code` is what the command exits with."""

    exit_code = 1

    def __init__(self, path: Path, cause: OSError) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"cannot write {path}: {cause.strerror or cause}")


def utcnow() -> str:
    return _iso(datetime.now(UTC))


def utc_text(value: object) -> str:
    """A recorded time as ISO text in UTC. A zone-less one (a hand edit, another tool) is read as
    UTC rather than crash every rerun that compares it with an aware time; one that is no time at
    all is "" (unknown: an `intent`'s own time is checked by `record_problem`)."""
    if value is None or value == "":
        return ""
    try:
        moment = datetime.fromisoformat(str(value))
        return _iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except (ValueError, OverflowError):
        return ""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class RowState:
    """Where one row stands, folded from its journal lines."""

    row_id: str
    phase: str = "new"  # new | intent | unknown | submitted | finished | skipped
    task_id: str = ""
    task_ids: list[str] = field(default_factory=list)
    intent_at: str = ""
    intent_server_at: str = ""  # the same moment on the server's clock (a lower bound), when it was known
    intent_id_floor: int | None = None  # the highest task id known to exist before that Run was sent
    submitted_at: str = ""
    status: str = ""
    error: str = ""
    costs: dict[str, Decimal] = field(default_factory=dict)
    elapsed_seconds: Decimal | None = None
    output_url: str = ""
    output_bytes_expected: int | None = None
    finished_at: str = ""
    output_path: str = ""
    output_sha256: str = ""
    output_bytes: int | None = None
    attempts: int = 0
    inputs: dict[str, Any] | None = None  # what the last Run request asked for
    model: str = ""  # ... and of which model (journals before image-to-video did not say: text-to-video)
    account: str = ""  # ... on which account at which API (`claims.account_key`; "" in older journals)
    unended: bool = False  # its task was stopped yet never seen to end: it may still succeed (look again)

    @property
    def cost(self) -> Decimal:
        """What every task of this row cost together (a resubmitted row may have two)."""
        return sum(self.costs.values(), Decimal(0))

    @property
    def has_live_task(self) -> bool:
        """A task exists that has not been seen to finish: wait for it, never submit again."""
        return self.phase == "submitted"

    @property
    def downloaded(self) -> bool:
        return bool(self.output_path)

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "intent":
            self.phase, self.intent_at = "intent", utc_text(event["at"])
            self.intent_server_at = utc_text(event.get("server_at"))
            floor = str(event.get("id_floor", ""))
            self.intent_id_floor = numeric_id(floor)
            self.inputs = event.get("inputs", self.inputs)
            self.model = str(event.get("model") or "")
            self.account = str(event.get("account") or "")
            self.attempts += 1
        elif kind == "unknown":
            self.phase = "unknown"
        elif kind in ("submitted", "adopted"):
            self.phase, self.task_id = "submitted", str(event["task_id"])
            self.submitted_at = utc_text(event.get("at"))
            self.unended = False
            if self.task_id not in self.task_ids:
                self.task_ids.append(self.task_id)
            self.status = self.error = ""
        elif kind == "no_task":
            self.phase = "new"
            self.error = event.get("reason", "")
        elif kind == "finished":
            self.phase, self.status = "finished", str(event["status"])
            self.task_id = str(event.get("task_id", self.task_id))
            self.error = str(event.get("error", ""))
            cost = _amount(event.get("cost", "0"), MAX_TASK_COST)
            if cost is None:  # written by a version that trusted any figure: never let it stop the OUT
                self.error = "; ".join(filter(None, (self.error, f"journal cost {event.get('cost')!r} unreadable")))
            self.costs[self.task_id] = cost or Decimal(0)
            self.unended = event.get("ended") is False
            self.elapsed_seconds = _amount(event.get("elapsed"), MAX_SECONDS)
            self.output_url = str(event.get("output_url", ""))
            expected = event.get("output_bytes")
            ok = isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0
            self.output_bytes_expected = expected if ok else None
            self.finished_at = utc_text(event.get("at"))
            self.output_path = self.output_sha256 = ""
            self.output_bytes = None
        elif kind == "downloaded":
            self.output_path = str(event["path"])
            self.output_sha256 = str(event["sha256"])
            self.output_bytes = int(event["bytes"])
        elif kind == "file_missing":
            self.output_path = self.output_sha256 = ""
            self.output_bytes = None
            self.error = event.get("error", "")
        elif kind in ("download_failed", "note"):
            self.error = event.get("error", "")
        elif kind == "skipped":
            self.phase, self.status, self.error = "skipped", "skipped", event.get("reason", "")


class Journal:
    """Appends events for rows and folds them back; safe to share between threads.

    Lines are buffered and written in batches: `commit(durable=True)` writes everything pending
    and fsyncs, and concurrent callers share one write (group commit). The runner commits
    durably after every `intent`, before its Run request; other events may trail by a moment,
    which a resume tolerates: a lost `submitted` is found again in Task/List, a lost
    `finished` or `downloaded` means one more poll or download, never a second task.
    """

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / JOURNAL
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._appended = 0  # events queued so far
        self._synced = 0  # events known to be on disk, fsynced
        self._committing: asyncio.Lock | None = None
        self._failed: OSError | None = None  # the first write or fsync that failed
        self.uploads: dict[str, Upload] = {}  # image sha256 -> where it is on Wiro, as of the last `load`
        self._fd = _open_for_appending(self.path)
        self._repair_torn_tail()

    def _repair_torn_tail(self) -> None:
        """A kill mid-write can leave a last line without its newline; end it so the next is whole."""
        size = os.fstat(self._fd).st_size
        if size:
            with open_regular(self.path, MAX_JOURNAL_BYTES, "journal") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    try:
                        _write_whole(self._fd, b"\n")
                    except OSError as exc:
                        raise JournalWriteError(self.path, exc) from exc

    def close(self) -> None:
        """Write what is pending and close; a failure already raised is not raised again."""
        failed_before = self._failed is not None
        try:
            self.flush()
        except JournalWriteError:
            if not failed_before:
                raise
        finally:
            os.close(self._fd)

    def append(self, event: str, row_id: str, **fields: Any) -> dict[str, Any]:
        """Queue one event; it reaches the file at the next `flush`/`commit` (or `load`, `close`)."""
        record = {"event": event, "row_id": row_id, "at": fields.pop("at", None) or utcnow(), **fields}
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode()
        with self._lock:
            self._pending.append(line)
            self._appended += 1
        return record

    def flush(self, durable: bool = False) -> None:
        """Write what is pending, whole lines only; with `durable`, fsync as well.

        A write that fails part-way (a full disk writes what fits) is cut back to the last whole
        line and its lines stay pending; `JournalWriteError` says why. After an fsync fails the
        kernel may have dropped the data, so a journal that failed once never claims to be
        durable again: every later `flush(durable=True)` raises too.
        """
        with self._lock:
            written = self._appended
            lines = b"".join(self._pending)
            try:
                if lines:
                    _write_whole(self._fd, lines)
                    self._pending = []
                if durable:
                    if self._failed is not None:
                        raise self._failed
                    os.fsync(self._fd)
                    self._synced = written
            except OSError as exc:
                self._failed = self._failed or exc
                raise JournalWriteError(self.path, exc) from exc

    async def commit(self, durable: bool = False) -> None:
        """`flush` off the event loop; callers arriving meanwhile share the next one."""
        if self._committing is None:
            self._committing = asyncio.Lock()
        target = self._appended
        async with self._committing:
            if durable and self._synced >= target:
                return  # someone else's fsync covered this caller's events
            if self._pending or durable:
                await asyncio.to_thread(self.flush, durable)

    def load(self) -> dict[str, RowState]:
        """Every row's state; lines that do not parse (a torn write) are skipped."""
        self.flush()
        events = read_events(self.path)
        self.uploads = uploads(events)
        return fold(events)


def _open_for_appending(path: Path) -> int:
    """The journal's descriptor for appending, made if missing. A FIFO, a device or a directory in
    its place is refused (`UnreadableFileError`, exit 2) instead of blocking, filling memory or a
    traceback: checked through a read first, then on the very descriptor that will be written."""
    with contextlib.suppress(FileNotFoundError):
        open_regular(path, MAX_JOURNAL_BYTES, "journal").close()
    try:  # O_NONBLOCK: a FIFO swapped in since is refused at once (ENXIO), never waited on
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise JournalWriteError(path, exc) from exc
    try:
        require_regular(fd, path, None, "journal")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _amount(value: object, limit: Decimal) -> Decimal | None:
    """A recorded amount (cost, seconds): finite, not negative, below `limit`; None otherwise."""
    if value in (None, ""):
        return None
    number = finite_decimal(value)
    return number if number is not None and 0 <= number < limit else None


def _write_whole(fd: int, data: bytes) -> None:
    """Append all of `data`, or raise with the file cut back to where it was: never a torn line."""
    start = os.fstat(fd).st_size
    done = 0
    try:
        while done < len(data):
            wrote = os.write(fd, data[done:])
            if wrote <= 0:  # no progress and no error: treat as a full disk
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += wrote
    except OSError:
        if done:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
        raise


def read_events(path: Path) -> list[dict[str, Any]]:
    """The journal's records in order. Torn lines (not JSON) are skipped; a JSON line that is not
    a whole record raises `JournalError` naming the file and the line."""
    events: list[dict[str, Any]] = []
    try:
        handle = open_regular(path, MAX_JOURNAL_BYTES, "journal")
    except FileNotFoundError:
        return events
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a write cut short (a kill, a full disk): it never counted
            problem = record_problem(record)
            if problem:
                raise JournalError(path, number, problem)
            events.append(record)
    return events


def record_problem(record: object) -> str | None:
    """What makes a decoded line unusable as a journal record, or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record"
    kind = record.get("event")
    if not isinstance(kind, str) or not kind:
        return "a record without its 'event'"
    if not isinstance(record.get("row_id"), str) or not record["row_id"]:
        return f"a {kind!r} record without its 'row_id'"
    for name in REQUIRED.get(kind, ()):
        value = record.get(name)
        if value is None:
            return f"a {kind!r} record without its {name!r}"
        if value == "" or isinstance(value, (bool, list, dict)):
            return f"a {kind!r} record whose {name!r} is not valid (got {value!r})"
    if kind == "downloaded" and not isinstance(record["bytes"], int):
        return f"a 'downloaded' record whose 'bytes' is not a whole number (got {record['bytes']!r})"
    if kind == "intent":
        try:
            datetime.fromisoformat(str(record["at"]))
        except ValueError:
            return f"an 'intent' record whose 'at' is not a time (got {record['at']!r})"
    return None


@dataclass(frozen=True)
class Upload:
    """A start image on Wiro: its URL, and the account (`claims.account_key`: API and key, hashed) it
    was uploaded with; another API or key must not be sent that URL."""

    url: str
    account: str = ""


def uploads(events: list[dict[str, Any]]) -> dict[str, Upload]:
    """The start images already uploaded for this OUT: sha256 -> the latest upload of it."""
    return {str(e["sha256"]): Upload(str(e["url"]), str(e.get("account") or "")) for e in events
            if e["event"] == "uploaded"}  # fmt: skip


def fold(events: list[dict[str, Any]]) -> dict[str, RowState]:
    states: dict[str, RowState] = {}
    for record in events:
        row = record["row_id"]
        states.setdefault(row, RowState(row)).apply(record)
    return states
