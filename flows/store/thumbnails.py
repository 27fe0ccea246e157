"""Start images of an image-to-video sweep: small JPEG thumbnails, and the manifest columns naming them.

The runner calls `save_thumbnail` once per distinct image before a sweep submits; the report and
compare pages show `OUT/thumbs/<sha256>.jpg` beside each video that started from that image. A
thumbnail is a picture for a page: any failure is logged and returns None, never an error. The
readers take manifests written before images existed through `with_image_columns`, which adds the
image columns as all-null.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd
from PIL import Image, ImageOps

from flows.grid import IMAGE_INPUTS, IMAGE_SHA, MODEL, is_missing
from flows.store.files import MAX_THUMBNAIL_BYTES, open_regular
from wiro_tasks.images import MAX_UPLOAD_BYTES, ImageCheckError, check_image

THUMBS = "thumbs"
MAX_SIDE = 256  # px, the longest side: twice a report's thumbnail at its widest
# Columns a manifest gains for image-to-video rows, with the dtype a missing one is read as.
IMAGE_COLUMNS = {
    name: "Int64" if name in ("width", "height") else "object" for name in (MODEL, *IMAGE_INPUTS, IMAGE_SHA)
}
ONE_MODEL = {"size": "text-to-video", "width": "image-to-video", "height": "image-to-video",
             "inputImageUrl": "image-to-video"}  # fmt: skip  # one model's inputs: empty on the other's rows
_SHA256 = re.compile(r"[0-9a-f]{64}")

logger = logging.getLogger("flows.store.thumbnails")


def thumbnail_path(out: Path, sha256: str) -> Path:
    return Path(out) / THUMBS / f"{sha256}.jpg"


def save_thumbnail(image: Path, out: Path, sha256: str) -> Path | None:
    """Write `image` as OUT/thumbs/<sha256>.jpg (longest side at most MAX_SIDE, atomically), unless it
    is there already; its path, or None, logged, if the image cannot be read or the file written."""
    temporary: Path | None = None
    try:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256: {sha256[:80]!r}")
        target = thumbnail_path(out, sha256)
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open_regular(image, MAX_UPLOAD_BYTES, "start image") as file, Image.open(file) as opened:
            opened.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a fraction of the size
            picture = ImageOps.exif_transpose(opened).convert("RGB")
        picture.thumbnail((MAX_SIDE, MAX_SIDE))
        picture.save(temporary, "JPEG", quality=85)
        os.replace(temporary, target)
    except Exception as exc:
        logger.warning("no thumbnail for %s: %s: %s", image, type(exc).__name__, exc)
        return None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    return target


def save_thumbnails(grid: pd.DataFrame, out: Path) -> int:
    """The thumbnails of a loaded grid's local images (by content, each once) under OUT, before
    its sweep submits; how many exist now."""
    if "input_image_sha256" not in grid or "image_path" not in grid:
        return 0
    pairs = grid[["image_path", "input_image_sha256"]].dropna().drop_duplicates("input_image_sha256")
    return sum(save_thumbnail(Path(path), out, sha) is not None for path, sha in pairs.itertuples(index=False))


def ensure_thumbnails(out: Path, images: Iterable[tuple[str, str]]) -> int:
    """Make the missing thumbnails of (path, sha256) pairs whose file is still there with the same
    bytes (a thumbnail that failed when its sweep ran); how many were made. A path is read from
    here: an absolute one, or one relative to the current directory."""
    made = 0
    for path, sha256 in set(images):
        if not _SHA256.fullmatch(sha256) or thumbnail_path(out, sha256).is_file():
            continue
        try:
            if check_image(path).sha256 != sha256:  # streamed, and only an image Wiro takes
                continue
        except ImageCheckError:
            continue
        made += save_thumbnail(Path(path), out, sha256) is not None
    return made


def shown_thumbnails(out: Path, manifest: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """The start images' thumbnails a report of `manifest` shows (by sha256, with their sizes), the
    missing ones made first. Only rows with a start image are looked at (0.2 s at 100,000 rows)."""
    images = with_image_columns(manifest)[["inputImage", "input_image_sha256"]]
    images = images[images["input_image_sha256"].notna()].map(text)
    shas = {s for s in images["input_image_sha256"] if is_sha256(s)}
    ensure_thumbnails(out, ((p, s) for p, s in images.itertuples(index=False) if p and s in shas))
    return {s: size for s in shas if (size := thumbnail_size(thumbnail_path(out, s)))}


def thumbnail_size(path: Path) -> tuple[int, int] | None:
    """A thumbnail's width and height (read from its header), or None if it is not a readable image."""
    try:
        with open_regular(path, MAX_THUMBNAIL_BYTES, "thumbnail") as file, Image.open(file) as image:
            width, height = image.size  # a FIFO in its place is refused above, where it would block
    except Exception:
        return None
    return (width, height) if width and height else None


def with_image_columns(manifest: pd.DataFrame) -> pd.DataFrame:
    """`manifest` with every image column, a missing one as all-null (a manifest from before images)."""
    missing = {name: dtype for name, dtype in IMAGE_COLUMNS.items() if name not in manifest.columns}
    if not missing:
        return manifest
    added = {
        name: pd.Series([None] * len(manifest), index=manifest.index, dtype=dtype) for name, dtype in missing.items()
    }
    return manifest.assign(**added)


def text(value: Any) -> str:
    """A manifest cell as text; an empty one (`grid.is_missing`) as ""."""
    return "" if is_missing(value) else str(value)


def is_sha256(value: str) -> bool:
    return bool(_SHA256.fullmatch(value))


def image_label(record: Mapping[Any, Any]) -> str:
    """What a person calls the image: its file name, or the last part of its URL."""
    path = text(record.get("inputImage"))
    if path:
        return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or path
    url = text(record.get("inputImageUrl"))
    last = unquote(urlsplit(url).path).rstrip("/").rsplit("/", 1)[-1]
    return last or url


def web_url(value: str) -> str:
    """`value` if it is an http(s) URL a page may load, else ""."""
    return value if urlsplit(value).scheme.lower() in ("http", "https") and urlsplit(value).netloc else ""
