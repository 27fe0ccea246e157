"""The emulator's tiny H.264 encoder and MP4 muxer (`video.py` draws the pictures).

Frame 0 is an IDR picture made only of I_PCM macroblocks (raw samples: lossless,
no transform or entropy coder needed). Every later frame is a P picture of
P_L0_16x16 macroblocks with whole-macroblock motion vectors and no residual, so
bands of macroblock rows scroll cyclically while the caption band stays still.
All P pictures share one motion field, so their slice data is built once. The
stream is H.264 Constrained Baseline (CAVLC, deblocking off) inside a
"faststart" MP4 (moov before mdat). Only numpy and the standard library are used.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

_U8 = npt.NDArray[np.uint8]
_EPB = re.compile(rb"\x00\x00(?=[\x00-\x03])")


@dataclass(frozen=True)
class Plan:
    """Geometry of one video: macroblock grid, caption and scrolling bands."""

    width: int
    height: int
    wm: int  # width in macroblocks
    hm: int  # height in macroblocks
    scale: int  # font scale
    lines: tuple[str, ...]  # caption lines
    n_prompt: int  # how many of them hold the prompt
    text_rows: int  # static macroblock rows at the bottom
    bands: tuple[tuple[int, int, int], ...]  # (first row, end row, MBs per frame)


def encode_mp4(plan: Plan, num_frames: int, fps: int, y: _U8, u: _U8, v: _U8) -> bytes:
    """The MP4 of `num_frames` frames at `fps`: frame 0 the picture (y, u, v planes, 4:2:0, padded
    to whole macroblocks), each later one it with `plan`'s bands scrolled one step further."""
    sps, pps = _sps(plan, num_frames, fps), _pps()
    log2_fn = _log2_max_frame_num(num_frames)
    nals = [_idr_slice(y, u, v, log2_fn)]
    if num_frames > 1:
        data = _p_slice_data(plan)
        for i in range(1, num_frames):
            nals.append(_p_slice(i % (1 << log2_fn), log2_fn, data))
    return _mp4(plan, fps, sps, pps, nals)


# ----------------------------------------------------------------- H.264


@lru_cache(maxsize=4096)
def _ue(n: int) -> str:
    bits = format(n + 1, "b")
    return "0" * (len(bits) - 1) + bits


def _se(n: int) -> str:
    return _ue(2 * n - 1 if n > 0 else -2 * n)


def _u(n: int, width: int) -> str:
    return format(n, f"0{width}b")


def _rbsp(bits: str) -> bytes:
    """Append rbsp_trailing_bits and pack."""
    bits += "1" + "0" * (-(len(bits) + 1) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def _nal(header: int, rbsp: bytes) -> bytes:
    """NAL unit with emulation prevention bytes."""
    payload = _EPB.sub(b"\x00\x00\x03", rbsp)
    return bytes([header]) + (payload + b"\x03" if payload.endswith(b"\x00") else payload)


def _log2_max_frame_num(num_frames: int) -> int:
    return min(16, max(4, math.ceil(math.log2(num_frames))))


def _level(plan: Plan) -> int:
    mbs = plan.wm * plan.hm
    return 40 if mbs <= 8192 else 51 if mbs <= 36864 else 60


def _sps(plan: Plan, num_frames: int, fps: int) -> bytes:
    crop_r, crop_b = (plan.wm * 16 - plan.width) // 2, (plan.hm * 16 - plan.height) // 2
    bits = [
        _u(66, 8),  # profile_idc: Baseline
        "11000000",  # constraint_set0/1 (Constrained Baseline)
        _u(_level(plan), 8),
        _ue(0),  # seq_parameter_set_id
        _ue(_log2_max_frame_num(num_frames) - 4),
        _ue(2),  # pic_order_cnt_type
        _ue(1),  # max_num_ref_frames
        "0",  # gaps_in_frame_num_value_allowed_flag
        _ue(plan.wm - 1),
        _ue(plan.hm - 1),
        "1",  # frame_mbs_only_flag
        "1",  # direct_8x8_inference_flag
    ]
    if crop_r or crop_b:
        bits += ["1", _ue(0), _ue(crop_r), _ue(0), _ue(crop_b)]
    else:
        bits.append("0")
    bits += [
        "1",  # vui_parameters_present_flag
        "00",  # aspect_ratio_info, overscan_info
        "1" + "101" + "0" + "1" + _u(1, 8) * 3,  # video format 5, limited range, BT.709
        "0",  # chroma_loc_info_present_flag
        "1" + _u(1, 32) + _u(2 * fps, 32) + "1",  # timing: fps, fixed frame rate
        "00",  # nal/vcl hrd
        "0",  # pic_struct_present_flag
        "1" + "1" + _ue(0) + _ue(0) + _ue(15) + _ue(15) + _ue(0) + _ue(1),  # no reordering
    ]
    return _nal(0x67, _rbsp("".join(bits)))


def _pps() -> bytes:
    bits = "1" + "1" + "0" + "0" + "1" + "1" + "1" + "0" + "00" + "1" + "1" + "1" + "1" + "0" + "0"
    return _nal(0x68, _rbsp(bits))


def _idr_slice(y: _U8, u: _U8, v: _U8, log2_fn: int) -> bytes:
    """IDR I slice: every macroblock I_PCM."""
    hm, wm = y.shape[0] // 16, y.shape[1] // 16
    n = hm * wm
    mbs = np.empty((n, 386), np.uint8)
    mbs[:, 0], mbs[:, 1] = 0x0D, 0x00  # ue(25) = I_PCM, then alignment zero bits
    mbs[:, 2:258] = y.reshape(hm, 16, wm, 16).transpose(0, 2, 1, 3).reshape(n, 256)
    mbs[:, 258:322] = u.reshape(hm, 8, wm, 8).transpose(0, 2, 1, 3).reshape(n, 64)
    mbs[:, 322:] = v.reshape(hm, 8, wm, 8).transpose(0, 2, 1, 3).reshape(n, 64)
    # first_mb, slice_type 7, pps, frame_num, idr_pic_id, marking, qp delta, no deblock
    head = "1" + _ue(7) + "1" + _u(0, log2_fn) + _ue(0) + "00" + _se(0) + _ue(1) + _ue(25)
    head += "0" * (-len(head) % 8)
    rbsp = int(head, 2).to_bytes(len(head) // 8, "big") + mbs.tobytes()[2:] + b"\x80"
    return _nal(0x65, rbsp)


def _mv_pred(mvs: list[list[int]], r: int, c: int) -> tuple[int, int]:
    """Median luma MV prediction (8.4.1.3) for a 16x16 partition, all refIdx 0.

    mvs holds horizontal MVs only (vertical is always 0 here), so the result's y is 0.
    """
    wm = len(mvs[0])

    def at(rr: int, cc: int) -> int | None:
        return mvs[rr][cc] if rr >= 0 and 0 <= cc < wm else None

    a, b, cc, d = at(r, c - 1), at(r - 1, c), at(r - 1, c + 1), at(r - 1, c - 1)
    if cc is None:
        cc = d
    if b is None and cc is None and a is not None:
        b = cc = a
    neigh = [a, b, cc]
    avail = [m for m in neigh if m is not None]
    if len(avail) == 1:  # only one neighbour has refIdx equal to 0
        return avail[0], 0
    xs = sorted(m if m is not None else 0 for m in neigh)
    return xs[1], 0


def _p_slice_data(plan: Plan) -> str:
    """Slice data shared by all P pictures: P_L0_16x16, integer MB shifts, no residual."""
    wm = plan.wm
    speed = [0] * plan.hm
    for r0, r1, v in plan.bands:
        speed[r0:r1] = [v] * (r1 - r0)
    # Quarter-pel horizontal MVs: new[c] = old[(c + v) mod wm].
    mvs = [[((c + v) % wm - c) * 64 for c in range(wm)] for v in speed]
    parts = []
    for r in range(plan.hm):
        for c in range(wm):
            px, py = _mv_pred(mvs, r, c)
            # mb_skip_run 0, mb_type P_L0_16x16, mvd x/y, coded_block_pattern 0
            parts.append("11" + _se(mvs[r][c] - px) + _se(-py) + "1")
    return "".join(parts)


def _p_slice(frame_num: int, log2_fn: int, data: str) -> bytes:
    # first_mb, slice_type 5, pps, frame_num, no override, no list mod, sliding window
    head = "1" + _ue(5) + "1" + _u(frame_num, log2_fn) + "000" + _se(0) + _ue(1)
    return _nal(0x61, _rbsp(head + data))


# ----------------------------------------------------------------- MP4


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, flags: int, *parts: bytes) -> bytes:
    """Full box with version 0."""
    return _box(kind, struct.pack(">I", flags), *parts)


def _sized(nal: bytes) -> bytes:
    return struct.pack(">H", len(nal)) + nal


_MATRIX = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _mp4(plan: Plan, fps: int, sps: bytes, pps: bytes, nals: list[bytes]) -> bytes:
    timescale, delta, n = fps * 1000, 1000, len(nals)  # exact integer sample durations
    duration, w, h = n * delta, plan.width, plan.height
    # avcC: version 1, profile/compat/level from the SPS, 4-byte lengths, one SPS, one PPS.
    avcc = _box(b"avcC", bytes([1, *sps[1:4], 0xFF, 0xE1]), _sized(sps), b"\x01", _sized(pps))
    name = b"wiro emulator"
    avc1 = _box(
        b"avc1",
        bytes(6) + struct.pack(">H", 1) + bytes(16) + struct.pack(">HHII", w, h, 0x480000, 0x480000),
        struct.pack(">IHB", 0, 1, len(name)) + name.ljust(31, b"\0") + struct.pack(">Hh", 0x18, -1),
        avcc,
    )
    sizes = np.array([4 + len(nal) for nal in nals], dtype=">u4").tobytes()
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, struct.pack(">I", 1), avc1),
        _full(b"stts", 0, struct.pack(">III", 1, n, delta)),
        _full(b"stss", 0, struct.pack(">II", 1, 1)),  # only the IDR frame is a sync sample
        _full(b"stsc", 0, struct.pack(">IIII", 1, 1, n, 1)),  # one chunk holds every sample
        _full(b"stsz", 0, struct.pack(">II", 0, n), sizes),
        _full(b"stco", 0, struct.pack(">II", 1, 0)),  # chunk offset, patched below
    )
    dinf = _box(b"dinf", _full(b"dref", 0, struct.pack(">I", 1), _full(b"url ", 1)))
    minf = _box(b"minf", _full(b"vmhd", 1, bytes(8)), dinf, stbl)
    mdhd = _full(b"mdhd", 0, struct.pack(">IIIIHH", 0, 0, timescale, duration, 0x55C4, 0))  # 'und'
    hdlr = _full(b"hdlr", 0, bytes(4), b"vide", bytes(12), b"VideoHandler\0")
    tkhd = _full(b"tkhd", 3, struct.pack(">5I16x", 0, 0, 1, 0, duration), _MATRIX, struct.pack(">II", w << 16, h << 16))
    mvhd = struct.pack(">IIIIiH10x", 0, 0, timescale, duration, 0x10000, 0x100)
    mvhd = _full(b"mvhd", 0, mvhd, _MATRIX, struct.pack(">24xI", 2))  # next track id 2
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    moov = _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf)))
    # Faststart: moov first. stco is the last box in moov; point it past the mdat header.
    moov = moov[:-4] + struct.pack(">I", len(ftyp) + len(moov) + 8)
    payload = b"".join(struct.pack(">I", len(nal)) + nal for nal in nals)
    if 8 + len(payload) >= 2**32:
        raise ValueError("video too large for a 32-bit mdat box")
    return ftyp + moov + struct.pack(">I", 8 + len(payload)) + b"mdat" + payload
