"""Tests for the hand-written H.264/MP4 renderer, decoded with PyAV (FFmpeg)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from wiro_tasks.emulator.video import (
    _make_plan,
    _render_yuv,
    preview_dimensions,
    render_mp4,
)

from .mp4 import decode_mp4 as _decode

PROMPT = "A red fox jumping over a lazy dog in a misty forest at dawn, cinematic"


def _args(**over: Any) -> dict[str, Any]:
    args = {"width": 832, "height": 480, "num_frames": 121, "fps": 16, "prompt": PROMPT, "seed": "42"}
    return {**args, "label": "test", **over}


def _expected_luma(args: dict[str, Any], frame: int) -> np.ndarray:
    """What frame `frame` should show: frame 0 with each band rolled cyclically."""
    plan = _make_plan(
        args["width"], args["height"], args["num_frames"], args["fps"], args["prompt"],
        args["seed"], args["label"],
    )  # fmt: skip
    y = _render_yuv(plan, args["prompt"], args["seed"])[0].copy()
    for r0, r1, v in plan.bands:
        y[r0 * 16 : r1 * 16] = np.roll(y[r0 * 16 : r1 * 16], -16 * v * frame, axis=1)
    return y[: args["height"], : args["width"]]


@pytest.fixture(scope="module")
def main_video() -> tuple[bytes, list[np.ndarray], Any, list[tuple[int, str, str]]]:
    data = render_mp4(**_args())
    return (data, *_decode(data))


def test_main_video_decodes_cleanly(main_video: Any) -> None:
    data, lumas, stream, logs = main_video
    assert data[4:8] == b"ftyp"
    assert data.index(b"moov") < data.index(b"mdat")  # faststart
    assert logs == []
    assert len(lumas) == 121
    assert stream.codec == "h264"
    assert (stream.width, stream.height) == (832, 480)
    assert lumas[0].shape == (480, 832)
    assert stream.average_rate == 16
    assert abs(stream.seconds - Fraction(121, 16)) < 1 / 16


def test_first_frame_is_lossless(main_video: Any) -> None:
    lumas = main_video[1]
    diff = np.abs(lumas[0].astype(int) - _expected_luma(_args(), 0).astype(int))
    assert diff.mean() < 0.01


def test_bands_scroll_and_caption_stays(main_video: Any) -> None:
    lumas = main_video[1]
    plan = _make_plan(832, 480, 121, 16, PROMPT, "42", "test")
    assert plan.text_rows > 0
    assert plan.lines
    assert len(plan.bands) == 2
    moving = slice(0, plan.bands[-1][1] * 16)
    static = slice(plan.bands[-1][1] * 16, 480)
    assert not np.array_equal(lumas[1][moving], lumas[0][moving])
    for k in (1, 7, 60, 120):
        assert np.array_equal(lumas[k], _expected_luma(_args(), k))
        assert np.array_equal(lumas[k][static], lumas[0][static])
    # Every band advances a whole number of macroblocks per frame: back home after wm frames.
    assert np.array_equal(lumas[plan.wm], lumas[0])


@pytest.mark.parametrize(
    ("width", "height", "frames"),
    [(480, 832, 6), (104, 60, 12), (32, 32, 3), (16, 16, 2), (18, 34, 3)],
)
def test_other_sizes(width: int, height: int, frames: int) -> None:
    args = _args(width=width, height=height, num_frames=frames, fps=24)
    lumas, stream, logs = _decode(render_mp4(**args))
    assert logs == []
    assert len(lumas) == frames
    assert (stream.width, stream.height) == (width, height)
    assert stream.average_rate == 24
    for k in range(frames):
        assert np.array_equal(lumas[k], _expected_luma(args, k))


def test_preview_size() -> None:
    assert preview_dimensions(832, 480) == (104, 60)
    assert preview_dimensions(480, 832) == (60, 104)
    assert preview_dimensions(100, 50) == (32, 32)
    w, h = preview_dimensions(1280, 720)
    assert (w, h) == (160, 90)
    lumas, stream, logs = _decode(render_mp4(**_args(width=w, height=h, num_frames=33)))
    assert logs == []
    assert len(lumas) == 33
    assert (stream.width, stream.height) == (w, h)
    assert abs(stream.seconds - 33 / 16) < 1 / 16
    with pytest.raises(ValueError, match="positive"):
        preview_dimensions(0, 10)


def test_deterministic_and_content_varies() -> None:
    small = _args(width=160, height=96, num_frames=2)
    assert render_mp4(**small) == render_mp4(**small)
    first = _decode(render_mp4(**small))[0][0]
    for other in ({"seed": "43"}, {"prompt": "A blue whale"}, {"label": "other"}):
        frame = _decode(render_mp4(**{**small, **other}))[0][0]
        assert np.abs(frame.astype(int) - first.astype(int)).mean() > 0.5


def test_single_frame_and_long_unicode_prompt() -> None:
    args = _args(width=64, height=64, num_frames=1, prompt="snow \u2603 " * 200, label="\u00e9")
    lumas, _, logs = _decode(render_mp4(**args))
    assert logs == []
    assert len(lumas) == 1
    assert np.array_equal(lumas[0], _expected_luma(args, 0))


@pytest.mark.parametrize(
    "bad",
    [
        {"width": 15},
        {"width": 833},
        {"height": 0},
        {"height": 481},
        {"num_frames": 0},
        {"fps": 0},
    ],
)
def test_bad_arguments(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
        render_mp4(**_args(**bad))
