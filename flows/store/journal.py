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
    stray       a task this sweep paid for that the row did not adopt (a lost Run's, found later):
                its output is fetched into OUT/strays, its cost counted with the row's
    stray_finished, stray_saved, stray_missing   how a stray ended and what it cost; its video
                saved; its saved video gone or changed (fetched again)
    strays_sought   the row's lost Runs whose task was not found were looked for once more
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from flows.errors import InputError, SweepError
from flows.memory import many_objects
from flows.store import foldcache
from flows.store.files import MAX_JOURNAL_BYTES, open_regular, require_regular
from flows.store.rowstate import RowState, utcnow

JOURNAL = "journal.jsonl"
logger = logging.getLogger("flows.store")
REQUIRED: dict[str, tuple[str, ...]] = {
    "intent": ("at",),
    "submitted": ("task_id",),
    "adopted": ("task_id",),
    "finished": ("status",),
    "downloaded": ("path", "sha256", "bytes"),
    "uploaded": ("sha256", "url"),
    "stray": ("task_id",),
    "stray_finished": ("task_id", "status"),
    "stray_saved": ("task_id", "path", "sha256", "bytes"),
    "stray_missing": ("task_id",),
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

    def on_disk(self) -> tuple[int, ...] | None:
        """The file's identity, size and time if every event is in it (none pending, no write
        failed): what a manifest made from these events may be stamped with; else None."""
        with self._lock:
            if self._pending or self._failed is not None:
                return None
            info = os.fstat(self._fd)
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def load(self) -> dict[str, RowState]:
        """Every row's state; lines that do not parse (a torn write) are skipped."""
        self.flush()
        states, self.uploads = _folded(self.path, take=True)  # the checks' fold, if nothing was written since
        return states


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
    """The journal's records in order (`iter_events`, as a list)."""
    return list(iter_events(path))


def iter_events(path: Path) -> Iterator[dict[str, Any]]:
    """The journal's records in order, one line at a time. Torn lines (not JSON) are skipped; a
    JSON line that is not a whole record raises `JournalError` naming the file and the line."""
    try:
        handle = open_regular(path, MAX_JOURNAL_BYTES, "journal")
    except FileNotFoundError:
        return
    with handle:
        yield from line_records(path, Lines(handle, hashing=False))


class Lines:
    """A journal's lines from where `handle` stands (the line after `number`), read a chunk at a
    time; `size` and `seen` are the bytes up to the end of the last whole line read, and their
    SHA-256 (a kept fold's, to go on with). A last line without its newline is given too, but not
    counted (`torn`): it may be a write still under way, or one a failed write cuts away."""

    def __init__(
        self, handle: BinaryIO, size: int = 0, number: int = 0, seen: Any = None, hashing: bool = True
    ) -> None:
        self.handle = handle
        self.size = size
        self.number = number  # whole lines read so far
        self.seen = seen if seen is not None or not hashing else hashlib.sha256()
        self.torn = False  # a last line without its newline was given

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        started: list[bytes] = []  # a line's bytes read before its newline: joined once it comes
        while chunk := self.handle.read(foldcache.READ_BYTES):
            cut = chunk.rfind(b"\n") + 1  # in this chunk only: a long line is not searched again
            if not cut:
                started.append(chunk)
                continue
            whole = b"".join((*started, chunk[:cut])) if started else chunk[:cut]
            started = [chunk[cut:]] if cut < len(chunk) else []
            if self.seen is not None:
                self.seen.update(whole)
            self.size += len(whole)
            for raw in whole.split(b"\n")[:-1]:
                self.number += 1
                yield self.number, raw
        if started:
            self.torn = True
            yield self.number + 1, b"".join(started)


def line_records(path: Path, lines: Iterable[tuple[int, bytes]]) -> Iterator[dict[str, Any]]:
    """`iter_events` of the numbered `lines`."""
    for number, raw in lines:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:  # orjson is stricter: NaN, a huge number, UTF-16
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a write cut short (a kill, a full disk): it never counted
        problem = record_problem(record)
        if problem:
            raise JournalError(path, number, problem)
        yield record


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
    if kind in ("downloaded", "stray_saved") and not isinstance(record["bytes"], int):
        return f"a {kind!r} record whose 'bytes' is not a whole number (got {record['bytes']!r})"
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


def uploads(events: Iterable[dict[str, Any]]) -> dict[str, Upload]:
    """The start images already uploaded for this OUT: sha256 -> the latest upload of it."""
    return {str(e["sha256"]): Upload(str(e["url"]), str(e.get("account") or "")) for e in events
            if e["event"] == "uploaded"}  # fmt: skip


_FOLDED: dict[Path, tuple[tuple[int, ...], dict[str, RowState], dict[str, Upload]]] = {}
_FOLDED_LOCK = threading.Lock()


def folded(path: Path) -> dict[str, RowState]:
    """`fold(read_events(path))`, read once while the file stays as it was: the checks before a
    sweep (the command's, then the flow's) read one journal several times, 100 MB at 100,000 rows.
    Read-only: the states are shared, until the `Journal` that writes the file takes them (`load`)."""
    return _folded(path)[0]


def _folded(path: Path, take: bool = False) -> tuple[dict[str, RowState], dict[str, Upload]]:
    """A journal's states and uploads: the ones known if the file is as it was then (given up to
    the caller with `take`), else read now (and kept, unless taken)."""
    key = path.absolute()
    try:
        info = os.stat(key)
    except OSError:
        return _fold_file(path)  # none (or unreadable: `iter_events` says why)
    stamp = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    with _FOLDED_LOCK:
        known = _FOLDED.pop(key, None) if take else _FOLDED.get(key)
    if known is not None and known[0] == stamp:
        return known[1], known[2]
    states, uploaded = _fold_file(path)
    if not take:
        with _FOLDED_LOCK:
            _FOLDED.clear()  # one journal's at a time: 100,000 rows' states are 100 MB and more
            _FOLDED[key] = (stamp, states, uploaded)
    return states, uploaded


def keep_fold(path: Path) -> None:
    """Fold a journal a sweep is done writing, so that its fold is kept beside it for the next
    run (`flows.store.foldcache`), if it is large and its kept fold (if any) is well behind it;
    nothing is kept in memory."""
    try:
        if foldcache.worth_keeping(os.stat(path).st_size, foldcache.kept_size(path)):
            _fold_file(path)
    except (OSError, SweepError) as exc:  # the next run folds it, and says what is wrong with it
        logger.debug("could not fold %s to keep its fold: %s", path, exc)


def _fold_file(path: Path) -> tuple[dict[str, RowState], dict[str, Upload]]:
    """A journal's states and uploads, folded as its lines are read (a line's record is gone once
    applied: all of them at once were 100 MB at 100,000 rows, and left the heap that much larger),
    on top of the fold kept beside it when that is of its first lines (`flows.store.foldcache`);
    a large journal's fold is kept for the next one."""
    try:
        handle = open_regular(path, MAX_JOURNAL_BYTES, "journal")
    except FileNotFoundError:
        return {}, {}
    with handle, many_objects():
        kept = foldcache.start(path, handle)
        lines = Lines(handle) if kept is None else Lines(handle, kept.size, kept.lines, kept.seen)
        added: list[dict[str, Any]] = [] if kept is None else kept.uploaded

        def noting_uploads() -> Iterator[dict[str, Any]]:
            for record in line_records(path, lines):
                if record["event"] == "uploaded":
                    added.append(record)
                yield record

        states = fold(noting_uploads(), {} if kept is None else kept.states)
        if not lines.torn and foldcache.worth_keeping(lines.size, None if kept is None else kept.size):
            foldcache.keep(path, states, added, lines.size, lines.number, lines.seen.hexdigest())
    return states, uploads(added)


def fold(events: Iterable[dict[str, Any]], states: dict[str, RowState] | None = None) -> dict[str, RowState]:
    """Each row's state after `events`, applied in order (to `states`, if given: a kept fold's)."""
    states = {} if states is None else states
    shared: dict[str, str] = {}
    for record in events:
        row = record["row_id"]
        state = states.get(row)
        if state is None:  # made once per row, not once per line: a 100,000-row fold makes 100,000
            state = states[row] = RowState(row)
        _share(record, shared)
        state.apply(record)
    return states


_SHARED = {"intent": ("model", "account"), "finished": ("status",)}  # the lines that repeat text, and where


def _share(record: dict[str, Any], pool: dict[str, str]) -> None:
    """The text that many rows repeat (a status, a model, an account, an input such as the default
    negative prompt) as one object in `pool`: each line decodes its own copy, and the rows kept
    them all, 1 KiB a row and more."""
    names = _SHARED.get(record["event"], ())
    for name in names:
        value = record.get(name)
        if type(value) is str:
            record[name] = pool.setdefault(value, value)
    inputs = record.get("inputs") if names else None
    if type(inputs) is dict:
        for name, value in inputs.items():
            if type(value) is str:
                inputs[name] = pool.setdefault(value, value)
