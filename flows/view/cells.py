"""How the report shows a manifest's values: text, money, seconds, statuses, aspect ratios.
Each takes whatever a manifest cell may hold (None, NaN, pd.NA, text) and never raises."""

from __future__ import annotations

import math
import os
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import pandas as pd

STATUS_ORDER = ("succeeded", "failed", "timed_out", "cancelled", "skipped", "not_started", "running", "pending")


def by_status(counts: dict[str, int]) -> list[tuple[str, int]]:
    known = [(s, counts[s]) for s in STATUS_ORDER if counts.get(s)]
    return known + sorted((s, n) for s, n in counts.items() if s not in STATUS_ORDER and n)


def status_label(status: str) -> str:
    return status.replace("_", " ")


def status_slug(status: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", status.lower()) or "unknown"


def shorten(value: str, limit: int = 70) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def aspect_ratio(size: str) -> str:
    match = re.fullmatch(r"\s*(\d+)\s*[*x×]\s*(\d+)\s*", size)
    return f"{match[1]} / {match[2]}" if match and int(match[1]) and int(match[2]) else "16 / 9"


def as_decimal(value: Any) -> Decimal:
    if cell_text(value) == "":
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def as_float(value: Any) -> float | None:
    try:
        return float(cell_text(value))
    except ValueError:
        return None


def show_money(value: Decimal) -> str:
    if not value:
        return "$0"
    return f"${value:.6f}" if abs(value) < Decimal("0.0001") else f"${value:.4f}"


def show_seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def cell_text(value: Any) -> str:
    """A manifest value as the text that keys, filters and shows it (5.0 -> '5', missing -> '')."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def frame_ratio(record: dict[str, Any]) -> str:
    """An image-to-video row's asked-for aspect ratio: its width and height, when neither follows the image."""
    width, height = as_float(record.get("width")), as_float(record.get("height"))
    return f"{width:g} / {height:g}" if width and height else ""


def href(path: str) -> str:
    """A path under OUT as a link relative to OUT."""
    return quote(path.replace(os.sep, "/"))


def clip_length(record: dict[str, Any]) -> str:
    """The clip's length (numFrames / fps), shown on the poster until the controls are."""
    frames, fps = as_float(record.get("numFrames")), as_float(record.get("fps"))
    return f"{frames / fps:.1f} s" if frames and fps else ""
