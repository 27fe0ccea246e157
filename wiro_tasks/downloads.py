"""Saving a task's output: bounded in bytes and in time, checked before it counts.

A download writes `<dest>.part` and renames it to `dest` only when it is whole and right, so no
partial or wrong file is ever left under `dest`'s name (the `.part` is removed on any failure):

- never more bytes than the API announced for the output (`TaskOutput.size`), nor, when it
  announced none, than the client's `max_download_bytes` (`WIRO_DOWNLOAD_MAX_BYTES`); the first
  byte past the limit ends the download, and a `Content-Length` past it ends it before any byte;
- within `download_timeout` seconds in all (`WIRO_DOWNLOAD_TIMEOUT`), retries included, however
  slowly the bytes come: a per-read timeout alone lets a server drip one byte at a time forever;
- through a `check` of the finished file before the rename, e.g. `check_mp4`: a 4-byte `true`
  named `.mp4` is not a video.

    DownloadError               ended early, or fewer bytes than announced: retried
    ├── DownloadRejectedError      more bytes than allowed, or not what was expected: not retried
    └── DownloadTimeoutError       the overall deadline passed: not retried
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ._config import ENV_DOWNLOAD_MAX_BYTES, ENV_DOWNLOAD_TIMEOUT
from ._exceptions import WiroError

Check = Callable[[Path], None]
"""Looks at a finished download before it is renamed into place; raises `DownloadRejectedError`."""
PART_SUFFIX = ".part"  # a download in progress: `<dest>.part` (a rerun deletes one a killed run left)
MAX_MP4_BOXES = 100_000  # top-level boxes walked before a file counts as garbage (real ones have a handful)


class DownloadError(WiroError):
    """A download ended early or did not match the size the API announced; safe to retry."""

    retryable = True


class DownloadRejectedError(DownloadError):
    """The file host sent more than allowed, or something that is not what was asked for."""

    retryable = False


class DownloadTimeoutError(DownloadError):
    """The download's overall deadline passed (`download_timeout`); nothing was kept."""

    retryable = False


@dataclass(frozen=True)
class Download:
    """A file saved from a task output: where, how many bytes, and their sha256."""

    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class Allowance:
    """What one `download()` call may take: bytes (the announced size, else the cap) and time."""

    url: str
    announced: int | None
    limit: int
    deadline: float  # time.monotonic()
    seconds: float

    @classmethod
    def plan(cls, url: str, announced: int | None, max_bytes: int, seconds: float) -> Allowance:
        if announced is not None and announced > max_bytes:
            raise DownloadRejectedError(
                f"{url}: the API announced {announced:,} bytes, more than the {max_bytes:,}-byte cap "
                f"({ENV_DOWNLOAD_MAX_BYTES}); raise it if such outputs are expected"
            )
        limit = announced if announced is not None else max_bytes
        return cls(url, announced, limit, time.monotonic() + seconds, seconds)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """The client's timeouts, none longer than the time left."""
        left = max(0.001, self.left())

        def cut(seconds: float | None) -> float:
            return left if seconds is None else min(seconds, left)

        return httpx.Timeout(connect=cut(base.connect), read=cut(base.read), write=cut(base.write), pool=cut(base.pool))

    def expired(self) -> DownloadTimeoutError:
        return DownloadTimeoutError(
            f"{self.url}: not finished within {self.seconds:g} s ({ENV_DOWNLOAD_TIMEOUT}); nothing was kept"
        )

    def check_length(self, response: httpx.Response) -> None:
        """A declared length past the limit is refused before a byte is written."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            raise self.too_many(int(declared))

    def too_many(self, size: int) -> DownloadRejectedError:
        if self.announced is not None:
            what = f"the {self.announced:,} bytes the API announced"
        else:
            what = f"the {self.limit:,}-byte cap for outputs of unannounced size ({ENV_DOWNLOAD_MAX_BYTES})"
        return DownloadRejectedError(
            f"{self.url}: the host sends more than {what} (at least {size:,}); nothing was kept"
        )


class PartFile:
    """Writes to `<dest>.part` within `allowance.limit` bytes, then renames into place only when the
    size is right and the check passes; removed on the way out otherwise."""

    def __init__(self, dest: Path, allowance: Allowance) -> None:
        self.dest = dest
        self.allowance = allowance
        self.part = dest.with_name(dest.name + PART_SUFFIX)
        self.size = 0
        self._hash = hashlib.sha256()
        self._file: Any = None

    def __enter__(self) -> PartFile:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.part, "wb")
        return self

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.allowance.limit:
            raise self.allowance.too_many(self.size + len(chunk))
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def commit(self, check: Check | None) -> Download:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        expected = self.allowance.announced
        if expected is not None and self.size != expected:
            raise DownloadError(f"{self.dest.name}: got {self.size} bytes, the API announced {expected}")
        if check is not None:
            check(self.part)
        os.replace(self.part, self.dest)
        return Download(path=self.dest, size=self.size, sha256=self._hash.hexdigest())

    def __exit__(self, *exc: object) -> None:
        if not self._file.closed:
            self._file.close()
        self.part.unlink(missing_ok=True)


class Watchdog:
    """Ends a blocking (sync) download at its deadline by shutting its socket: a read blocked on
    a silent server returns at once. `fired` says it did."""

    def __init__(self, response: httpx.Response, seconds: float) -> None:
        self.response = response
        self.fired = False
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        stream = self.response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # closed meanwhile
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def check_mp4(path: Path) -> None:
    """Accept only an MP4 container: an `ftyp` box first, then whole boxes to the end of the
    file, one of them `moov` (the index a player needs). `DownloadRejectedError` says what is wrong."""
    problem = mp4_problem(path)
    if problem:
        raise DownloadRejectedError(f"{path.name.removesuffix('.part')}: not an MP4 video: {problem}")


def mp4_problem(path: Path) -> str | None:
    """What keeps `path` from being an MP4 container, or None."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    kinds: list[bytes] = []
    with path.open("rb") as handle:
        offset = 0
        while offset < size:
            if len(kinds) >= MAX_MP4_BOXES:
                return f"more than {MAX_MP4_BOXES:,} top-level boxes"
            handle.seek(offset)
            head = handle.read(16)
            if not kinds and head[4:8] != b"ftyp":
                return f"it does not start with an ftyp box (it starts with {head[:8]!r})"
            if len(head) < 8:
                return f"a box header is cut short at byte {offset:,}"
            length, kind = struct.unpack(">I4s", head[:8])
            header = 8
            if length == 1:
                if len(head) < 16:
                    return f"a box header is cut short at byte {offset:,}"
                length, header = struct.unpack(">Q", head[8:16])[0], 16
            elif length == 0:
                length = size - offset  # the last box runs to the end of the file
            if not all(32 <= c < 127 for c in kind):
                return f"a box at byte {offset:,} has no type ({kind!r})"
            if length < header or offset + length > size:
                left = size - offset
                return f"the {kind.decode()} box at byte {offset:,} claims {length:,} bytes, the file has {left:,} left"
            kinds.append(kind)
            offset += length
    if b"moov" not in kinds:
        return "it has no moov box (no index of its frames)"
    return None
