"""Decoding MP4s with FFmpeg (through PyAV), strictly: any decoder complaint is reported."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import av.logging
import numpy as np


@dataclass(frozen=True)
class StreamInfo:
    """What the container says of its video stream, read while it is open: PyAV's stream object
    points into memory FFmpeg frees when the container closes."""

    codec: str
    width: int
    height: int
    average_rate: Fraction | None
    seconds: float


def decode_mp4(data: bytes) -> tuple[list[np.ndarray], StreamInfo, list[tuple[int, str, str]]]:
    """Luma planes of all frames, the stream's properties, and any FFmpeg warnings or errors."""
    av.logging.set_level(av.logging.WARNING)
    try:
        # local=False: FFmpeg decodes (and logs) in its own threads.
        with av.logging.Capture(local=False) as logs, av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            stream.codec_context.options = {"err_detect": "careful+bitstream+explode"}
            lumas = [f.to_ndarray(format="yuv420p")[: f.height] for f in container.decode(stream)]
            duration = stream.duration * stream.time_base if stream.duration and stream.time_base else 0
            info = StreamInfo(
                codec=stream.codec_context.name,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                average_rate=stream.average_rate,
                seconds=float(duration),
            )
    finally:
        av.logging.set_level(None)
    return lumas, info, [log for log in logs if log[0] <= av.logging.WARNING]


def first_frame_rgb(data: bytes) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """Frame 0 as RGB (FFmpeg's conversion of the stream's colours), and any decoder complaints."""
    av.logging.set_level(av.logging.WARNING)
    try:
        with av.logging.Capture(local=False) as logs, av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            stream.codec_context.options = {"err_detect": "careful+bitstream+explode"}
            rgb = next(container.decode(stream)).to_ndarray(format="rgb24")
    finally:
        av.logging.set_level(None)
    return rgb, [log for log in logs if log[0] <= av.logging.WARNING]
