"""Every file the sweep reads from OUT, opened one way: a regular file, under a size limit that fits it.

    with open_regular(out / JOURNAL, MAX_JOURNAL_BYTES, "journal") as handle: ...

A FIFO, a device (`/dev/zero`), a directory or a file far larger than its kind ever is becomes
`UnreadableFileError`: one line naming the file and the rule, exit code 2. The check itself is
`wiro_tasks.local_files` (the client reads start images the same way).
"""

from __future__ import annotations

import json
import os
from typing import Any, BinaryIO

from flows.errors import InputError
from wiro_tasks.local_files import FileRuleError
from wiro_tasks.local_files import open_regular as _open_regular
from wiro_tasks.local_files import require_regular as _require_regular

MAX_JOURNAL_BYTES = 1 << 30  # a row's lines are ~1.5 kB: 100,000 rows resubmitted a few times fit 7 times over
MAX_MANIFEST_BYTES = 1 << 30  # a Parquet manifest of 100,000 rows with 2,000-character prompts is ~50 MB
MAX_VIDEO_BYTES = 4 << 30  # a 5-second clip is a few MB; downloads stop at 64 MiB unless raised
MAX_SMALL_JSON_BYTES = 1 << 20  # shards.json and claims: a few hundred bytes each
MAX_THUMBNAIL_BYTES = 16 << 20  # a 256-pixel JPEG is ~20 kB


class UnreadableFileError(InputError):
    """A file the sweep must read is not a regular file of a sane size; the command exits with 2."""

    def __init__(self, problem: FileRuleError) -> None:
        self.path = problem.path
        self.rule = problem.rule
        super().__init__(str(problem))


def open_regular(path: str | os.PathLike[str], limit: int, what: str) -> BinaryIO:
    """`path` open for reading, or `UnreadableFileError`; a missing file is `FileNotFoundError`."""
    try:
        return _open_regular(path, limit, what)
    except FileRuleError as problem:
        raise UnreadableFileError(problem) from None


def require_regular(fd: int, path: str | os.PathLike[str], limit: int | None, what: str) -> None:
    """`UnreadableFileError` unless the open `fd` is a regular file of at most `limit` bytes."""
    try:
        _require_regular(fd, path, limit, what)
    except FileRuleError as problem:
        raise UnreadableFileError(problem) from None


def read_json(path: str | os.PathLike[str], limit: int, what: str) -> Any:
    """A small JSON file's value: `UnreadableFileError` as `open_regular`, `ValueError` if it is not
    JSON in UTF-8, `FileNotFoundError` if it is missing."""
    with open_regular(path, limit, what) as handle:
        return json.loads(handle.read())
