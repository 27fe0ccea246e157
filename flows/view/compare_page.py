"""CURRENT/compare.html: regressions first, then visual changes, each row's two videos side by side.

`build_page` renders `templates/compare.html.j2` (Jinja2, autoescaped: every value from the
manifests is escaped) with its CSS and script inlined, so the page needs no network. Videos
are relative links: CURRENT's own under `videos/`, BASELINE's linked into `CURRENT/compare/
baseline/` by `write_comparison`, so CURRENT can be copied anywhere and still play both sides.
An image-to-video row shows its start image beside its two videos: the thumbnail either OUT made,
linked into `CURRENT/compare/thumbs/`, else the image's http(s) URL. Cards are made for the rows
to look at only; "Every row" holds its first `ROWS_PAGE` rows as HTML and all of them as compact
JSON, which compare.js shows a page at a time, so a compare of 100,000 rows opens as fast as one
of 1,000. A card's videos load when it nears the screen.
"""

from __future__ import annotations

import os
import shutil
import threading
from functools import cache
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import jinja2
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from flows.grid import BASIC_INPUTS
from flows.store.manifest import atomic_write, atomic_write_text, money_text
from flows.store.thumbnails import ONE_MODEL, THUMBS, image_label, is_sha256, thumbnail_path, web_url
from flows.store.thumbnails import text as _str
from flows.view.compare import ASSETS, COLUMNS, COMPARE_CSV, COMPARE_HTML, COMPARE_PARQUET, Comparison, video
from flows.view.pages import Strings

CARDS = (  # sections of cards, in the order a reader wants them
    ("regressions", "Regressions", lambda r: bool(r["regressed"]) or r["change"] == "gone"),
    ("changes", "Visual changes", lambda r: not r["regressed"] and r["change"] == "changed"),
    ("undecodable", "Could not compare", lambda r: not r["regressed"] and r["change"] == "undecodable"),
    ("fixed", "Fixed and new", lambda r: r["change"] in ("fixed", "new")),
)
ROWS_PAGE = 200  # rows of "Every row" shown at once
LINE = ("change", "label", "row_id", "prompt", "inputs", "status", "psnr", "cost", "elapsed", "note")  # its JSON
LABELS = {"regressed": "regressed", "gone": "gone", "undecodable": "undecodable", "changed": "changed",
          "fixed": "fixed", "new": "new", "not_started": "not started", "failing": "still failing",
          "similar": "looks the same", "identical": "identical"}  # fmt: skip


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("flows.view", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def shown_videos(comparison: Comparison) -> dict[str, Path]:
    """BASELINE's video of every row the page shows with its videos: row_id -> file."""
    shown = {}
    for row in _card_rows(comparison.rows):
        path = video(comparison.baseline, _str(row["output_path_baseline"]))
        if row["status_baseline"] == "succeeded" and path is not None:
            shown[row["row_id"]] = path
    return shown


def shown_thumbnails(comparison: Comparison) -> dict[str, Path]:
    """The start-image thumbnail of every card the page shows, from CURRENT or else BASELINE: sha256 -> file."""
    shown: dict[str, Path] = {}
    for row in _card_rows(comparison.rows):
        sha = _str(row["input_image_sha256"])
        if is_sha256(sha) and sha not in shown:
            found = [p for o in (comparison.current, comparison.baseline) if (p := thumbnail_path(o, sha)).is_file()]
            if found:
                shown[sha] = found[0]
    return shown


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], rows.to_dict("records"))


def _card_rows(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows the page shows as cards (any of CARDS'), picked by column before any row is made a dict."""
    may = rows["regressed"] | rows["change"].isin(("gone", "changed", "undecodable", "fixed", "new"))
    return [r for r in _records(rows[may]) if any(pick(r) for _, _, pick in CARDS)]


def build_page(comparison: Comparison, baseline_videos: dict[str, Path], thumbnails: dict[str, Path]) -> str:
    """The whole page as one string; `baseline_videos` and `thumbnails` as `shown_videos` and
    `shown_thumbnails` give them."""
    env = _environment()
    rows = _records(comparison.rows)
    swept = _swept(comparison.rows)
    sections = []
    shown = _card_rows(comparison.rows)
    for key, title, pick in CARDS:
        cards = [_card(r, comparison, swept, r["row_id"] in baseline_videos, thumbnails) for r in shown if pick(r)]
        if cards:
            sections.append({"key": key, "title": title, "cards": cards})
    lines = [_line(r, swept) for r in rows]
    counts = comparison.counts
    totals = [("rows", len(rows)), ("regressed", comparison.regressed), ("fixed", counts["fixed"]),
              ("changed", counts["changed"]),
              ("unchanged", counts["similar"] + counts["identical"] + counts["failing"])]  # fmt: skip
    totals += [(k, counts[k]) for k in ("new", "gone", "undecodable", "not_started") if counts[k]]
    b, c = comparison.sides["baseline"], comparison.sides["current"]
    sides = [("succeeded", _n(b.counts.get("succeeded", 0)), _n(c.counts.get("succeeded", 0))),
             ("billed", f"${b.cost:.4f}", f"${c.cost:.4f}"),
             ("p50 elapsed", _seconds(b.p50), _seconds(c.p50)),
             ("p95 elapsed", _seconds(b.p95), _seconds(c.p95))]  # fmt: skip
    return env.get_template("compare.html.j2").render(
        title=f"wiro-sweep compare · {comparison.current.name}",
        baseline=str(comparison.baseline),
        current=str(comparison.current),
        message=comparison.message(),
        failed=comparison.failed,
        totals=totals,
        sides=sides,
        thresholds=comparison.thresholds,
        sections=sections,
        rows=lines[:ROWS_PAGE],
        every=_every(lines),
        swept=swept,
        css=_asset("compare.css"),
        sync=_asset("sync.js"),
        js=_asset("compare.js"),
    )


def _every(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Every row's line as compact JSON: each text once in `strings`, given by its index (the row id as it is)."""
    strings = Strings()
    rows = [[line["row_id"] if k == "row_id" else strings(str(line[k])) for k in LINE] for line in lines]
    return {"page": ROWS_PAGE, "rows": rows, "strings": strings.table}


def _swept(rows: pd.DataFrame) -> list[str]:
    """The inputs (but the prompt) that differ between rows; the image by its content or its URL."""

    def varies(name: str) -> bool:
        return bool(rows[name].map(_text).nunique() > 1)

    swept = [name for name in BASIC_INPUTS if name != "prompt" and varies(name)]
    swept += ["inputImage"] if varies("input_image_sha256") or varies("inputImageUrl") else []
    return swept + [name for name in ("width", "height") if varies(name)]


def _card(row: dict[str, Any], comparison: Comparison, swept: list[str], has_baseline: bool,
          thumbnails: dict[str, Path]) -> dict[str, Any]:  # fmt: skip
    current = _str(row["output_path_current"]) if row["status_current"] == "succeeded" else ""
    if current and video(comparison.current, current) is None:  # a link out of CURRENT: none at all
        current = ""
    strip = comparison.strips.get(row["row_id"])
    return {
        "row_id": row["row_id"],
        "prompt": row["prompt"],
        "inputs": _inputs(row, swept),
        "change": "regressed" if row["regressed"] else row["change"],
        "label": LABELS["regressed" if row["regressed"] else row["change"]],
        "note": row["note"],
        "psnr": "" if pd.isna(row["psnr_db"]) else f"{row['psnr_db']:.1f} dB",
        "same_size": "size " not in row["video_change"],
        "strip": f"{ASSETS}/{quote(row['row_id'])}.png" if strip else None,
        "start": _start(row, thumbnails),
        "sides": [
            _side("baseline", row, f"{ASSETS}/baseline/{quote(row['row_id'])}.mp4" if has_baseline else None),
            _side("current", row, quote(current) if current else None),
        ],
    }


def _start(row: dict[str, Any], thumbnails: dict[str, Path]) -> dict[str, str] | None:
    """The row's start image: its thumbnail under compare/thumbs/, else its http(s) URL; None for a text row."""
    sha = _str(row["input_image_sha256"])
    src = f"{ASSETS}/{THUMBS}/{sha}.jpg" if sha in thumbnails else web_url(_str(row["inputImageUrl"]))
    return {"src": src, "label": image_label(row)} if src else None


def _side(role: str, row: dict[str, Any], src: str | None) -> dict[str, Any]:
    status = _str(row[f"status_{role}"])
    return {
        "role": role,
        "status": status or "absent",
        "error": _str(row[f"error_{role}"]) if status else f"no such row in {role.upper()}",
        "cost": "" if not status else _money(row[f"cost_{role}"]),
        "elapsed": _seconds(row[f"elapsed_{role}"]),
        "src": src,
    }


def _line(row: dict[str, Any], swept: list[str]) -> dict[str, Any]:
    change = "regressed" if row["regressed"] else row["change"]
    return {
        "row_id": row["row_id"],
        "change": change,
        "label": LABELS[change],
        "prompt": row["prompt"],
        "inputs": " · ".join(f"{name} {value}" for name, value in _inputs(row, swept)),
        "status": f"{_str(row['status_baseline']) or '—'} → {_str(row['status_current']) or '—'}",
        "psnr": "" if pd.isna(row["psnr_db"]) else f"{row['psnr_db']:.1f}",
        "cost": f"{_money(row['cost_baseline'])} → {_money(row['cost_current'])}",
        "elapsed": f"{_seconds(row['elapsed_baseline'])} → {_seconds(row['elapsed_current'])}",
        "note": row["note"],
    }


@cache
def _asset(name: str) -> str:
    source, _, _ = _environment().loader.get_source(_environment(), name)  # type: ignore[union-attr]
    return source


def _text(value: Any, name: str = "") -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "—"
    if name in ("width", "height"):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    return str(value)


def _inputs(row: dict[str, Any], swept: list[str]) -> list[tuple[str, str]]:
    """The swept inputs a row shows: the start image by its file name (or its URL's last part); an
    input of the other model (size on an image row, width on a text row) not at all."""
    shown = []
    for name in swept:
        if name == "inputImage":
            shown.append((name, image_label(row) or "none"))
        elif not (name in ONE_MODEL and _str(row[name]) == ""):
            shown.append((name, _text(row[name], name)))
    return shown


def _n(value: int) -> str:
    return f"{value:,}"


def _money(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else f"${value:.4f}"


def _seconds(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.1f} s"


def write_comparison(comparison: Comparison) -> Path:
    """CURRENT/compare.{csv,parquet,html} and CURRENT/compare/, each replaced whole; the page's path."""
    out = comparison.current
    assets = out / f".{ASSETS}.{os.getpid()}.{threading.get_ident()}.tmp"
    old = out / f".{ASSETS}.{os.getpid()}.{threading.get_ident()}.old"
    shutil.rmtree(assets, ignore_errors=True)
    try:
        (assets / "baseline").mkdir(parents=True)
        for row_id, strip in comparison.strips.items():
            (assets / f"{row_id}.png").write_bytes(strip)
        videos, thumbnails = shown_videos(comparison), shown_thumbnails(comparison)
        for row_id, source in videos.items():
            if source.is_file():
                _link(source, assets / "baseline" / f"{row_id}{source.suffix}")
        for sha, source in thumbnails.items():
            (assets / THUMBS).mkdir(exist_ok=True)
            _link(source, assets / THUMBS / f"{sha}.jpg")
        if (out / ASSETS).exists():
            os.replace(out / ASSETS, old)
        os.replace(assets, out / ASSETS)
    finally:
        shutil.rmtree(assets, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    arrow = pa.Table.from_pandas(comparison.rows, schema=COLUMNS, preserve_index=False)
    atomic_write(out / COMPARE_PARQUET, lambda path: pq.write_table(arrow, path))
    atomic_write(out / COMPARE_CSV, lambda path: pacsv.write_csv(_csv_table(arrow), path))
    page = build_page(comparison, videos, thumbnails)
    atomic_write_text(out / COMPARE_HTML, page)
    return out / COMPARE_HTML


def _link(source: Path, target: Path) -> None:
    """A hard link where the filesystem allows (free), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _csv_table(table: pa.Table) -> pa.Table:
    """Money as plain decimal text (0.0036, not 0.003600000000000000)."""
    for name in ("cost_baseline", "cost_current"):
        values = [None if v is None else money_text(v) for v in table.column(name).to_pylist()]
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.string()))
    return table
