"""How different two videos look: decoded with PyAV (FFmpeg), compared at the same timestamps.

    diff = diff_videos(Path("a.mp4"), Path("b.mp4"), threshold_db=30.0)
    diff.psnr_db, diff.change, diff.error, diff.strip   # 45.1, "", "", None

Both videos are decoded once, start to end (a generated clip often has a single keyframe, so
seeking saves nothing), keeping the frames shown at `samples` evenly spaced timestamps over the
shorter clip. `psnr_db` is the mean over those of the luma PSNR (identical frames count as
`IDENTICAL_DB`). A change of size, frame count or frame rate is reported as such in `change`;
sizes that differ leave `psnr_db` unset. A file that cannot be read or decoded sets `error`
(naming the side) instead of raising. A visible change also gets `strip`: a PNG of a few
sampled frames, baseline above current above their difference.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from flows.store.files import MAX_VIDEO_BYTES, UnreadableFileError, open_regular

SAMPLES = 8
STRIP_FRAMES = 4
STRIP_WIDTH = 192  # pixels per thumbnail
IDENTICAL_DB = 100.0  # a frame with no difference at all (PSNR is infinite); the usual cap

_U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class VideoDiff:
    psnr_db: float | None = None
    change: str = ""  # e.g. "size 832x480 -> 480x832; frames 121 -> 81; fps 16 -> 24"
    error: str = ""  # e.g. "current videos/x.mp4: cannot decode (Invalid data found ...)"
    strip: bytes | None = None  # PNG


@dataclass
class _Clip:
    width: int
    height: int
    fps: Fraction | None
    seconds: float
    frames: int = 0
    lumas: dict[int, _U8] | None = None  # sample index -> Y plane
    thumbs: dict[int, _U8] | None = None  # strip index -> RGB thumbnail


class DecodeError(Exception):
    """A video that cannot be opened or decoded; the message names the file."""


def diff_videos(baseline: Path, current: Path, *, threshold_db: float, samples: int = SAMPLES,
                labels: tuple[str, str] = ("baseline", "current")) -> VideoDiff:  # fmt: skip
    """Compare two video files; never raises for a bad file (see `VideoDiff.error`)."""
    try:
        a = _probe(baseline, labels[0])
        b = _probe(current, labels[1])
        span = min(a.seconds, b.seconds)
        times = [(k + 0.5) * span / samples for k in range(samples)]
        strip_at = [round(k * (samples - 1) / max(1, STRIP_FRAMES - 1)) for k in range(STRIP_FRAMES)]
        thumb = _thumb_size(a.width, a.height)
        _decode(baseline, labels[0], a, times, strip_at, thumb)
        _decode(current, labels[1], b, times, strip_at, thumb)
    except DecodeError as exc:
        return VideoDiff(error=str(exc))
    changes = []
    if (a.width, a.height) != (b.width, b.height):
        changes.append(f"size {a.width}x{a.height} -> {b.width}x{b.height}")
    if a.frames != b.frames:
        changes.append(f"frames {a.frames} -> {b.frames}")
    if a.fps != b.fps:
        changes.append(f"fps {_rate(a.fps)} -> {_rate(b.fps)}")
    psnr = None
    if (a.width, a.height) == (b.width, b.height) and a.lumas and b.lumas:
        psnr = float(np.mean([_psnr(a.lumas[k], b.lumas[k]) for k in sorted(a.lumas) if k in b.lumas]))
    visible = bool(changes) or psnr is None or psnr < threshold_db
    strip = _strip(a, b) if visible else None
    return VideoDiff(psnr_db=psnr, change="; ".join(changes), strip=strip)


def _probe(path: Path, label: str) -> _Clip:
    try:
        with _open(path, label) as file, av.open(file, mode="r") as container:
            if not container.streams.video:
                raise DecodeError(f"{label} {path}: no video stream")
            stream = container.streams.video[0]
            seconds = 0.0
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration:
                seconds = container.duration / av.time_base
            rate = stream.average_rate
            return _Clip(stream.codec_context.width, stream.codec_context.height,
                         Fraction(rate) if rate else None, seconds)  # fmt: skip
    except (av.FFmpegError, OSError) as exc:
        raise DecodeError(f"{label} {path}: cannot open ({_reason(exc)})") from None


def _open(path: Path, label: str) -> BinaryIO:
    """The video file for PyAV, if it is a regular file of a video's size (a FIFO would block it)."""
    try:
        return open_regular(path, MAX_VIDEO_BYTES, "video")
    except UnreadableFileError as exc:
        raise DecodeError(f"{label} {path}: cannot open ({exc.rule})") from None


def _decode(path: Path, label: str, clip: _Clip, times: list[float], strip_at: list[int],
            thumb: tuple[int, int]) -> None:  # fmt: skip
    """Decode every frame; keep the luma of the frame on screen at each time, thumbnails of some."""
    lumas: dict[int, _U8] = {}
    thumbs: dict[int, _U8] = {}
    pending = 0  # index of the next sample time not yet passed
    previous = None
    try:
        with _open(path, label) as file, av.open(file, mode="r") as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                clip.frames += 1
                at = frame.time if frame.time is not None else clip.frames / float(clip.fps or 1)
                while pending < len(times) and previous is not None and at > times[pending] + 1e-6:
                    _keep(previous, pending, lumas, thumbs, strip_at, thumb)
                    pending += 1
                previous = frame
            while pending < len(times) and previous is not None:
                _keep(previous, pending, lumas, thumbs, strip_at, thumb)
                pending += 1
    except (av.FFmpegError, OSError) as exc:
        raise DecodeError(f"{label} {path}: cannot decode ({_reason(exc)})") from None
    if clip.frames == 0:
        raise DecodeError(f"{label} {path}: cannot decode (no frame in the video stream)")
    clip.lumas, clip.thumbs = lumas, thumbs


def _keep(frame: av.VideoFrame, index: int, lumas: dict[int, _U8], thumbs: dict[int, _U8],
          strip_at: list[int], thumb: tuple[int, int]) -> None:  # fmt: skip
    plane = np.asarray(frame.to_ndarray(format="yuv420p"), np.uint8)  # no conversion when it is yuv420p
    lumas[index] = plane[: frame.height].copy()
    if index in strip_at:
        small = frame.reformat(width=thumb[0], height=thumb[1], format="rgb24")
        thumbs[strip_at.index(index)] = np.asarray(small.to_ndarray(), np.uint8)


def _psnr(a: _U8, b: _U8) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return IDENTICAL_DB if mse == 0 else min(IDENTICAL_DB, 10.0 * np.log10(255.0**2 / mse))


def _thumb_size(width: int, height: int) -> tuple[int, int]:
    return STRIP_WIDTH, max(2, round(STRIP_WIDTH * height / max(1, width) / 2) * 2)


def _rate(fps: Fraction | None) -> str:
    if fps is None:
        return "?"
    return str(fps.numerator) if fps.denominator == 1 else f"{float(fps):.3f}"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "strerror", None) or exc).split())  # FFmpeg's words, not its errno
    return text[:200] or type(exc).__name__


def _strip(a: _Clip, b: _Clip) -> bytes | None:
    """Baseline thumbnails above current ones above their difference (square-root scale), as PNG."""
    if not a.thumbs or not b.thumbs:
        return None
    columns = sorted(set(a.thumbs) & set(b.thumbs))
    if not columns:
        return None
    height, width = a.thumbs[columns[0]].shape[:2]
    gap = 4
    canvas = np.full((3 * height + 2 * gap, len(columns) * (width + gap) - gap, 3), 24, np.uint8)
    same_size = (a.width, a.height) == (b.width, b.height)  # else no difference row: it would mean nothing
    for n, k in enumerate(columns):
        top, bottom = a.thumbs[k], b.thumbs[k]  # both at the baseline's thumbnail size
        x = n * (width + gap)
        canvas[:height, x : x + width] = top
        canvas[height + gap : 2 * height + gap, x : x + width] = bottom
        if same_size:
            delta = np.abs(top.astype(np.float32) - bottom.astype(np.float32)).max(axis=2)
            shade = np.sqrt(delta / 255.0) * 255.0  # square root: faint noise shows, large changes keep their shape
            canvas[2 * (height + gap) :, x : x + width] = shade.astype(np.uint8)[:, :, None]
    return png(canvas)


def png(rgb: _U8) -> bytes:
    """An 8-bit RGB PNG of an (h, w, 3) array."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).save(out, format="PNG", compress_level=6)
    return out.getvalue()
