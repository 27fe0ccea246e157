"""Is this a start image Wiro will take? A pure, local check: no request, nothing uploaded.

    info = check_image("frames/fox.png")   # ImageInfo, or ImageCheckError naming the rule
    info.sha256, info.kind, info.width, info.height

Wiro's File/Upload takes jpg/jpeg, png, webp, gif and heic images up to 100 MB. The type is
judged by the file's content (its magic bytes), not its name; width and height come from the
header where the format puts them there (not for HEIC). The file is read once, in chunks, so a
100 MB image never sits in memory. `AsyncWiroClient.upload` runs the same check first, and the
flows run it while validating a grid, before anything is spent.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from ._exceptions import InputValidationError
from .local_files import FileRuleError, open_regular

MAX_UPLOAD_BYTES = 100_000_000  # Wiro's "100 MB", read the stricter way (not MiB)
IMAGE_FIELD = "inputImage"
ImageKind = Literal["jpeg", "png", "webp", "gif", "heic"]
CONTENT_TYPES: dict[ImageKind, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
}
EXTENSIONS: dict[ImageKind, tuple[str, ...]] = {
    "jpeg": (".jpg", ".jpeg"),
    "png": (".png",),
    "webp": (".webp",),
    "gif": (".gif",),
    "heic": (".heic", ".heif"),
}
ACCEPTED = "jpg, jpeg, png, webp, gif or heic"
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEAD = 64
_CHUNK = 1 << 16


class ImageCheckError(InputValidationError):
    """The start image breaks a rule of Wiro's File/Upload; found locally, nothing was sent.

    `field` is `inputImage`, `rule` says what is wrong, `path` names the file (None for bytes).
    """

    def __init__(self, path: Path | None, rule: str) -> None:
        self.path = path
        super().__init__(IMAGE_FIELD, rule, None if path is None else str(path))


@dataclass(frozen=True)
class ImageInfo:
    """What the check learned of one image: its content hash, type and (when known) size."""

    path: Path | None
    size: int
    sha256: str
    kind: ImageKind
    width: int | None = None
    height: int | None = None

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.kind]

    def upload_name(self, name: str | None = None) -> str:
        """The file name to upload under: the given (or the file's) name, with an extension
        that says what the content is (`scan.png` holding a JPEG goes as `scan.jpg`)."""
        base = Path(name or (self.path.name if self.path else "") or "image")
        if base.suffix.lower() in EXTENSIONS[self.kind]:
            return base.name
        return f"{base.stem or 'image'}{EXTENSIONS[self.kind][0]}"


def check_image(source: str | os.PathLike[str] | bytes, *, max_bytes: int = MAX_UPLOAD_BYTES) -> ImageInfo:
    """The image's `ImageInfo`, or `ImageCheckError` when Wiro would refuse it (or it is unreadable)."""
    if isinstance(source, bytes):
        return _inspect(io.BytesIO(source), None, len(source), max_bytes)
    path = Path(source)
    try:
        with open_regular(path, None, "start image") as file:  # a FIFO, a device or a directory: refused
            size = os.fstat(file.fileno()).st_size
            return _inspect(file, path, size, max_bytes)
    except FileNotFoundError:
        raise ImageCheckError(path, "file not found") from None
    except FileRuleError as exc:
        raise ImageCheckError(path, exc.rule) from None
    except OSError as exc:
        raise ImageCheckError(path, f"cannot be read: {exc.strerror or type(exc).__name__}") from None


def sniff(head: bytes) -> ImageKind | None:
    """The accepted image type the first bytes of a file announce, if any."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and len(head) >= 12:
        box = min(max(int.from_bytes(head[:4], "big"), 16), len(head))
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, box - 3, 4)}
        if brands & _HEIC_BRANDS:
            return "heic"
    return None


def _inspect(file: BinaryIO, path: Path | None, size: int, max_bytes: int) -> ImageInfo:
    if size == 0:
        raise ImageCheckError(path, "is empty")
    if size > max_bytes:
        raise ImageCheckError(path, f"is larger than Wiro's upload limit of {max_bytes:,} bytes ({size:,} bytes)")
    head = file.read(_HEAD)
    kind = sniff(head)
    if kind is None:
        named = f" (its name says {path.suffix})" if path is not None and path.suffix else ""
        raise ImageCheckError(path, f"is not a {ACCEPTED} image by its content{named}")
    dims = _dimensions(kind, head, file)
    if dims is None and kind != "heic":
        raise ImageCheckError(path, f"is a damaged {kind} image: its header gives no width and height")
    digest = hashlib.sha256(head)
    file.seek(len(head))
    for chunk in _chunks(file):
        digest.update(chunk)
    width, height = dims if dims is not None else (None, None)
    return ImageInfo(path=path, size=size, sha256=digest.hexdigest(), kind=kind, width=width, height=height)


def _chunks(file: BinaryIO) -> Iterator[bytes]:
    while chunk := file.read(_CHUNK):
        yield chunk


def _dimensions(kind: ImageKind, head: bytes, file: BinaryIO) -> tuple[int, int] | None:
    """Width and height from the header; None when the header is cut short or nonsense."""
    dims: tuple[int, int] | None = None
    if kind == "png" and head[12:16] == b"IHDR" and len(head) >= 24:
        dims = struct.unpack(">II", head[16:24])
    elif kind == "gif" and len(head) >= 10:
        dims = struct.unpack("<HH", head[6:10])
    elif kind == "webp":
        dims = _webp_dimensions(head)
    elif kind == "jpeg":
        dims = _jpeg_dimensions(file)
    if dims is None or dims[0] < 1 or dims[1] < 1:
        return None
    return dims


def _webp_dimensions(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a" and len(head) >= 30:
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_dimensions(file: BinaryIO) -> tuple[int, int] | None:
    """Walks the JPEG's marker segments (skipping EXIF and other metadata) to its frame header."""
    file.seek(2)
    for _ in range(4096):
        if file.read(1) != b"\xff":
            return None
        marker = b"\xff"
        while marker == b"\xff":  # fill bytes before a marker code
            marker = file.read(1)
        if not marker or marker[0] in (0xD9, 0xDA):  # the end, or scan data before any frame header
            return None
        code = marker[0]
        if code == 0x01 or 0xD0 <= code <= 0xD7:
            continue
        length = file.read(2)
        if len(length) < 2:
            return None
        body = int.from_bytes(length, "big") - 2
        if code in _SOF:
            frame = file.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        if body < 0:
            return None
        file.seek(body, os.SEEK_CUR)
    return None


def _reopen(path: str | os.PathLike[str]) -> BinaryIO:
    """The checked image's file again; one that became a FIFO or a device since is refused."""
    try:
        return open_regular(path, None, "start image")
    except FileRuleError as exc:
        raise ImageCheckError(Path(path), exc.rule) from None


class CheckedReader:
    """The checked image as httpx reads it for a multipart upload: exactly `info.size` bytes from
    the start, hashed as they go. A file that changed since `check_image` raises
    `ImageCheckError` mid-request, so the upload never completes with bytes nobody checked.
    httpx seeks to 0 before each attempt, which starts the hash again."""

    def __init__(self, source: str | os.PathLike[str] | bytes, info: ImageInfo) -> None:
        self._info = info
        self._file: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else _reopen(source)
        self._position = 0
        self._digest = hashlib.sha256()

    def close(self) -> None:
        self._file.close()

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Only what httpx needs: the length (seek to the end) and a rewind to the start."""
        if whence == os.SEEK_END and offset == 0:
            return self._info.size
        if (whence, offset) != (os.SEEK_SET, 0) and (whence, offset) != (os.SEEK_SET, self._position):
            raise io.UnsupportedOperation("a checked image is read from the start")
        if offset == 0:
            self._file.seek(0)
            self._position = 0
            self._digest = hashlib.sha256()
        return self._position

    def read(self, n: int = -1) -> bytes:
        left = self._info.size - self._position
        want = left if n < 0 else min(n, left)
        data = self._file.read(want) if want else b""
        if len(data) < want:
            raise ImageCheckError(self._info.path, "changed while uploading: it is shorter than when it was checked")
        self._position += len(data)
        self._digest.update(data)
        if self._position == self._info.size and self._digest.hexdigest() != self._info.sha256:
            raise ImageCheckError(self._info.path, "changed while uploading: its content is not what was checked")
        return data
