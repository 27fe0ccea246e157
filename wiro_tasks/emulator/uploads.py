"""The emulator's File/Upload: multipart bodies streamed to disk, and the stored files served back.

A body is parsed as it arrives (`parse_multipart`), each `file` part written straight into the
storage folder and hashed on the way, so a 100 MB upload never sits in memory. Like Wiro it takes
images (jpg, jpeg, png, webp, gif, heic, judged by content) of at most `MAX_UPLOAD_BYTES`, and
answers `{"result": true, "errors": [], "list": [FILE]}`; the file is then served at FILE's `url`
(GET, with Range). The route keeps its own bound and never reads the body into memory, so it does
not depend on whatever limit other routes put on theirs.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from ..images import ACCEPTED, CONTENT_TYPES, MAX_UPLOAD_BYTES, sniff
from .file_types import ACCEPTED_FILES, documented_type
from .wire import wiro_error

MAX_FIELD_BYTES = 4096  # a form field other than a file (folderid)
MAX_HEADER_BYTES = 16384  # one part's headers
MAX_PARTS = 16
DRAIN_BYTES = 8 << 20  # how much of a refused body is still read, so the client can read the answer
UPLOAD_PATH = "/uploads"


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


class TooLarge(Exception):
    """A part went past its size limit."""


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...


async def parse_multipart(
    chunks: AsyncIterator[bytes], boundary: bytes, open_part: Callable[[str, str | None], Sink]
) -> None:
    """Feeds each part's body, as it arrives, to `open_part(name, filename)`'s sink (RFC 7578).

    At most one chunk and a delimiter's length are held in memory. Raises `MultipartError` for a
    malformed or truncated body; a sink may raise to stop reading (the stream is left where it is).
    """
    delimiter = b"\r\n--" + boundary
    buffer = bytearray(b"\r\n")  # so the first delimiter looks like every other
    stream = aiter(chunks)

    async def more() -> None:
        chunk = await anext(stream, None)
        if chunk is None:
            raise MultipartError("the body ends before its closing delimiter")
        buffer.extend(chunk)

    while (at := buffer.find(delimiter)) < 0:  # skip the preamble
        if len(buffer) > MAX_HEADER_BYTES:
            raise MultipartError("no delimiter where the body starts")
        await more()
    del buffer[: at + len(delimiter)]
    for _ in range(MAX_PARTS + 1):
        while len(buffer) < 2:
            await more()
        if buffer.startswith(b"--"):
            return
        if not buffer.startswith(b"\r\n"):
            raise MultipartError("a delimiter is not followed by a line break")
        while (end := buffer.find(b"\r\n\r\n")) < 0:  # at 0 when a part has no headers at all
            if len(buffer) > MAX_HEADER_BYTES:
                raise MultipartError("a part's headers are too long")
            await more()
        name, filename = _disposition(bytes(buffer[:end]))
        del buffer[: end + 4]
        sink = open_part(name, filename)
        keep = len(delimiter) - 1
        while (at := buffer.find(delimiter)) < 0:
            if len(buffer) > keep:
                sink.write(bytes(buffer[: len(buffer) - keep]))
                del buffer[: len(buffer) - keep]
            await more()
        sink.write(bytes(buffer[:at]))
        del buffer[: at + len(delimiter)]
    raise MultipartError(f"more than {MAX_PARTS} parts")


_PARAM = re.compile(r';\s*(name|filename)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))', re.IGNORECASE)


def _disposition(head: bytes) -> tuple[str, str | None]:
    """The `name` and `filename` of a part's Content-Disposition header."""
    for line in head.decode("utf-8", errors="replace").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            found = {
                m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(value)
            }
            if "name" not in found:
                break
            return found["name"], found.get("filename")
    raise MultipartError("a part has no Content-Disposition name")


@dataclass(frozen=True)
class StoredFile:
    """One uploaded file on disk."""

    id: str
    name: str
    path: Path
    size: int
    sha256: str
    content_type: str
    parent_id: str
    added: int
    access_key: str

    def url(self, root: str) -> str:
        return f"{root}{UPLOAD_PATH}/{self.id}/{quote(self.name)}"

    def describe(self, root: str) -> dict[str, str]:
        """The file as File/Upload answers it: every value a string."""
        return {
            "id": self.id,
            "name": self.name,
            "contenttype": self.content_type,
            "size": str(self.size),
            "parentid": self.parent_id,
            "url": self.url(root),
            "addedtime": str(self.added),
            "accesskey": self.access_key,
        }


class _FileSink:
    """Writes one file part into the store's incoming folder, counting and hashing it."""

    def __init__(self, path: Path, limit: int, filename: str) -> None:
        self.path = path
        self.limit = limit
        self.filename = filename
        self.size = 0
        self.hash = hashlib.sha256()
        self.head = b""
        self.file = open(path, "wb")  # noqa: SIM115 (closed by the store, whatever happens)

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge
        if len(self.head) < 64:
            self.head += data[: 64 - len(self.head)]
        self.hash.update(data)
        self.file.write(data)


class _FieldSink:
    """A small form field (`folderid`, a Run's input), kept in memory up to `limit` bytes."""

    def __init__(self, limit: int = MAX_FIELD_BYTES) -> None:
        self.limit = limit
        self.value = bytearray()

    def write(self, data: bytes) -> None:
        self.value.extend(data)
        if len(self.value) > self.limit:
            raise MultipartError("a form field is too long")


class _Skip:
    """A file under another field name: read through (within the size limit) and dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge


class UploadStore:
    """Uploaded files under `directory` (their bytes on disk; their records, small, in memory)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = MAX_UPLOAD_BYTES,
        count: Callable[[str], None],
        documented_types: bool = False,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.documented_types = documented_types  # files.md's every type, not images alone
        self._count = count
        self._files: dict[str, StoredFile] = {}
        self._lock = threading.Lock()
        self._next_id = 5000
        (directory / ".incoming").mkdir(parents=True, exist_ok=True)

    def get(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    @property
    def files(self) -> list[StoredFile]:
        with self._lock:
            return list(self._files.values())

    async def receive(self, request: Request) -> list[StoredFile] | Response:
        """Stores the `file` parts of an upload request, or answers why not (Wiro's error shape)."""
        parsed = await self._parse(request, "file", MAX_FIELD_BYTES, named_only=False)
        if isinstance(parsed, Response):
            return parsed
        sinks, fields = parsed
        if not sinks:
            self._count("upload_no_file")
            return wiro_error("Request parameter [file] required")
        return self._store(sinks, fields.get("folderid", "").strip(), images_only=not self.documented_types)

    async def receive_form(
        self, request: Request, file_field: str, field_limit: int
    ) -> tuple[dict[str, str], StoredFile | None] | Response:
        """A multipart form's fields and the image in its `file_field` part, stored as an upload
        would be (a Run's file input, `model-parameters.md`); an empty file part counts as none."""
        parsed = await self._parse(request, file_field, field_limit, named_only=True)
        if isinstance(parsed, Response):
            return parsed
        sinks, fields = parsed
        self._discard([sink for sink in sinks if not sink.size])
        stored = self._store([sink for sink in sinks if sink.size], "", images_only=True)
        if isinstance(stored, Response):
            return stored
        return fields, stored[0] if stored else None

    async def _parse(
        self, request: Request, file_field: str, field_limit: int, *, named_only: bool
    ) -> tuple[list[_FileSink], dict[str, str]] | Response:
        """The body's `file_field` parts, on disk (with `named_only`, those with a file name: the
        others are fields, as a URL sent in a file input is), and its other fields; or why it
        cannot be read."""
        boundary = _boundary(request.headers.get("content-type", ""))
        if boundary is None:
            return wiro_error(f"Request parameter [{file_field}] required")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes + DRAIN_BYTES:
            self._count("upload_refused_size")
            return self._too_large()
        sinks: list[_FileSink] = []
        fields: dict[str, _FieldSink] = {}

        def open_part(name: str, filename: str | None) -> Sink:
            if name == file_field and (filename is not None or not named_only):
                path = self.directory / ".incoming" / uuid.uuid4().hex
                sinks.append(_FileSink(path, self.max_bytes, safe_name(filename)))
                return sinks[-1]
            if filename is not None:
                return _Skip(self.max_bytes)
            return fields.setdefault(name, _FieldSink(field_limit))

        stream = request.stream()
        try:
            await parse_multipart(stream, boundary, open_part)
        except TooLarge:
            self._discard(sinks)
            await _drain(stream, DRAIN_BYTES)
            self._count("upload_refused_size")
            return self._too_large()
        except MultipartError:
            self._discard(sinks)
            return wiro_error("Request body could not be parsed.")
        except BaseException:  # the client went away (ClientDisconnect), or the server stops
            self._discard(sinks)
            raise
        return sinks, {name: bytes(sink.value).decode(errors="replace") for name, sink in fields.items()}

    def _store(self, sinks: list[_FileSink], parent: str, *, images_only: bool) -> list[StoredFile] | Response:
        """Keeps the files when every one is of an accepted type, else none of them."""
        types = [_content_type(sink, images_only) for sink in sinks]
        if not all(types):
            self._discard(sinks)
            self._count("upload_refused_type")
            allowed = f"image types: {ACCEPTED}" if images_only else f"types: {ACCEPTED_FILES}"
            return wiro_error(f"File type is not allowed. Allowed {allowed}.")
        return [self._keep(sink, kind, parent) for sink, kind in zip(sinks, types, strict=True) if kind]

    def _keep(self, sink: _FileSink, content_type: str, parent: str) -> StoredFile:
        sink.file.close()
        name = sink.filename
        with self._lock:
            self._next_id += 1
            file_id = str(self._next_id)
        folder = self.directory / file_id
        folder.mkdir()
        path = folder / name
        sink.path.replace(path)
        record = StoredFile(
            id=file_id,
            name=name,
            path=path,
            size=sink.size,
            sha256=sink.hash.hexdigest(),
            content_type=content_type,
            parent_id=parent or "0",
            added=int(time.time()),
            access_key=secrets.token_hex(8),
        )
        with self._lock:
            self._files[file_id] = record
        self._count("uploads_stored")
        return record

    def _discard(self, sinks: list[_FileSink]) -> None:
        for sink in sinks:
            sink.file.close()
            sink.path.unlink(missing_ok=True)

    def _too_large(self) -> Response:
        limit = self.max_bytes // 1_000_000
        return wiro_error(f"File size exceeds the limit of {limit} MB.", status=413)

    async def serve(self, request: Request) -> Response:
        """GET (or HEAD) an uploaded file, with Range, as Wiro's file host would."""
        self._count("upload_fetch")
        record = self.get(request.path_params["file_id"])
        if record is None or request.path_params["name"] != record.name:
            return PlainTextResponse("Not Found", 404)
        return FileResponse(record.path, media_type=record.content_type)

    def close(self) -> None:
        shutil.rmtree(self.directory / ".incoming", ignore_errors=True)


def _content_type(sink: _FileSink, images_only: bool) -> str | None:
    """An accepted file's content type: an image's by its content, else (unless `images_only`)
    one of files.md's other types by its name and content."""
    kind = sniff(sink.head)
    if kind is not None:
        return CONTENT_TYPES[kind]
    return None if images_only else documented_type(sink.filename, sink.head)


def safe_name(filename: str | None) -> str:
    """A file name safe in a path and a URL: the last path segment, in plain characters."""
    base = re.split(r"[\\/]", filename or "")[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")[:100]
    return cleaned or "upload"


def _boundary(content_type: str) -> bytes | None:
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        return None
    match = re.search(r'boundary\s*=\s*(?:"([^"]{1,70})"|([^;\s]{1,70}))', params, re.IGNORECASE)
    if match is None:
        return None
    return (match.group(1) or match.group(2)).encode("latin-1", errors="replace")


async def _drain(stream: AsyncIterator[bytes], limit: int) -> None:
    """Reads (and drops) up to `limit` more bytes of a refused body: a server that answers and
    closes while the client still sends may reset the connection before the answer is read."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            return
