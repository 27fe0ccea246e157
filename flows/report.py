"""A contact sheet of a sweep: `OUT/report.html`, one playable cell per manifest row.

`build_report` is pure (manifest in, HTML out): prompts down and the swept inputs across by
default, or any layout of the inputs (`rows="seed", cols="steps"`; inputs left over become
sections). The page is self-contained: inline CSS and JS, videos linked relative to OUT, and
everything from the manifest HTML-escaped. `write_report` and `report_command` are the file edges.
"""

from __future__ import annotations

import difflib
import html
import math
import os
import re
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import click
import pandas as pd

from .grid import INPUTS
from .manifest import MANIFEST_PARQUET, read_manifest
from .summary import summarize

REPORT = "report.html"
STATUS_ORDER = ("succeeded", "failed", "timed_out", "cancelled", "skipped", "running", "pending")
STATUS_ICONS = {"failed": "✕", "timed_out": "⏱", "cancelled": "⊘", "skipped": "↷", "running": "…", "pending": "…"}
FIRST_SEEN_ORDER = ("prompt", "negativePrompt")  # kept in grid order; other inputs sort by value

Record = dict[str, Any]


@dataclass(frozen=True)
class Layout:
    """Which inputs head the sections, the rows and the columns of the sheet."""

    groups: tuple[str, ...]
    rows: tuple[str, ...]
    cols: tuple[str, ...]


def swept_inputs(manifest: pd.DataFrame) -> list[str]:
    """The inputs (prompt included) that take more than one value across the manifest."""
    return [name for name in INPUTS if manifest[name].map(_text).nunique() > 1]


def plan_layout(manifest: pd.DataFrame, rows: str = "prompt", cols: str | None = None) -> Layout:
    """Rows and cols as asked (comma-separated input names); swept inputs left over head sections."""
    row_names = _names(rows, "rows")
    swept = swept_inputs(manifest)
    if cols is None:
        col_names = tuple(n for n in swept if n != "prompt" and n not in row_names)
    else:
        col_names = _names(cols, "cols")
    both = [n for n in row_names if n in col_names]
    if both:
        raise ValueError(f"{both[0]} cannot be both a row and a column of the report")
    groups = tuple(n for n in swept if n not in row_names and n not in col_names)
    return Layout(groups, row_names, col_names)


def _names(spec: str, what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    if not names:
        raise ValueError(f"--{what} names no input; choose from {', '.join(INPUTS)}")
    for name in names:
        if name not in INPUTS:
            close = difflib.get_close_matches(name, INPUTS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unknown --{what} input {name!r}{hint}; choose from {', '.join(INPUTS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--{what} names an input twice: {spec!r}")
    return names


def _text(value: Any) -> str:
    """A manifest value as the text that keys, filters and shows it (5.0 -> '5', missing -> '')."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _value_key(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _ranks(records: Sequence[Record], names: Iterable[str]) -> dict[str, dict[str, int]]:
    """Each input's values in display order: prompts as first seen, the rest by number or text."""
    ranks: dict[str, dict[str, int]] = {}
    for name in names:
        seen = list(dict.fromkeys(_text(r.get(name)) for r in records))
        ordered = seen if name in FIRST_SEEN_ORDER else sorted(seen, key=_value_key)
        ranks[name] = {v: i for i, v in enumerate(ordered)}
    return ranks


def build_report(manifest: pd.DataFrame, *, rows: str = "prompt", cols: str | None = None,
                 title: str = "wiro-sweep") -> str:  # fmt: skip
    """The whole report page for a manifest; raises ValueError for an unknown rows/cols input."""
    needed = ("row_id", *INPUTS, "status", "error", "cost_usd", "elapsed_seconds")
    missing = [c for c in needed if c not in manifest.columns]
    if missing:
        raise ValueError(f"the manifest has no column {missing[0]!r}")
    layout = plan_layout(manifest, rows, cols)
    records = cast(list[Record], manifest.to_dict("records"))
    swept = swept_inputs(manifest)
    params = {name: f"p{i}" for i, name in enumerate(swept)}
    ranks = _ranks(records, INPUTS)

    def key(record: Record, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_text(record.get(n)) for n in names)

    def ordered(keys: Iterable[tuple[str, ...]], names: tuple[str, ...]) -> list[tuple[str, ...]]:
        return sorted(set(keys), key=lambda k: [ranks[n][v] for n, v in zip(names, k, strict=True)])

    columns = ordered((key(r, layout.cols) for r in records), layout.cols)
    by_group: dict[tuple[str, ...], list[Record]] = {}
    for record in records:
        by_group.setdefault(key(record, layout.groups), []).append(record)
    sections = []
    for group in ordered(by_group, layout.groups):
        members = by_group[group]
        cells: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Record]] = {}
        for record in members:
            cells.setdefault((key(record, layout.rows), key(record, layout.cols)), []).append(record)
        row_keys = ordered((key(r, layout.rows) for r in members), layout.rows)
        table = _table(layout, columns, row_keys, cells, swept, params)
        sections.append(_section(layout.groups, group, table))
    body = "\n".join([_header(manifest, layout, swept, title), _filters(manifest, swept, params, ranks), *sections])
    return PAGE.format(title=_e(title), css=CSS, js=JS, body=body)


def _e(value: Any) -> str:
    return html.escape(_text(value), quote=True)


def _pair(name: str, value: str) -> str:
    return f'<span class="k">{_e(name)}</span> {_e(value) or "—"}'


def _header(manifest: pd.DataFrame, layout: Layout, swept: list[str], title: str) -> str:
    costs = pd.Series([_decimal(v) for v in manifest["cost_usd"]], index=manifest.index, dtype=object)
    summary = summarize(manifest.assign(cost_usd=costs))
    stats = [("cells", str(summary.total), "")]
    stats += [(_label(s), str(n), f" st-{_slug(s)}") for s, n in _by_status(summary.counts)]
    stats += [("billed", _money(summary.cost), ""), ("p50 elapsed", _seconds(summary.p50), ""),
              ("p95 elapsed", _seconds(summary.p95), "")]  # fmt: skip
    tiles = "".join(f'<div class="stat{cls}"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for k, v, cls in stats)
    fixed = [n for n in INPUTS if n not in swept and n not in layout.rows and n not in layout.cols]
    first = manifest.iloc[0] if len(manifest) else None
    fixed_text = " · ".join(_pair(n, _text(first[n]) if first is not None else "") for n in fixed)
    axes = f"rows: {' × '.join(layout.rows)} · columns: {' × '.join(layout.cols) or '—'}"
    if layout.groups:
        axes += f" · sections: {' × '.join(layout.groups)}"
    finished = pd.to_datetime(manifest.get("finished_at", pd.Series(dtype=object)), utc=True).dropna()
    when = f" · last finished {finished.max():%Y-%m-%d %H:%M} UTC" if len(finished) else ""
    return (f'<header class="top"><h1>{_e(title)}</h1><div class="stats">{tiles}</div>'
            f'<p class="axes">{_e(axes)}{_e(when)}</p>'
            + (f'<p class="fixed">same in every cell: {fixed_text}</p>' if fixed else "") + "</header>")  # fmt: skip


def _filters(manifest: pd.DataFrame, swept: list[str], params: dict[str, str], ranks: dict[str, dict[str, int]]) -> str:
    counts = {str(s): int(n) for s, n in manifest["status"].map(_text).value_counts().items()}
    boxes = "".join(
        f'<label class="chip st-{_slug(s)}"><input type="checkbox" data-status-filter value="{_e(s)}" checked>'
        f"{_e(_label(s))} <b>{n}</b></label>"
        for s, n in _by_status(counts)
    )
    selects = []
    for name in swept:
        options = "".join(f'<option value="{_e(v)}">{_e(_short(v))}</option>' for v in ranks[name])
        selects.append(f'<label class="pick">{_e(name)} <select data-param="{params[name]}">'
                       f'<option value="">all</option>{options}</select></label>')  # fmt: skip
    return (f'<nav class="filters"><div class="group">{boxes}</div><div class="group">{"".join(selects)}</div>'
            '<div class="group"><label class="pick">zoom <input type="range" id="zoom" min="140" max="520" '
            'step="20" value="260"></label><span id="shown"></span></div></nav>')  # fmt: skip


def _table(layout: Layout, columns: list[tuple[str, ...]], row_keys: list[tuple[str, ...]],
           cells: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Record]], swept: list[str],
           params: dict[str, str]) -> str:  # fmt: skip
    body = []
    for row in row_keys:
        if layout.rows == ("prompt",):
            label = f'<div class="prompt">{_e(row[0])}</div>'
        else:
            label = "<br>".join(_pair(n, v) for n, v in zip(layout.rows, row, strict=True))
        tds, statuses = [], []
        for i, col in enumerate(columns):
            found = cells.get((row, col), [])
            statuses += [_text(r.get("status")) or "unknown" for r in found]
            inner = "".join(_cell(r, swept, params) for r in found) or '<div class="empty">no such combination</div>'
            tds.append(f'<td data-col="{i}">{inner}</td>')
        tally = "".join(
            f'<span class="st-{_slug(s)}">{n} {_e(_label(s))}</span>'
            for s, n in _by_status({s: statuses.count(s) for s in statuses})
        )
        body.append(
            f'<tr><th class="rowhead" scope="row">{label}<div class="tally">{tally}</div></th>{"".join(tds)}</tr>'
        )
    kind = "sheet wide" if "prompt" in layout.rows else "sheet"
    return f'<table class="{kind}"><thead>{_thead(layout, columns)}</thead><tbody>{"".join(body)}</tbody></table>'


def _thead(layout: Layout, columns: list[tuple[str, ...]]) -> str:
    """One header row per column input; equal neighbours merge, and `data-cols` lets the filters re-span them."""
    levels: list[list[str]] = [[] for _ in range(max(len(layout.cols), 1))]
    levels[0].append(f'<th class="corner" rowspan="{len(levels)}">{_e(" × ".join(layout.rows))}</th>')
    if not layout.cols:
        levels[0].append('<th data-cols="0">video</th>')
    for level, name in enumerate(layout.cols):
        start = 0
        while start < len(columns):
            end = start + 1
            while end < len(columns) and columns[end][: level + 1] == columns[start][: level + 1]:
                end += 1
            span = " ".join(str(i) for i in range(start, end))
            label = _pair(name, columns[start][level])
            levels[level].append(f'<th colspan="{end - start}" data-cols="{span}">{label}</th>')
            start = end
    return "".join(f"<tr>{''.join(level)}</tr>" for level in levels)


def _section(names: tuple[str, ...], group: tuple[str, ...], table: str) -> str:
    heading = ""
    if names:
        parts = [
            f'<div class="prompt">{_e(v)}</div>' if n == "prompt" else f"<div>{_pair(n, v)}</div>"
            for n, v in zip(names, group, strict=True)
        ]
        heading = f"<h2>{''.join(parts)}</h2>"
    return f'<section class="block">{heading}<div class="scroll">{table}</div></section>'


def _cell(record: Record, swept: list[str], params: dict[str, str]) -> str:
    """One row's card: its video (or why there is none), status, cost, time and inputs."""
    status = _text(record.get("status")) or "unknown"
    data = "".join(f' data-{params[n]}="{_e(record.get(n))}"' for n in swept)
    ratio = _ratio(_text(record.get("size")))
    path = _text(record.get("output_path"))
    error = _text(record.get("error"))
    if status == "succeeded" and path:
        src = html.escape(quote(path.replace(os.sep, "/")), quote=True)
        clip = _clip(record)
        media = (f'<div class="media" style="aspect-ratio:{ratio}"><video controls preload="metadata" muted loop '
                 f'playsinline src="{src}"></video>{clip}</div>')  # fmt: skip
    else:
        reason = error or ("no video was saved" if status == "succeeded" else f"{_label(status)}: no reason recorded")
        media = (f'<div class="media placeholder" style="aspect-ratio:{ratio}"><div class="why">'
                 f'<span class="icon">{STATUS_ICONS.get(status, "!")}</span><strong>{_e(_label(status))}</strong>'
                 f'<p class="error">{_e(reason)}</p></div></div>')  # fmt: skip
    shown = " · ".join(_pair(n, _text(record.get(n))) for n in swept if n != "prompt")
    details = "".join(f"<dt>{_e(n)}</dt><dd>{_e(record.get(n)) or '—'}</dd>" for n in
                      (*INPUTS, "row_id", "task_id", "attempts", "source"))  # fmt: skip
    if status == "succeeded" and path:
        details += f'<dt>file</dt><dd><a href="{src}">{_e(path)}</a></dd>'
    note = f'<p class="note">{_e(error)}</p>' if error and status == "succeeded" else ""
    return (
        f'<article class="cell st-{_slug(status)}" data-status="{_e(status)}" data-row-id="{_e(record.get("row_id"))}"'
        f'{data}>{media}<div class="meta"><span class="badge">{_e(_label(status))}</span>'
        f'<span class="cost">{_money(_decimal(record.get("cost_usd")))}</span>'
        f'<span class="time">{_seconds(_float(record.get("elapsed_seconds")))}</span></div>'
        + (f'<div class="params">{shown}</div>' if shown else "")
        + f"{note}<details><summary>inputs</summary><dl>{details}</dl></details></article>"
    )


def _clip(record: Record) -> str:
    """A badge with the clip's length (numFrames / fps), shown until the controls are."""
    frames, fps = _float(record.get("numFrames")), _float(record.get("fps"))
    return f'<span class="clip">▶ {frames / fps:.1f} s</span>' if frames and fps else ""


def _by_status(counts: dict[str, int]) -> list[tuple[str, int]]:
    known = [(s, counts[s]) for s in STATUS_ORDER if counts.get(s)]
    return known + sorted((s, n) for s, n in counts.items() if s not in STATUS_ORDER and n)


def _label(status: str) -> str:
    return status.replace("_", " ")


def _slug(status: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", status.lower()) or "unknown"


def _short(value: str, limit: int = 70) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _ratio(size: str) -> str:
    match = re.fullmatch(r"\s*(\d+)\s*[*x×]\s*(\d+)\s*", size)
    return f"{match[1]} / {match[2]}" if match and int(match[1]) and int(match[2]) else "16 / 9"


def _decimal(value: Any) -> Decimal:
    if _text(value) == "":
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def _float(value: Any) -> float | None:
    try:
        return float(_text(value))
    except ValueError:
        return None


def _money(value: Decimal) -> str:
    if not value:
        return "$0"
    return f"${value:.6f}" if abs(value) < Decimal("0.0001") else f"${value:.4f}"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def write_report(out: Path, *, rows: str = "prompt", cols: str | None = None) -> Path:
    """Build OUT/report.html from OUT's manifest and replace it atomically; returns its path."""
    out = Path(out)
    if not (out / MANIFEST_PARQUET).is_file():
        raise FileNotFoundError(f"{out / MANIFEST_PARQUET} does not exist: run a sweep with --out {out} first")
    text = build_report(read_manifest(out), rows=rows, cols=cols, title=f"wiro-sweep · {out.resolve().name}")
    path = out / REPORT
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


@click.command("report")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rows", default="prompt", show_default=True, help="Input(s) down the sheet, comma-separated.")
@click.option("--cols", help="Input(s) across, comma-separated; default: every swept input but the rows.")
def report_command(out: Path, rows: str, cols: str | None) -> None:
    """Write OUT/report.html: the sweep's videos as a contact sheet, with totals and filters."""
    if not (out / MANIFEST_PARQUET).is_file():
        click.echo(f"error: {out} has no {MANIFEST_PARQUET}; run 'wiro-sweep run ... --out {out}' first", err=True)
        sys.exit(2)
    try:
        path = write_report(out, rows=rows, cols=cols)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(str(path))


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
<script>{js}</script>
</body>
</html>
"""

CSS = """
:root { --cell-w: 260px; --head-w: 280px; --bg: #f4f5f7; --card: #fff; --ink: #1f2328; --muted: #656d76;
  --line: #d8dee4; --succeeded: #1a7f37; --failed: #cf222e; --timed_out: #bc4c00; --cancelled: #6e7781;
  --skipped: #8250df; --running: #0969da; --pending: #9a6700; --unknown: #57606a; color-scheme: light; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { width: max-content; min-width: 100%; margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.top { padding: 20px 28px 8px; }
h1 { margin: 0 0 12px; font-size: 22px; font-weight: 650; }
.stats { display: flex; flex-wrap: wrap; gap: 10px; }
.stat { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 8px 14px;
  min-width: 96px; border-top: 4px solid var(--line); }
.stat b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
.stat span { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.axes, .fixed { color: var(--muted); margin: 10px 0 0; font-size: 13px; }
.k { color: var(--muted); font-size: .92em; }
.filters { position: sticky; top: 0; left: 0; z-index: 5; display: flex; flex-wrap: wrap; gap: 8px 22px;
  align-items: center; padding: 10px 28px; background: rgba(244, 245, 247, .94); backdrop-filter: blur(6px);
  border-bottom: 1px solid var(--line); }
.filters .group { display: flex; flex-wrap: wrap; gap: 6px 10px; align-items: center; }
.chip { display: inline-flex; gap: 6px; align-items: center; padding: 3px 10px 3px 6px; border-radius: 999px;
  background: var(--card); border: 1px solid var(--line); cursor: pointer; user-select: none; }
.chip b { font-variant-numeric: tabular-nums; }
.chip:has(input:not(:checked)) { opacity: .55; background: transparent; }
.chip input { accent-color: var(--c); margin: 0; }
.pick { color: var(--muted); display: inline-flex; gap: 6px; align-items: center; }
.pick select { max-width: 260px; font: inherit; padding: 2px 4px; border-radius: 6px; border: 1px solid var(--line); }
#shown { color: var(--muted); font-variant-numeric: tabular-nums; }
.block { padding: 14px 28px 6px; }
.block h2 { margin: 6px 0 10px; font-size: 15px; font-weight: 600; position: sticky; left: 28px;
  max-width: calc(100vw - 56px); }
.sheet { border-collapse: separate; border-spacing: 10px; margin: -10px; }
.sheet thead th { font-weight: 600; font-size: 13px; text-align: center; padding: 6px 8px; background: #e9ecef;
  border-radius: 8px; white-space: nowrap; }
.sheet th.corner { background: transparent; color: var(--muted); text-align: left; vertical-align: bottom;
  font-weight: 500; }
.sheet th.rowhead { position: sticky; left: 0; z-index: 2; width: 120px; min-width: 120px; text-align: left;
  vertical-align: top; font-weight: 500; padding: 10px 12px;
  background: var(--card); border: 1px solid var(--line); border-left: 4px solid #8c959f; border-radius: 10px;
  box-shadow: 6px 0 10px -8px rgba(0, 0, 0, .25); }
.wide th.rowhead { width: var(--head-w); min-width: var(--head-w); max-width: var(--head-w); }
.tally { display: flex; flex-wrap: wrap; gap: 2px 10px; margin-top: 8px; font-size: 12px; font-weight: 600; }
.tally span { color: var(--c); }
.prompt { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 14px; line-height: 1.4; }
.sheet td { vertical-align: top; padding: 0; width: var(--cell-w); min-width: var(--cell-w); }
.cell { width: var(--cell-w); background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  overflow: hidden; border-top: 4px solid var(--c); box-shadow: 0 1px 2px rgba(0, 0, 0, .05); }
.cell + .cell { margin-top: 10px; }
[class*="st-"] { --c: var(--unknown); }
.st-succeeded { --c: var(--succeeded); } .st-failed { --c: var(--failed); } .st-timed_out { --c: var(--timed_out); }
.st-cancelled { --c: var(--cancelled); } .st-skipped { --c: var(--skipped); } .st-running { --c: var(--running); }
.st-pending { --c: var(--pending); }
.stat[class*="st-"] { border-top-color: var(--c); } .stat[class*="st-"] b { color: var(--c); }
.media { position: relative; background: #0d1117; display: flex; align-items: center; justify-content: center; }
.media video { display: block; width: 100%; height: 100%; object-fit: contain; background: #0d1117; }
.media video::-webkit-media-controls { opacity: 0; transition: opacity .15s; }
.media:hover video::-webkit-media-controls, .media:focus-within video::-webkit-media-controls,
.media.playing video::-webkit-media-controls { opacity: 1; }
.clip { position: absolute; right: 8px; bottom: 8px; padding: 1px 8px; border-radius: 999px; font-size: 11.5px;
  color: #fff; background: rgba(13, 17, 23, .72); pointer-events: none; font-variant-numeric: tabular-nums; }
.media:hover .clip, .media:focus-within .clip, .media.playing .clip { display: none; }
.placeholder { background: repeating-linear-gradient(135deg, color-mix(in srgb, var(--c) 9%, #fff) 0 12px,
  color-mix(in srgb, var(--c) 15%, #fff) 12px 24px); color: var(--c); }
.why { padding: 12px 14px; text-align: center; max-width: 100%; }
.why .icon { display: block; font-size: 26px; line-height: 1; font-weight: 700; }
.why strong { display: block; text-transform: uppercase; letter-spacing: .06em; font-size: 12px; margin: 4px 0; }
.error { margin: 0; color: var(--ink); font-size: 12.5px; overflow-wrap: anywhere; white-space: pre-wrap; }
.meta { display: flex; gap: 8px; align-items: center; padding: 7px 10px 2px; font-size: 12.5px;
  font-variant-numeric: tabular-nums; }
.badge { color: #fff; background: var(--c); border-radius: 999px; padding: 0 8px; font-size: 11.5px;
  font-weight: 600; margin-right: auto; }
.cost, .time { color: var(--muted); }
.params { padding: 0 10px 2px; font-size: 12.5px; }
.note { margin: 2px 10px; font-size: 12px; color: var(--timed_out); overflow-wrap: anywhere; }
details { padding: 0 10px 7px; font-size: 12px; color: var(--muted); }
summary { cursor: pointer; width: fit-content; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 8px; margin: 6px 0 0; }
dt { color: var(--muted); } dd { margin: 0; color: var(--ink); overflow-wrap: anywhere; }
.empty { width: var(--cell-w); min-height: 60px; border: 1px dashed var(--line); border-radius: 10px;
  color: var(--muted); display: flex; align-items: center; justify-content: center; font-size: 12px; }
"""

JS = """
(() => {
  const boxes = [...document.querySelectorAll('input[data-status-filter]')];
  const selects = [...document.querySelectorAll('select[data-param]')];
  const cells = [...document.querySelectorAll('article.cell')];
  const shown = document.getElementById('shown');
  function apply() {
    const statuses = new Set(boxes.filter(b => b.checked).map(b => b.value));
    const picks = selects.filter(s => s.value !== '').map(s => [s.dataset.param, s.value]);
    let count = 0;
    for (const cell of cells) {
      const ok = statuses.has(cell.dataset.status) && picks.every(([p, v]) => cell.dataset[p] === v);
      cell.hidden = !ok;
      if (ok) count++;
      else cell.querySelectorAll('video').forEach(v => v.pause());
    }
    for (const table of document.querySelectorAll('table.sheet')) {
      const live = new Set();
      for (const tr of table.tBodies[0].rows) {
        const visible = [...tr.querySelectorAll('article.cell:not([hidden])')];
        tr.hidden = visible.length === 0;
        visible.forEach(c => live.add(c.closest('td').dataset.col));
      }
      table.querySelectorAll('td[data-col]').forEach(td => { td.hidden = !live.has(td.dataset.col); });
      for (const th of table.querySelectorAll('thead th[data-cols]')) {
        const n = th.dataset.cols.split(' ').filter(c => live.has(c)).length;
        th.hidden = n === 0;
        th.colSpan = Math.max(n, 1);
      }
      table.closest('section').hidden = live.size === 0;
    }
    shown.textContent = count + ' of ' + cells.length + ' cells shown';
  }
  boxes.concat(selects).forEach(el => el.addEventListener('change', apply));
  for (const [event, on] of [['play', true], ['pause', false]]) {
    document.addEventListener(event, e => e.target.closest('.media').classList.toggle('playing', on), true);
  }
  const zoom = document.getElementById('zoom');
  zoom.addEventListener('input', () => document.documentElement.style.setProperty('--cell-w', zoom.value + 'px'));
  apply();
})();
"""
