"""Poster images: each saved video's first frame as a small JPEG beside it (`x.mp4` -> `x.jpg`).

The report shows posters so a sheet of a thousand cells paints without opening a thousand
videos. They are made when the report is written (`ensure_posters`: every one missing or older
than its video, a few at a time), at the end of a sweep and by `wiro-sweep report`, not as each
video is saved: CPU taken off the sweep's busy time (PyAV releases the GIL, so threads run them
side by side). PyAV's FFmpeg decodes the frame on one thread and Pillow encodes the JPEG: about
0.8 ms a poster of an emulator preview, where FFmpeg's frame threads and its JPEG encoder took 2.4.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, TypeVar

import av
from PIL import Image

from flows.store.files import MAX_VIDEO_BYTES, open_regular

POSTER_SUFFIX = ".jpg"
MAX_WIDTH = 512  # the widest a report cell gets (its zoom goes to 520 px)
WORKERS = min(4, os.cpu_count() or 1)

logger = logging.getLogger("flows.store.posters")
Listed = TypeVar("Listed")


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
        stream = container.streams.video[0]
        # One thread: FFmpeg's frame threads start a thread per core and hold frames back until
        # they all have work, which for a single frame costs 2.6x the wall time (and 1.6x the CPU).
        stream.thread_type, stream.codec_context.thread_count = "NONE", 1
        frame = next(container.decode(stream))  # a FIFO or a device is refused above: it would block or never end
    image = _picture(frame)
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, max(2, round(image.height * MAX_WIDTH / image.width / 2) * 2)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _picture(frame: av.VideoFrame) -> Image.Image:
    """`frame` as a Pillow image. A 4:2:0 frame (H.264's, Wan's) goes in as YCbCr, JPEG's own
    colour space, its planes stretched from video range to full: Pillow takes 0.1 ms where
    FFmpeg's scaler takes 0.7 ms to set itself up for each frame. Any other format via RGB."""
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        rgb: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
        return rgb
    width, height = frame.width, frame.height
    luma, blue, red = (
        Image.frombuffer("L", (p.width, p.height), bytes(p), "raw", "L", p.line_size, 1) for p in frame.planes
    )
    blue, red = blue.resize((width, height)), red.resize((width, height))
    if frame.format.name == "yuv420p":  # video range (Y 16-235, Cb/Cr 16-240) to full
        luma, blue, red = luma.point(_FULL_LUMA), blue.point(_FULL_CHROMA), red.point(_FULL_CHROMA)
    return Image.merge("YCbCr", (luma, blue, red))


_FULL_LUMA = [min(255, max(0, round((v - 16) * 255 / 219))) for v in range(256)]
_FULL_CHROMA = [min(255, max(0, round((v - 128) * 255 / 224 + 128))) for v in range(256)]


class Posters(NamedTuple):
    made: int  # posters made now
    shown: set[str]  # the videos (as text) that have a poster now, made or kept
    mark: str = ""  # their folders as they are now (`folders_mark`)


def ensure_posters(videos: Iterable[str | Path]) -> Posters:
    """Make the posters that are missing or older than their video, `WORKERS` at a time. Which to
    make and which exist come from one listing of each folder, where a path object and a stat for
    each video and poster took 2.1 s at 100,000 rows, and a second listing for the ones that exist
    0.5 s more. A poster that could not be made again stays, older."""
    wanted: list[str] = []
    shown: set[str] = set()
    listed: dict[str, dict[str, tuple[int, bool]]] = {}  # folder -> its entries
    for video, name, entries in _in_folders(videos, _entries, listed):
        made, poster = entries.get(name), entries.get(_poster_name(name))
        if poster is not None and poster[1]:
            shown.add(video)
        if made is not None and (made[0] > poster[0] if poster is not None else made[1]):
            wanted.append(video)  # older than its video, or missing where the video is a file
    if len(wanted) < 2:
        saved = [save_poster(Path(video)) for video in wanted]
    else:
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="poster") as pool:
            saved = list(pool.map(save_poster, map(Path, wanted)))
    fresh = [video for video, poster in zip(wanted, saved, strict=True) if poster is not None]
    return Posters(len(fresh), shown.union(fresh), folders_mark(listed))


def listed_posters(videos: Iterable[str | Path]) -> tuple[set[str], str]:
    """The videos with a poster beside them, from their folders' names alone (no stat of each
    file: 0.1 s where `ensure_posters` takes 1.9 at 100,000 rows), and a mark of those folders as
    they are: the same mark later means no entry was added, removed or renamed in them since, so
    no poster was made, lost, or left older than a video saved again (saves are renames)."""
    names: dict[str, set[str]] = {}  # folder -> its files' names
    shown: set[str] = set()
    split, stem = os.path.split, os.path.splitext
    for given in videos:  # `_in_folders` and `_poster_name`, inline: a call each cost 0.4 s at 100,000 rows
        video = os.fspath(given)
        folder, name = split(video)
        listed = names.get(folder)
        if listed is None:
            listed = names[folder] = _names(folder or ".")
        if stem(name)[0] + POSTER_SUFFIX in listed:
            shown.add(video)
    return shown, folders_mark(names)


def _in_folders(
    videos: Iterable[str | Path], listing: Callable[[str], Listed], listed: dict[str, Listed]
) -> Iterator[tuple[str, str, Listed]]:
    """Each video (as text), its name and its folder's `listing`, each folder listed once into `listed`."""
    for given in videos:
        video = os.fspath(given)
        folder, name = os.path.split(video)
        entries = listed.get(folder)
        if entries is None:
            entries = listed[folder] = listing(folder or ".")
        yield video, name, entries


def folders_mark(folders: Iterable[str]) -> str:
    """Each folder's identity and modification time, as one digest ("" for none), whatever the
    spelling of its path. The time moves in the kernel's clock ticks (a few ms): a change in the
    tick it is read in goes unseen, and nothing writes videos then (a sweep makes its report
    after its last video)."""
    seen: list[tuple[int, int, int]] = []
    for folder in set(folders):
        try:
            info = os.stat(folder or ".")
        except OSError:
            continue
        seen.append((info.st_dev, info.st_ino, info.st_mtime_ns))
    return hashlib.sha256(repr(sorted(seen)).encode()).hexdigest() if seen else ""


def _names(folder: str) -> set[str]:
    """The names of a folder's regular files (links followed), from its listing's types."""
    try:
        with os.scandir(folder) as entries:
            try:  # no function call per entry; an entry whose type cannot be found lists the folder again
                return {e.name for e in entries if e.is_file()}
            except OSError:
                pass
        with os.scandir(folder) as entries:
            return {e.name for e in entries if _is_file(e)}
    except OSError:
        return set()


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _poster_name(video: str) -> str:
    return os.path.splitext(video)[0] + POSTER_SUFFIX


def _entries(folder: str) -> dict[str, tuple[int, bool]]:
    """A folder's entries by name: (mtime in ns, whether a regular file)."""
    try:
        with os.scandir(folder) as entries:
            return {e.name: (e.stat().st_mtime_ns, e.is_file()) for e in entries if _exists(e)}
    except OSError:  # no folder, or one that cannot be listed: no files in it
        return {}


def _exists(entry: os.DirEntry[str]) -> bool:
    """Whether `entry` (followed if a link) can be stat'ed: a dangling link cannot."""
    try:
        entry.stat()
    except OSError:
        return False
    return True
