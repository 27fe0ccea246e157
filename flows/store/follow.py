"""A journal followed while another process writes it: each read folds only the lines added since
the last one.

A sharded sweep's parent shows its shards' progress every 2 s from their journals. Folding each
whole journal again at every look grew with the rows: at 100,000 rows, four journals of 100,000
lines each, a look took longer than the 2 s between looks, and the parent kept a core busy that
the Prefect server needed (docs/benchmarks.md, section 16).

A line without its newline yet (a write under way) waits for the next read. A journal replaced,
or cut shorter than what was read, is read again from its start. What a follower gives is for
watching; the parent's final manifest folds each whole journal once more.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flows.store.files import MAX_JOURNAL_BYTES, open_regular
from flows.store.journal import JOURNAL, Lines, fold, line_records
from flows.store.rowstate import RowState


class Follower:
    """One journal's row states, brought up to date by `read()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.states: dict[str, RowState] = {}
        self._file: tuple[int, int] | None = None  # the file's device and inode
        self._size = 0  # the bytes of the whole lines folded
        self._lines = 0

    def read(self) -> set[str]:
        """Fold the whole lines added since the last read; the ids of the rows they changed."""
        try:
            handle = open_regular(self.path, MAX_JOURNAL_BYTES, "journal")
        except FileNotFoundError:
            return self._start_again(None)
        with handle:
            info = os.fstat(handle.fileno())
            changed = set()
            if self._file != (info.st_dev, info.st_ino) or not self._goes_on(handle, info.st_size):
                changed = self._start_again((info.st_dev, info.st_ino))
            handle.seek(self._size)
            lines = Lines(handle, self._size, self._lines, hashing=False)

            def whole() -> Iterator[tuple[int, bytes]]:
                for line in lines:
                    if not lines.torn:  # a last line without its newline: the next read has it whole
                        yield line

            def noting(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
                for record in records:
                    changed.add(record["row_id"])
                    yield record

            try:
                fold(noting(line_records(self.path, whole())), self.states)
            except BaseException:  # a line that is no record (it names it): not half folded at the next read
                self._start_again(None)
                raise
            self._size, self._lines = lines.size, lines.number
        return changed

    def _goes_on(self, handle: Any, size: int) -> bool:
        """Whether the file still holds what was read: as long, and a newline where it stopped."""
        if size < self._size:
            return False
        if self._size == 0:
            return True
        handle.seek(self._size - 1)
        return bool(handle.read(1) == b"\n")

    def _start_again(self, file: tuple[int, int] | None) -> set[str]:
        """Forget what was read (a journal gone, replaced or cut): every row it had changed."""
        changed = set(self.states)
        self.states, self._file, self._size, self._lines = {}, file, 0, 0
        return changed


class ShardsFollower:
    """Every shard's row states as their journals grow, with output paths made relative to OUT,
    as `flows.store.shards.merged_states` gives them; `read()` says which rows changed."""

    def __init__(self, directories: list[Path], out: Path) -> None:
        self.out = out
        self._shards = [(directory, Follower(directory / JOURNAL)) for directory in directories]
        self.states: dict[str, RowState] = {}

    def read(self) -> set[str]:
        changed: set[str] = set()
        for directory, follower in self._shards:
            for row_id in follower.read():
                changed.add(row_id)
                state = follower.states.get(row_id)
                if state is None:
                    self.states.pop(row_id, None)
                    continue
                merged = copy.copy(state)  # the follower's own goes on folding shard-relative paths
                if merged.output_path:
                    merged.output_path = str((directory / merged.output_path).relative_to(self.out))
                self.states[row_id] = merged
        return changed
