"""Deterministic fake text-to-video output: a picture drawn from the prompt and seed, with a
caption, whose bands of macroblock rows scroll cyclically while the caption band stays still.

`h264.py` encodes it (a tiny H.264 encoder and MP4 muxer; only numpy and the standard library).
An image-to-video task passes its start image as frame 0 (`first_frame`), uncaptioned.
"""

from __future__ import annotations

import colorsys
import hashlib
import itertools
import textwrap

import numpy as np
import numpy.typing as npt

from .h264 import Plan, encode_mp4

__all__ = ["preview_dimensions", "render_mp4"]

_U8 = npt.NDArray[np.uint8]
_F32 = npt.NDArray[np.float32]
_Rgb = tuple[float, float, float]

# 5x8 glyphs for ASCII 0x20..0x7E: 5 column bytes each, bit k = pixel row k.
_FONT_HEX = (
    "0000000000 00005f0000 0007000700 147f147f14 242a7f2a12 2313086462 3649562050"
    " 0000070000 001c224100 0041221c00 14083e0814 08083e0808 00a0600000 0808080808"
    " 0060600000 2010080402 3e5149453e 00427f4000 4261514946 2141454b31 1814127f10"
    " 2745454539 3c4a494930 0171090503 3649494936 064949291e 0036360000 0056360000"
    " 0814224100 1414141414 0041221408 0201510906 324979413e 7e1111117e 7f49494936"
    " 3e41414122 7f4141221c 7f49494941 7f09090901 3e4149497a 7f0808087f 00417f4100"
    " 2040413f01 7f08142241 7f40404040 7f020c027f 7f0408107f 3e4141413e 7f09090906"
    " 3e4151215e 7f09192946 4649494931 01017f0101 3f4040403f 1f2040201f 3f4038403f"
    " 6314081463 0708700807 6151494543 007f414100 0204081020 0041417f00 0402010204"
    " 4040404040 0001020400 2054545478 7f48444438 3844444420 384444487f 3854545418"
    " 087e090102 18a4a4a47c 7f08040478 00447d4000 4080807d00 7f10284400 00417f4000"
    " 7c04180478 7c08040478 3844444438 fc24242418 18242424fc 7c08040408 4854545424"
    " 043f444020 3c4040207c 1c2040201c 3c4030403c 4428102844 1ca0a0a07c 4464544c44"
    " 0008364100 00007f0000 0041360800 0804081008"
)
_COLS = np.frombuffer(bytes.fromhex(_FONT_HEX.replace(" ", "")), np.uint8).reshape(95, 5)
_GLYPHS = ((_COLS[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1).astype(bool)

_KR, _KB = 0.2126, 0.0722  # BT.709, limited range (signalled in the VUI)
_LUMA = np.array([_KR, 1.0 - _KR - _KB, _KB], np.float32)


class _Rand:
    """Deterministic uniform floats from a key (sha256 counter mode)."""

    def __init__(self, key: bytes) -> None:
        self._key, self._buf, self._n = key, b"", 0

    def unit(self) -> float:
        if len(self._buf) < 4:
            self._buf += hashlib.sha256(self._key + self._n.to_bytes(4, "big")).digest()
            self._n += 1
        value, self._buf = int.from_bytes(self._buf[:4], "big"), self._buf[4:]
        return value / 2**32

    def pick(self, n: int) -> int:
        return min(n - 1, int(self.unit() * n))

    def color(self, hue: float, sat: float, val: float) -> _Rgb:
        return colorsys.hsv_to_rgb(hue % 1.0, sat, val)


def preview_dimensions(width: int, height: int) -> tuple[int, int]:
    """Cheaper 'preview' size for load tests: about 1/8 of each side, even, at least 32x32."""
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    return max(32, (width + 8) // 16 * 2), max(32, (height + 8) // 16 * 2)


def render_mp4(
    *,
    width: int,
    height: int,
    num_frames: int,
    fps: int,
    prompt: str,
    seed: str,
    label: str = "",
    variant: str = "",
    first_frame: _F32 | None = None,
) -> bytes:
    """Deterministic: same arguments -> identical bytes.

    `variant` stands for another model version's output: "" the picture of prompt and seed,
    "noise:TAG" that picture with faint pixel noise (a re-encode), "redraw:TAG" another, darker
    picture under the same caption; TAG draws the noise or the picture. `first_frame` (RGB floats
    in 0..1, shaped height x width x 3) replaces the drawn picture, as an image-to-video model
    starts from its image: frame 0 shows it, with no caption (a variant then applies to it).
    """
    plan = _make_plan(width, height, num_frames, fps, prompt, seed, label, captioned=first_frame is None)
    kind, _, tag = variant.partition(":")
    if kind not in ("", "noise", "redraw"):
        raise ValueError(f"variant must be '', 'noise:TAG' or 'redraw:TAG', got {variant!r}")
    y, u, v = _render_yuv(plan, prompt, seed, first_frame)
    if kind == "redraw":
        y, u, v = _redrawn(plan, prompt, seed, tag, y)
    elif kind == "noise":
        y, u, v = _noisy(y, u, v, tag)
    return encode_mp4(plan, num_frames, fps, y, u, v)


# ----------------------------------------------------------------- layout


def _make_plan(
    width: int, height: int, num_frames: int, fps: int, prompt: str, seed: str, label: str, *, captioned: bool = True
) -> Plan:
    for name, value in (("width", width), ("height", height)):
        if value < 16 or value % 2:
            raise ValueError(f"{name} must be an even integer >= 16, got {value}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    wm, hm = (width + 15) // 16, (height + 15) // 16
    if wm * hm > 139264:
        raise ValueError(f"{width}x{height} is too large for H.264")
    scale = max(1, min(width, height) // 240)
    pad, lh = 3 * scale, 10 * scale
    cols = (width - 2 * pad) // (6 * scale)
    lines: tuple[str, ...] = ()
    text_rows = n_prompt = 0
    if captioned and cols >= 8 and hm >= 2:
        extras = [_fit("seed " + seed, cols)] + ([_fit(label, cols)] if label else [])

        def wrap(n: int) -> list[str]:
            text = " ".join(_ascii(prompt[:4000]).split())
            return textwrap.wrap(text, cols, max_lines=n, placeholder="...") if n else []

        wanted = len(wrap(3)) + len(extras)
        rows, fit = 0, 0
        while rows < hm // 2 and fit < wanted:
            rows += 1
            fit = (height - (hm - rows) * 16 - 2 * pad) // lh
        if fit >= 1:
            text_rows = rows
            prompt_lines = wrap(min(3, max(0, fit - len(extras))))
            lines = tuple((prompt_lines + extras)[:fit])
            n_prompt = len(prompt_lines)
    rand = _Rand(_key(prompt, seed) + b"motion")
    moving = hm - text_rows
    cuts = [0, moving // 2, moving] if moving >= 2 else [0, moving]
    bands = []
    for r0, r1 in itertools.pairwise(cuts):
        speed = 1 + rand.pick(2)
        bands.append((r0, r1, speed if rand.unit() < 0.5 else -speed))
    return Plan(width, height, wm, hm, scale, lines, n_prompt, text_rows, tuple(bands))


def _ascii(text: str) -> str:
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


def _fit(text: str, cols: int) -> str:
    text = _ascii(text[:1000])
    return text if len(text) <= cols else text[: cols - 3] + "..."


def _key(prompt: str, seed: str) -> bytes:
    return hashlib.sha256(b"wiro-video\0" + prompt.encode() + b"\0" + seed.encode()).digest()


# ----------------------------------------------------------------- picture


def _render_rgb(plan: Plan, prompt: str, seed: str) -> _F32:
    """The picture of frame 0 at coded size, RGB floats in 0..1."""
    hc, wc = plan.hm * 16, plan.wm * 16
    rand = _Rand(_key(prompt, seed))
    hue = rand.unit()
    c0 = np.array(rand.color(hue, 0.5 + 0.4 * rand.unit(), 0.3 + 0.25 * rand.unit()), np.float32)
    accent = rand.color(hue + 0.2 + 0.6 * rand.unit(), 0.45 + 0.4 * rand.unit(), 0.8 + 0.2 * rand.unit())
    c1 = np.array(accent, np.float32)
    ys = (np.arange(hc, dtype=np.float32) / hc)[:, None]
    xs = (np.arange(wc, dtype=np.float32) / wc)[None, :]
    t = 0.7 * ys + 0.3 * (0.5 + 0.5 * np.sin(2 * np.pi * (xs + rand.unit())))
    img: _F32 = c0 + t[:, :, None] * (c1 - c0)
    for r0, r1, _ in plan.bands:
        y0, y1 = r0 * 16, r1 * 16
        band = img[y0:y1]
        # Stripes periodic over the coded width, so the cyclic scroll has no seam.
        k = max(1, round(wc / (40 + 60 * rand.unit())))
        slope = (rand.unit() - 0.5) * 2.0 * k / wc
        yy = np.arange(y0, y1, dtype=np.float32)[:, None]
        f = np.sin(2 * np.pi * (k * xs + slope * yy))
        alpha = (np.clip(f * 3.0, 0.0, 1.0) * 0.4)[:, :, None]
        stripe = np.array(rand.color(hue + rand.unit(), 0.6, 0.95), np.float32)
        band += alpha * (stripe - band)
        for _ in range(max(2, wc // 120)):
            shade = rand.color(rand.unit(), 0.55 + 0.4 * rand.unit(), 0.6 + 0.4 * rand.unit())
            _blob(band, rand.unit() * wc, rand.unit() * (y1 - y0), rand, shade)
    if plan.text_rows:
        _caption(img, plan, accent)
    return img


def _coded(image: _F32, plan: Plan) -> _F32:
    """A given picture at coded size: its edge repeated into the padding past the visible frame."""
    if image.shape != (plan.height, plan.width, 3):
        raise ValueError(f"first_frame must be {plan.height}x{plan.width}x3 RGB, got shape {image.shape}")
    pad = ((0, plan.hm * 16 - plan.height), (0, plan.wm * 16 - plan.width), (0, 0))
    return np.pad(np.clip(image, 0.0, 1.0).astype(np.float32), pad, mode="edge")


def _blob(band: _F32, cx: float, cy: float, rand: _Rand, shade: _Rgb) -> None:
    """Anti-aliased disc or square, wrapping around horizontally."""
    bh, wc = band.shape[0], band.shape[1]
    r = min(bh, wc / 3) * (0.15 + 0.3 * rand.unit())
    square = rand.unit() < 0.4
    rows = np.arange(max(0, int(cy - r - 1)), min(bh, int(cy + r + 2)))
    xs = np.arange(int(cx - r - 1), int(cx + r + 2))
    xs = np.unique(xs % wc) if xs.size >= wc else xs % wc
    dx = np.abs((xs - cx + wc / 2) % wc - wc / 2)[None, :]
    dy = np.abs(rows - cy)[:, None]
    dist = np.maximum(dx, dy) if square else np.sqrt(dx * dx + dy * dy)
    alpha = np.clip(r - dist + 0.5, 0.0, 1.0).astype(np.float32)[:, :, None] * 0.9
    sel = np.ix_(rows, xs)
    band[sel] += alpha * (np.array(shade, np.float32) - band[sel])


def _caption(img: _F32, plan: Plan, accent: _Rgb) -> None:
    """Dark static band with the prompt, seed and label text."""
    s = plan.scale
    y0 = (plan.hm - plan.text_rows) * 16
    img[y0:] = img[y0:] * 0.22 + 0.04
    img[y0 : y0 + s] = accent
    y = y0 + 3 * s + max(0, (plan.height - y0 - 6 * s - 10 * s * len(plan.lines)) // 2)
    for i, line in enumerate(plan.lines):
        color = (0.95, 0.95, 0.92) if i < plan.n_prompt else accent
        mask = _text_mask(line, s)
        h, w = mask.shape
        x = 3 * s
        img[y + s : y + s + h, x + s : x + s + w][mask] = (0.0, 0.0, 0.0)  # shadow
        img[y : y + h, x : x + w][mask] = color
        y += 10 * s


def _text_mask(line: str, scale: int) -> npt.NDArray[np.bool_]:
    idx = np.frombuffer(line.encode("ascii"), np.uint8).astype(np.intp) - 32
    cells = np.zeros((idx.size, 8, 6), bool)
    cells[:, :, :5] = _GLYPHS[idx]
    mask = cells.transpose(1, 0, 2).reshape(8, idx.size * 6)[:, :-1]
    return mask.repeat(scale, axis=0).repeat(scale, axis=1)


def _render_yuv(plan: Plan, prompt: str, seed: str, image: _F32 | None = None) -> tuple[_U8, _U8, _U8]:
    """Frame 0 as 8-bit 4:2:0 planes (coded size, BT.709 limited range)."""
    rgb = _render_rgb(plan, prompt, seed) if image is None else _coded(image, plan)
    y = np.clip(np.rint(16.0 + 219.0 * (rgb @ _LUMA)), 16, 235).astype(np.uint8)
    half = (rgb[0::2, 0::2] + rgb[1::2, 0::2] + rgb[0::2, 1::2] + rgb[1::2, 1::2]) * 0.25
    hl = half @ _LUMA
    u = 128.0 + 224.0 * (half[:, :, 2] - hl) / (2.0 * (1.0 - _KB))
    v = 128.0 + 224.0 * (half[:, :, 0] - hl) / (2.0 * (1.0 - _KR))
    u8 = np.clip(np.rint(u), 16, 240).astype(np.uint8)
    v8 = np.clip(np.rint(v), 16, 240).astype(np.uint8)
    return y, u8, v8


def _redrawn(plan: Plan, prompt: str, seed: str, tag: str, y: _U8) -> tuple[_U8, _U8, _U8]:
    """Another draw, in the other light from `y`: two draws share a dark-to-light gradient, so
    alone they may look alike; a light picture redrawn dark (or a dark one light) never does."""
    y2, u, v = _render_yuv(plan, prompt, seed + "\0" + tag)
    rows = (plan.hm - plan.text_rows) * 16
    moving = y2[:rows].astype(np.uint16)
    if y[:rows].mean() > 125:
        y2[:rows] = 16 + (moving - 16) * 7 // 20
    else:
        y2[:rows] = 235 - (235 - moving) * 7 // 20
    return y2, u, v


def _noisy(y: _U8, u: _U8, v: _U8, tag: str) -> tuple[_U8, _U8, _U8]:
    """The planes with uniform noise of at most 2 levels added, drawn from `tag`."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(b"noise\0" + tag.encode()).digest()[:8], "big"))
    planes = []
    for plane, top in ((y, 235), (u, 240), (v, 240)):
        noise = rng.integers(-2, 3, plane.shape, dtype=np.int16)
        planes.append(np.clip(plane.astype(np.int16) + noise, 16, top).astype(np.uint8))
    return planes[0], planes[1], planes[2]
