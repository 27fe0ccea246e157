"""Decoding MP4s with FFmpeg (through PyAV), strictly: any decoder complaint is reported."""

from __future__ import annotations

import io
from typing import Any

import av
import av.logging
import numpy as np


def decode_mp4(data: bytes) -> tuple[list[np.ndarray], Any, list[tuple[int, str, str]]]:
    """Luma planes of all frames, the stream, and any FFmpeg warnings or errors."""
    av.logging.set_level(av.logging.WARNING)
    try:
        # local=False: FFmpeg decodes (and logs) in its own threads.
        with av.logging.Capture(local=False) as logs, av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            stream.codec_context.options = {"err_detect": "careful+bitstream+explode"}
            lumas = [f.to_ndarray(format="yuv420p")[: f.height] for f in container.decode(stream)]
    finally:
        av.logging.set_level(None)
    return lumas, stream, [log for log in logs if log[0] <= av.logging.WARNING]
