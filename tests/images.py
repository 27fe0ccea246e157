"""Real image files for tests, made with Pillow: distinct colour blocks a decoded frame can be
checked against, and the raw bytes of formats Pillow does not write (HEIC's header)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

# Four blocks of a 4:3 landscape, three stripes of a 2:3 portrait: far apart in every channel.
LANDSCAPE_BLOCKS = ((220, 30, 30), (30, 200, 40), (30, 40, 220), (240, 230, 30))
PORTRAIT_STRIPES = ((250, 250, 250), (200, 40, 200), (20, 20, 20))


def landscape(width: int = 640, height: int = 480) -> np.ndarray:
    """2x2 colour blocks."""
    pixels = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    for i, colour in enumerate(LANDSCAPE_BLOCKS):
        pixels[(i // 2) * h : (i // 2 + 1) * h, (i % 2) * w : (i % 2 + 1) * w] = colour
    return pixels


def portrait(width: int = 480, height: int = 720) -> np.ndarray:
    """Three horizontal stripes."""
    pixels = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(PORTRAIT_STRIPES):
        pixels[i * height // 3 : (i + 1) * height // 3] = colour
    return pixels


def encode(pixels: np.ndarray, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, **options)
    return out.getvalue()


def write(path: Path, pixels: np.ndarray, fmt: str, **options: object) -> Path:
    path.write_bytes(encode(pixels, fmt, **options))
    return path


def heic_header(*brands: bytes) -> bytes:
    """The start of an ISO-BMFF HEIF file: its `ftyp` box with major and compatible brands."""
    major, *compatible = brands
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + bytes(64)


def resized(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two RGB pictures of one size, in 0..255 levels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
