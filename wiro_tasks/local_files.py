"""Reading a local file safely: only a regular file, and only up to a size that fits what it holds.

    with open_regular(path, MAX_UPLOAD_BYTES, "start image") as file:
        ...

A FIFO blocks an open (or the first read) until someone writes, a device such as `/dev/zero` never
ends, and a directory cannot be read: each is refused with `FileRuleError`, which names the file
and the rule. The check is made on the opened descriptor (`fstat`), never by a `stat` before the
open that the file could change after. A symlink is followed; what it points to must pass.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileRuleError(ValueError):
    """A local file breaks a rule for reading it; `path` names it, `rule` says what is wrong."""

    def __init__(self, path: str | os.PathLike[str], rule: str) -> None:
        self.path = Path(path)
        self.rule = rule
        super().__init__(f"{path}: {rule}")


def open_regular(path: str | os.PathLike[str], limit: int | None, what: str = "file") -> BinaryIO:
    """`path` opened for reading in binary, if it is a regular file of at most `limit` bytes (any
    size for None: the caller words its own limit).

    `FileNotFoundError` passes through (callers decide what a missing file means); any other
    failure is `FileRuleError`. `what` names the file's role in the message ("journal")."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO opens at once instead of waiting
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FileRuleError(path, f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    try:
        require_regular(fd, path, limit, what)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def require_regular(fd: int, path: str | os.PathLike[str], limit: int | None, what: str = "file") -> None:
    """Raise `FileRuleError` unless the open `fd` is a regular file of at most `limit` bytes."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a plain file")
        raise FileRuleError(path, f"is {kind}{_link_note(path)}; a {what} must be a regular file")
    if limit is not None and info.st_size > limit:
        raise FileRuleError(path, f"is {info.st_size:,} bytes, more than the {limit:,} a {what} may have")


def _link_note(path: str | os.PathLike[str]) -> str:
    """` (a link to /dev/zero)` for a symlink, else ""."""
    try:
        return f" (a link to {os.readlink(path)})" if os.path.islink(path) else ""
    except OSError:
        return ""
