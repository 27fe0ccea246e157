"""The image-to-video model's start image: found from `inputImageUrl`, checked, decoded and fitted.

`StartImages.resolve` runs when a Run arrives. The emulator's own upload URLs are read straight
from its storage; any other http(s) URL is fetched (at most `MAX_UPLOAD_BYTES`, within the
config's `image_fetch_timeout` seconds in all, no proxy). An image that cannot be had or decoded
gives a reason instead, and the task then fails as Wiro's do: `pexit` 1, the reason in
`debugerror`, no charge. Decoding uses Pillow (PNG, JPEG, WebP, GIF; not HEIC).

The video's size follows Wan2.2's own rule (`wan/utils/utils.py` `best_output_size`): with
`width` and `height` 0, sides are multiples of 32 whose product is at most 832*480 and whose
ratio is nearest the image's; with both given, that size; with one given, the other side follows
the image's ratio (a multiple of 32). The image is scaled to cover the frame and centre-cropped.
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import numpy.typing as npt
from PIL import Image

from ..images import EXTENSIONS, MAX_UPLOAD_BYTES, ImageCheckError, ImageInfo, check_image
from .uploads import UPLOAD_PATH, UploadStore

WAN_AREA = 832 * 480
WAN_STEP = 32
MAX_PIXELS = 50_000_000  # beyond this the emulator refuses to decode (Pillow warns at 89 M)
_MAX_SIDE = 4096
_OWN_FILE = re.compile(rf"^{UPLOAD_PATH}/([^/]+)/([^/]+)$")


@dataclass(frozen=True)
class StartImage:
    """A decodable start image on disk, with its header's size."""

    path: Path
    sha256: str
    width: int
    height: int


class StartImages:
    """Finds, fetches and checks start images; remembers what it decoded, by content."""

    def __init__(self, directory: Path, uploads: UploadStore, *, timeout: float) -> None:
        self.directory = directory
        self.uploads = uploads
        self.timeout = timeout
        self._checked: dict[str, StartImage | str] = {}
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)

    async def resolve(self, url: str, own_netloc: str) -> StartImage | str:
        """The start image at `url`, or why the model could not use it (a task's `debugerror`)."""
        parts = urlsplit(url)
        own = _OWN_FILE.match(parts.path) if parts.netloc == own_netloc else None
        if own is not None:
            stored = self.uploads.get(own[1])
            if stored is None or stored.name != own[2]:
                return f"Input image could not be downloaded from {_shown(url)}: HTTP 404"
            checked = self._known(stored.sha256, stored.path) or await asyncio.to_thread(
                self._check, stored.path, False
            )
        else:
            fetched = await self._fetch(url)
            if isinstance(fetched, str):
                return f"Input image could not be downloaded from {_shown(url)}: {fetched}"
            checked = await asyncio.to_thread(self._check, fetched, True)
        return checked if isinstance(checked, StartImage) else f"Input image from {_shown(url)} {checked}"

    async def _fetch(self, url: str) -> Path | str:
        part = self.directory / f"incoming-{uuid.uuid4().hex}"
        try:
            async with (
                asyncio.timeout(self.timeout),
                httpx.AsyncClient(timeout=self.timeout, follow_redirects=True, trust_env=False) as http,
                http.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    return f"HTTP {response.status_code}"
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
                    return f"larger than {MAX_UPLOAD_BYTES:,} bytes"
                size = 0
                with open(part, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_UPLOAD_BYTES:
                            part.unlink(missing_ok=True)
                            return f"larger than {MAX_UPLOAD_BYTES:,} bytes"
                        out.write(chunk)
            return part
        except TimeoutError:
            part.unlink(missing_ok=True)
            return f"no complete answer within {self.timeout:g} s"
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            part.unlink(missing_ok=True)
            return type(exc).__name__

    def _known(self, sha256: str, path: Path) -> StartImage | str | None:
        """What an earlier check of this content found (an upload used by many runs is read once)."""
        with self._lock:
            known = self._checked.get(sha256)
        if isinstance(known, StartImage) and known.path != path:
            return StartImage(path, known.sha256, known.width, known.height)
        return known

    def _check(self, path: Path, fetched: bool) -> StartImage | str:
        """Reads the header, then decodes the whole image once per content (Pillow). A fetched
        file is kept under its content's name, so fetching the same image again adds nothing."""
        try:
            info = check_image(path)
        except ImageCheckError as exc:
            if fetched:
                path.unlink(missing_ok=True)
            return f"is not usable: it {exc.rule}"
        if fetched:
            kept = self.directory / f"{info.sha256}{EXTENSIONS[info.kind][0]}"
            path = path.replace(kept)
        known = self._known(info.sha256, path)
        if known is None:
            known = _decode_check(path, info)
            with self._lock:
                self._checked[info.sha256] = known
        return known


def _decode_check(path: Path, info: ImageInfo) -> StartImage | str:
    if info.width is None or info.height is None:
        return f"could not be decoded: the emulator cannot decode {info.kind} images"
    if info.width * info.height > MAX_PIXELS:
        return f"is too large to decode: {info.width}x{info.height} pixels"
    try:
        with Image.open(path) as image:
            image.draft("RGB", (1664, 1664))
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"could not be decoded: {exc}"
    return StartImage(path, info.sha256, info.width, info.height)


def i2v_size(image_width: int, image_height: int, width: int = 0, height: int = 0) -> tuple[int, int]:
    """The video's size for a start image and the task's `width`/`height` (0 follows the image)."""
    ratio = image_width / image_height
    if width and height:
        return width, height
    if width:
        return width, _side(width / ratio)
    if height:
        return _side(height * ratio), height
    ow = (WAN_AREA * ratio) ** 0.5
    oh = WAN_AREA / ow
    ow1 = max(WAN_STEP, int(ow // WAN_STEP * WAN_STEP))
    oh1 = max(WAN_STEP, int(WAN_AREA / ow1 // WAN_STEP * WAN_STEP))
    oh2 = max(WAN_STEP, int(oh // WAN_STEP * WAN_STEP))
    ow2 = max(WAN_STEP, int(WAN_AREA / oh2 // WAN_STEP * WAN_STEP))
    if max(ratio / (ow1 / oh1), (ow1 / oh1) / ratio) < max(ratio / (ow2 / oh2), (ow2 / oh2) / ratio):
        return min(ow1, _MAX_SIDE), min(oh1, _MAX_SIDE)
    return min(ow2, _MAX_SIDE), min(oh2, _MAX_SIDE)


def _side(length: float) -> int:
    return min(_MAX_SIDE, max(WAN_STEP, round(length / WAN_STEP) * WAN_STEP))


def fit_frame(path: Path, width: int, height: int) -> npt.NDArray[np.float32]:
    """The image scaled to cover `width` x `height` and centre-cropped, as RGB floats in 0..1."""
    with Image.open(path) as image:
        image.draft("RGB", (width, height))  # JPEG: decode at a reduced scale, still >= the frame
        rgb = image.convert("RGB")
    iw, ih = rgb.size
    scale = max(width / iw, height / ih)
    rw, rh = max(width, round(iw * scale)), max(height, round(ih * scale))
    rgb = rgb.resize((rw, rh), Image.Resampling.LANCZOS)
    x, y = (rw - width) // 2, (rh - height) // 2
    rgb = rgb.crop((x, y, x + width, y + height))
    return np.asarray(rgb, dtype=np.float32) / np.float32(255.0)


def _shown(url: str) -> str:
    """A URL for a message: no user, password or query (where credentials may hide)."""
    parts = urlsplit(url)
    host = (parts.netloc.rpartition("@")[2] or "")[:200]
    return f"{parts.scheme}://{host}{parts.path[:200]}"
