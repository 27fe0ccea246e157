"""Poster images: each saved video's first frame as a small JPEG beside it (`x.mp4` -> `x.jpg`).

The report shows posters so a sheet of a thousand cells paints without opening a thousand
videos. They are made when the report is written (`ensure_posters`: every one missing or older
than its video, a few at a time), at the end of a sweep and by `wiro-sweep report`, not as each
video is saved: 2.5 ms of CPU a row taken off the sweep's busy time (PyAV releases the GIL, so
threads run them side by side). PyAV's FFmpeg decodes the frame and encodes the JPEG.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av

from flows.store.files import MAX_VIDEO_BYTES, open_regular

POSTER_SUFFIX = ".jpg"
MAX_WIDTH = 512  # the widest a report cell gets (its zoom goes to 520 px)
WORKERS = min(4, os.cpu_count() or 1)

logger = logging.getLogger("flows.store.posters")


def poster_path(video: Path) -> Path:
    return video.with_suffix(POSTER_SUFFIX)


def save_poster(video: Path) -> Path | None:
    """Write `video`'s first frame as its poster (atomically); None, logged, if that fails: a poster
    is a picture for the report, and must never turn a saved video into an error."""
    target = poster_path(video)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temporary.write_bytes(first_frame_jpeg(video))
        os.replace(temporary, target)
    except Exception as exc:
        logger.warning("no poster for %s: %s: %s", video, type(exc).__name__, exc)
        return None
    finally:
        temporary.unlink(missing_ok=True)
    return target


def first_frame_jpeg(video: Path) -> bytes:
    """The first decoded frame of `video`, at most `MAX_WIDTH` wide, as JPEG bytes."""
    with open_regular(video, MAX_VIDEO_BYTES, "video") as file, av.open(file, mode="r") as container:
        frame = next(container.decode(video=0))  # a FIFO or a device is refused above: it would block or never end
    width, height = frame.width, frame.height
    if width > MAX_WIDTH:
        width, height = MAX_WIDTH, max(2, round(height * MAX_WIDTH / width / 2) * 2)
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    scaled = frame.reformat(width=width, height=height, format="yuvj420p")
    return b"".join(bytes(packet) for packet in [*encoder.encode(scaled), *encoder.encode(None)])


def ensure_posters(videos: Iterable[Path]) -> int:
    """Make the posters that are missing or older than their video, `WORKERS` at a time; how many
    were made."""
    wanted = [video for video in videos if _stale(video)]
    if len(wanted) < 2:
        return sum(save_poster(video) is not None for video in wanted)
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="poster") as pool:
        return sum(made is not None for made in pool.map(save_poster, wanted))


def _stale(video: Path) -> bool:
    """Whether `video` exists and its poster is missing or older."""
    try:
        return poster_path(video).stat().st_mtime_ns < video.stat().st_mtime_ns
    except FileNotFoundError:
        return video.is_file()
