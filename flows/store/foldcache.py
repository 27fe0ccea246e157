"""The journal's fold kept beside it, so that reopening a large OUT does not fold every line again.

Folding the 400,000 lines of a 100,000-row journal took 3 s of every reopen. OUT/.journal.fold
holds the `RowState`s (and the `uploaded` records) that folding the journal's first N bytes gave,
with the SHA-256 of those bytes, how many lines they are, and this version's code (`code_digest`,
and the Python and orjson that read dates and amounts).
A fold that finds it whole, of this code, and of the journal's first N bytes as they are now
starts from those states and folds only the lines after them. Anything else (another version, a
journal cut or changed before N, a damaged or cut file) and every line is folded, as without it.

It is written only when its states come back exactly as they were (each chunk decoded and
compared before it is kept), only for journals of `MIN_BYTES` and more, and again only once the
journal has grown by a quarter since. One that cannot be written is no error. Like the journal,
it is trusted as far as whoever can write OUT is: checked for damage, not for forgery.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from flows.errors import SweepError
from flows.store.code import code_digest
from flows.store.files import MAX_JOURNAL_BYTES, UnreadableFileError, open_regular
from flows.store.manifest import atomic_write
from flows.store.rowstate import LostRun, RowState, Stray

FOLD_CACHE = ".journal.fold"
MIN_BYTES = 4 << 20  # ~4,000 rows: a smaller journal folds in a tenth of a second
CHUNK_ROWS = 10_000  # states encoded, checked and decoded at a time: one copy of them, not two
READ_BYTES = 1 << 16  # a journal is read this much at a time: its lines in memory stay few
_FORMAT = 1
_RUNTIME = f"python {sys.version} orjson {orjson.__version__}"  # dates and amounts are read by them
_FIELDS = (
    "row_id", "phase", "task_id", "task_ids", "intent_at", "intent_server_at", "intent_id_floor", "submitted_at",
    "status", "error", "costs", "elapsed_seconds", "output_url", "output_bytes_expected", "finished_at",
    "output_path", "output_sha256", "output_bytes", "attempts", "inputs", "model", "account", "unended", "unfound",
    "strays",
)  # fmt: skip
"""`RowState`'s fields, in the order a kept state lists them: a field added to `RowState` and not
here keeps no fold (`tests/test_fold_cache.py` says so first)."""

logger = logging.getLogger("flows.store")


@dataclass
class Kept:
    """A kept fold that matches the journal: its states and uploads, the bytes and lines it
    covers, and the SHA-256 of those bytes so far (to go on with as more lines are read)."""

    states: dict[str, RowState]
    uploaded: list[dict[str, Any]]
    size: int
    lines: int
    seen: Any  # hashlib's sha256 object


def matches() -> bool:
    """Whether `RowState` has the fields this module keeps."""
    return tuple(f.name for f in fields(RowState)) == _FIELDS


def start(journal: Path, handle: BinaryIO) -> Kept | None:
    """The fold kept beside `journal`, if it is of this code and of the first bytes of the journal
    open as `handle` (read from it, which is left just past them); None, the handle at its start,
    if there is none that fits. Read a chunk of states at a time: never the file and its states at once."""
    try:
        kept = open_regular(journal.with_name(FOLD_CACHE), MAX_JOURNAL_BYTES, "kept fold")
    except (OSError, UnreadableFileError):  # none, or no regular file of a sane size: folded from the start
        return None
    with kept:
        try:
            head = _header(kept.readline(_HEAD))
            seen = _prefix(handle, head["size"]) if head["size"] <= os.fstat(handle.fileno()).st_size else None
            if seen is not None and seen.hexdigest() == head["journal"]:
                found = _body(kept, head)
                if found is not None:
                    return Kept(found[0], found[1], head["size"], head["lines"], seen)
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError):
            pass  # damaged into other JSON: a part of a line that is no amount, no list, no text
    handle.seek(0)
    return None


def _header(line: bytes) -> dict[str, Any]:
    """A kept fold's first line, if it is of this code; else ValueError."""
    head = orjson.loads(line)
    if (head.get("format"), head.get("code"), head.get("runtime")) != (_FORMAT, code_digest().hex(), _RUNTIME):
        raise ValueError("of another version")
    if not matches():
        raise ValueError("of other fields")
    if not all(type(head.get(name)) is kind for name, kind in _HEADER.items()):
        raise ValueError("not a header")
    return dict(head)


_HEADER = {"size": int, "lines": int, "journal": str, "body": str}


def _body(kept: BinaryIO, head: dict[str, Any]) -> tuple[dict[str, RowState], list[dict[str, Any]]] | None:
    """The uploads and states after the header, if the lines are the ones it names (else None)."""
    seal = hashlib.sha256()
    first = kept.readline()
    seal.update(first)
    uploaded = orjson.loads(first)
    decode = _decoder({})
    states: dict[str, RowState] = {}
    for line in kept:
        seal.update(line)
        for state in map(decode, orjson.loads(line)):
            states[state.row_id] = state
    return (states, uploaded) if seal.hexdigest() == head["body"] and type(uploaded) is list else None


def _prefix(handle: BinaryIO, size: int) -> Any:
    """The SHA-256 of the first `size` bytes of `handle`, read from its start; None if it has fewer."""
    handle.seek(0)
    seen = hashlib.sha256()
    left = size
    while left:
        chunk = handle.read(min(left, READ_BYTES))
        if not chunk:
            return None
        seen.update(chunk)
        left -= len(chunk)
    return seen


def worth_keeping(size: int, kept: int | None) -> bool:
    """Whether a fold of a journal's first `size` bytes should be kept, where one of its first
    `kept` bytes is: a large journal, grown by a quarter since (a few new lines are folded on top
    of the old fold, not rewritten with it)."""
    return size >= MIN_BYTES and (kept is None or size - kept >= kept // 4)


def kept_size(journal: Path) -> int | None:
    """How many of the journal's bytes the fold kept beside it says it covers, from its first line
    alone (not checked against the journal: `start` does that); None if there is none of this code."""
    try:
        with open_regular(journal.with_name(FOLD_CACHE), MAX_JOURNAL_BYTES, "kept fold") as kept:
            return int(_header(kept.readline(_HEAD))["size"])
    except (OSError, UnreadableFileError, ValueError, TypeError, AttributeError):
        return None


_HEAD = 512  # bytes of the first line, the header, padded: written last, in its place
_WRITING = threading.Lock()


class _NotExact(SweepError):
    """A chunk of states would not come back exactly as it is (a NaN, a type JSON cannot hold)."""


def keep(journal: Path, states: dict[str, RowState], uploaded: list[dict[str, Any]], size: int, lines: int,
         digest: str) -> bool:  # fmt: skip
    """Keep the fold of the journal's first `size` bytes (`lines` lines, SHA-256 `digest`) beside
    it, if every state comes back exactly as it is; whether it was kept. Written a chunk of states
    at a time, each checked first (never a second copy of them all), through `atomic_write`."""
    if not matches():
        return False
    head = {"format": _FORMAT, "code": code_digest().hex(), "runtime": _RUNTIME, "size": size, "lines": lines,
            "journal": digest}  # fmt: skip

    def write(temporary: str) -> None:
        with open(temporary, "wb") as handle:
            seal = _write_body(handle, states, uploaded)
            if seal is None:
                raise _NotExact
            line = orjson.dumps({**head, "body": seal})
            if len(line) >= _HEAD:
                raise OSError(f"a header of {len(line)} bytes")
            handle.seek(0)
            handle.write(line.ljust(_HEAD - 1) + b"\n")

    path = journal.with_name(FOLD_CACHE)
    try:
        with _WRITING:
            atomic_write(path, write)  # a cut file is found damaged by its body's digest
    except _NotExact:
        return False
    except OSError as exc:
        logger.debug("could not keep the journal's fold in %s: %s", path, exc)
        return False
    return True


def _write_body(handle: BinaryIO, states: dict[str, RowState], uploaded: list[dict[str, Any]]) -> str | None:
    """Write a blank header, then the uploads and the states, a chunk a line; the SHA-256 of those
    lines, or None if a chunk would not come back exactly as it is."""
    seal = hashlib.sha256()
    handle.write(b" " * (_HEAD - 1) + b"\n")
    try:
        line = orjson.dumps(uploaded) + b"\n"
        if orjson.loads(line) != uploaded:
            return None
        handle.write(line)
        seal.update(line)
        order = list(states.values())
        for at in range(0, len(order), CHUNK_ROWS):
            chunk = order[at : at + CHUNK_ROWS]
            line = orjson.dumps([_encode(s) for s in chunk]) + b"\n"
            back = list(map(_decoder({}), orjson.loads(line)))
            if back != chunk or orjson.dumps([_encode(s) for s in back]) + b"\n" != line:
                return None
            handle.write(line)
            seal.update(line)
    except (TypeError, ValueError):  # orjson's errors are both
        return None
    return seal.hexdigest()


def _encode(s: RowState) -> list[Any]:
    return [
        s.row_id, s.phase, s.task_id, s.task_ids, s.intent_at, s.intent_server_at, s.intent_id_floor, s.submitted_at,
        s.status, s.error, {k: str(v) for k, v in s.costs.items()}, _text(s.elapsed_seconds), s.output_url,
        s.output_bytes_expected, s.finished_at, s.output_path, s.output_sha256, s.output_bytes, s.attempts,
        s.inputs, s.model, s.account, s.unended, [[u.at, u.server_at, u.id_floor] for u in s.unfound],
        {k: [t.task_id, t.status, str(t.cost), t.output_url, t.output_bytes_expected, t.path, t.sha256, t.size]
         for k, t in s.strays.items()},
    ]  # fmt: skip


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


def _decoder(pool: dict[str, str]) -> Any:
    """A kept state's list back to its `RowState`, the text many rows repeat as one object (`pool`,
    as the fold shares it) and each amount read once (`Decimal` is immutable)."""
    amounts: dict[str, Decimal] = {}

    def amount(text: str) -> Decimal:
        number = amounts.get(text)
        if number is None:
            number = amounts[text] = Decimal(text)
        return number

    def decode(v: list[Any]) -> RowState:
        inputs = v[19]
        if type(inputs) is dict:
            inputs = {k: pool.setdefault(x, x) if type(x) is str else x for k, x in inputs.items()}
        return RowState(
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], pool.setdefault(v[8], v[8]), v[9],
            {k: amount(x) for k, x in v[10].items()}, None if v[11] is None else amount(v[11]), v[12], v[13],
            v[14], v[15], v[16], v[17], v[18], inputs, pool.setdefault(v[20], v[20]), pool.setdefault(v[21], v[21]),
            v[22], [LostRun(*u) for u in v[23]] if v[23] else [],
            {k: Stray(t[0], t[1], amount(t[2]), *t[3:]) for k, t in v[24].items()} if v[24] else {},
        )  # fmt: skip

    return decode
