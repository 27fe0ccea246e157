"""The compare page's frame strips are PNGs that any viewer reads back pixel for pixel."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from flows.view.videodiff import png


def test_a_strip_png_holds_exactly_the_pixels_it_was_given() -> None:
    pixels = np.random.default_rng(7).integers(0, 256, (37, 61, 3), dtype=np.uint8)
    data = png(pixels[:, ::-1])  # a strided view, as slices of the strip canvas are
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (61, 37))
        assert np.array_equal(np.asarray(image), pixels[:, ::-1])
