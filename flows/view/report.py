"""A contact sheet of a sweep: `OUT/report.html`, one playable cell per manifest row.

`build_report` is pure (manifest in, HTML out): prompts down and the swept inputs across by
default, or any layout of the inputs (`rows="seed", cols="steps"`; inputs left over become
sections). An input constant within each row (say numFrames, set per prompt) is shown in the
row's header rather than spread over columns that would be mostly empty. An image-to-video
row's start image is one input, `inputImage`, known by its content (its sha256, or its URL):
its thumbnail (`OUT/thumbs/<sha256>.jpg`, else its http(s) URL) heads its row or column and
sits beside each of its videos. The page comes from the
Jinja2 template `templates/report.html.j2` (autoescaped) with `report.css`, `sync.js` (a row's videos
play as one, as in compare.html) and `report.js` inlined:
one self-contained file, videos and their posters linked relative to OUT, loaded only near the
screen. The HTML holds the first rows; every row is in the page as compact JSON (`pages.py`),
from which the script makes the rows near the screen, so 100,000 cells open as fast as 1,000.
`write_report` is the file edge (`wiro-sweep report` is `flows.cli.view_commands`).
"""

from __future__ import annotations

import difflib
import functools
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, cast

import jinja2
import pandas as pd
from markupsafe import Markup

from flows.grid import BASIC_INPUTS, IMAGE_INPUTS, INPUTS
from flows.store.manifest import MANIFEST_PARQUET, read_manifest
from flows.store.posters import ensure_posters, poster_path
from flows.store.summary import summarize
from flows.store.thumbnails import (
    ONE_MODEL,
    THUMBS,
    image_label,
    is_sha256,
    shown_thumbnails,
    web_url,
    with_image_columns,
)
from flows.view import pages
from flows.view.cells import (
    as_decimal,
    as_float,
    aspect_ratio,
    by_status,
    cell_text,
    clip_length,
    frame_ratio,
    href,
    shorten,
    show_money,
    show_seconds,
    status_label,
    status_slug,
)
from flows.view.stamp import stamper, unchanged, write_stamped
from wiro_tasks import TEXT_TO_VIDEO

REPORT = "report.html"
FIRST_SEEN_ORDER = ("prompt", "negativePrompt", "inputImage", "model")  # kept in grid order; other inputs sort by value
MODEL = "model"
_READ = frozenset({"row_id", *INPUTS, MODEL, "input_image_sha256", "image_path", "status", "error", "output_path",
                   "cost_usd", "elapsed_seconds", "task_id", "attempts", "source"})  # fmt: skip  # what a cell shows

Record = dict[str, Any]


@dataclass(frozen=True)
class Layout:
    """Which inputs head the sections, the rows and the columns of the sheet, and which are
    shown in each row's header (`attrs`: one value per row, so as columns they would be mostly empty)."""

    groups: tuple[str, ...]
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    attrs: tuple[str, ...] = ()


def swept_inputs(manifest: pd.DataFrame) -> list[str]:
    """The inputs (prompt included) that take more than one value across the manifest; an image's
    URL only when it does not follow the image."""
    view = _view(manifest)
    swept = [name for name in INPUTS if not _blank(view[name]) and _values(view, name).nunique() > 1]
    if "inputImageUrl" in swept and _url_follows(view):
        swept.remove("inputImageUrl")
    return swept


def _view(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest as the sheet keys it: every image column (all-null where an older manifest has
    none), `inputImage` as the image's identity, and the path as given kept in `image_path`."""
    if "image_path" in manifest.columns:
        return manifest
    manifest = with_image_columns(manifest)
    columns = ("input_image_sha256", "inputImageUrl", "inputImage")
    if all(_blank(manifest[c]) for c in columns):  # a text-to-video sweep
        return manifest.assign(image_path=manifest["inputImage"], inputImage="")
    sha, url, path = (manifest[c].map(cell_text) for c in columns)
    keys = sha.where(sha != "", url.where(url != "", path))  # the image's identity: content, else URL, else path
    return manifest.assign(image_path=manifest["inputImage"], inputImage=keys)


def _blank(values: pd.Series) -> bool:
    """No value at all: every cell missing or ""."""
    return bool((values.isna() | (values.astype(object) == "")).all())


def _values(view: pd.DataFrame, name: str) -> pd.Series:
    values = view[name].map(cell_text)
    return values[values != ""] if name in ONE_MODEL else values


def _url_follows(view: pd.DataFrame) -> bool:
    """Each image has one URL (its own, or the one it was uploaded to): the URL is no axis of its own."""
    urls = view["inputImageUrl"].map(cell_text).groupby(view["inputImage"]).nunique()
    return bool(urls.empty or urls.max() <= 1)


def _models(view: pd.DataFrame) -> list[str]:
    return sorted({m for m in view[MODEL].map(cell_text) if m})


def plan_layout(manifest: pd.DataFrame, rows: str = "prompt", cols: str | None = None, *,
                swept: list[str] | None = None) -> Layout:  # fmt: skip
    """Rows and cols as asked (comma-separated input names). A swept input left over that takes one
    value in each row goes in the row's header, and so does the model when one sweep holds text and
    image rows; by default the others are the columns (the image first), and when cols are given the
    others head sections. With the image across, text and image rows are sections of their own."""
    view = _view(manifest)
    follows = _url_follows(view)
    row_names = _names(rows, "rows", follows)
    swept = swept_inputs(view) if swept is None else swept
    col_names = None if cols is None else _names(cols, "cols", follows)
    both = [n for n in row_names if n in (col_names or ())]
    if both:
        raise ValueError(f"{both[0]} cannot be both a row and a column of the report")
    left = [n for n in swept if n not in row_names and n not in (col_names or ())]
    keys = view[list(row_names)].map(cell_text)
    candidates = [n for n in left if n != "prompt"] + ([MODEL] if len(_models(view)) > 1 else [])
    per_row = [n for n in candidates if view[n].map(cell_text).groupby(
        [keys[r] for r in row_names]).nunique().max() == 1]  # fmt: skip
    if "inputImage" in (*row_names, *per_row):  # its label says "no image · text-to-video" already
        per_row = [n for n in per_row if n != MODEL]
    left = [n for n in left if n not in per_row]
    if col_names is None:
        col_names = tuple(sorted((n for n in left if n != "prompt"), key=lambda n: n != "inputImage"))
        left = [n for n in left if n not in col_names]
    if "inputImage" in col_names and len(_models(view)) > 1:  # text rows have no image: a section of their own
        per_row, left = [n for n in per_row if n != MODEL], [MODEL, *left]
    return Layout(tuple(left), row_names, col_names, tuple(per_row))


def _names(spec: str, what: str, url_follows: bool = True) -> tuple[str, ...]:
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    axes = [n for n in INPUTS if n != "inputImageUrl" or not url_follows]
    if not names:
        raise ValueError(f"--{what} names no input; choose from {', '.join(axes)}")
    for name in names:
        if name == "inputImageUrl" and url_follows:
            raise ValueError(f"--{what} inputImageUrl: the URL follows the image; use --{what} inputImage")
        if name not in axes:
            close = difflib.get_close_matches(name, axes, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unknown --{what} input {name!r}{hint}; choose from {', '.join(axes)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--{what} names an input twice: {spec!r}")
    return names


def _value_key(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _ranks(records: Sequence[Record], names: Iterable[str]) -> dict[str, dict[str, int]]:
    """Each input's values in display order: prompts as first seen, the rest by number or text."""
    ranks: dict[str, dict[str, int]] = {}
    for name in names:
        seen = list(dict.fromkeys(cell_text(r.get(name)) for r in records))
        ordered = seen if name in FIRST_SEEN_ORDER else sorted(seen, key=_value_key)
        ranks[name] = {v: i for i, v in enumerate(ordered)}
    return ranks


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("flows.view", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return environment.get_template("report.html.j2")


@functools.cache
def _asset(name: str) -> Markup:
    """A CSS or JS file of the package's templates, to inline as it is (it holds no manifest text)."""
    return Markup(files("flows.view").joinpath("templates", name).read_text(encoding="utf-8"))


def build_report(manifest: pd.DataFrame, *, rows: str = "prompt", cols: str | None = None,
                 title: str = "wiro-sweep", posters: frozenset[str] = frozenset(),
                 thumbs: Mapping[str, tuple[int, int]] | None = None) -> str:  # fmt: skip
    """The whole report page for a manifest; raises ValueError for an unknown rows/cols input.

    `posters` names the videos (manifest `output_path`) that have a poster image beside them;
    `thumbs` the start images (sha256) with a thumbnail under `thumbs/`, and its width and height."""
    given = BASIC_INPUTS  # an older manifest has no image columns
    needed = ("row_id", *given, "status", "error", "cost_usd", "elapsed_seconds")
    missing = [c for c in needed if c not in manifest.columns]
    if missing:
        raise ValueError(f"the manifest has no column {missing[0]!r}")
    view = _view(manifest)
    swept = swept_inputs(view)
    layout = plan_layout(view, rows, cols, swept=swept)
    records = cast(list[Record], view[[c for c in view.columns if c in _READ]].to_dict("records"))
    params = {name: f"p{i}" for i, name in enumerate(swept)}
    ranks = _ranks(records, dict.fromkeys((*swept, *layout.groups, *layout.rows, *layout.cols)))
    show = _Show(records, thumbs or {}, mixed=len(_models(view)) > 1)

    def key(record: Record, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(cell_text(record.get(n)) for n in names)

    def ordered(keys: Iterable[tuple[str, ...]], names: tuple[str, ...]) -> list[tuple[str, ...]]:
        return sorted(set(keys), key=lambda k: [ranks[n][v] for n, v in zip(names, k, strict=True)])

    columns = ordered((key(r, layout.cols) for r in records), layout.cols)
    by_model = MODEL in layout.groups  # sections by model: each its own columns (text rows: no image level)
    by_group: dict[tuple[str, ...], list[Record]] = {}
    for record in records:
        by_group.setdefault(key(record, layout.groups), []).append(record)
    sections, sheet = [], pages.Sheet()  # every row as JSON, made as it goes; the HTML keeps the first rows
    members: list[Record] = []
    cells: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Record]] = {}
    for group in ordered(by_group, layout.groups):
        members = by_group[group]
        names = layout.cols
        if by_model:
            names = tuple(n for n in names if n != "inputImage" or any(r["inputImage"] for r in members))
            columns = ordered((key(r, names) for r in members), names)
        cells = {}
        for record in members:
            cells.setdefault((key(record, layout.rows), key(record, names)), []).append(record)
        width = max(len(columns), 1)
        held = pages.page_rows(width)  # the rows the HTML may hold: a page's
        compact: list[list[Any]] = []  # every row's JSON
        html: list[dict[str, Any]] = []  # the rows the HTML may hold, as dicts
        for row in ordered((key(r, layout.rows) for r in members), layout.rows):
            found = [cells.get((row, col), []) for col in columns]
            first = next(r for rs in found for r in rs)
            counts = by_status(Counter(cell_text(r.get("status")) or "unknown" for rs in found for r in rs))
            built = {
                "prompt": row[0] if layout.rows == ("prompt",) else None,
                "pairs": [] if layout.rows == ("prompt",) else show.pairs(layout.rows, row),
                "attrs": show.pairs(layout.attrs, key(first, layout.attrs)),
                "tally": [(status_slug(s), n, status_label(s)) for s, n in counts],
                "counts": counts,
                "cells": [[_card(r, swept, params, posters, layout.attrs, show) for r in rs] for rs in found],
            }  # fmt: skip
            compact.append(sheet.row(built))
            html += [built] if len(html) < held else []
        sections.append({"heading": show.pairs(layout.groups, group), "head": _head(names, columns, show),
                         "width": width, "rows": sheet.section(width, compact, html)})  # fmt: skip
    optional = (*IMAGE_INPUTS, "input_image_sha256", MODEL)  # listed for the rows that have them
    present = {n for n in optional if not _blank(view["image_path" if n == "inputImage" else n])}
    listed = [n for n in (*INPUTS, "input_image_sha256", MODEL, "row_id", "task_id", "attempts", "source")
              if n not in optional or n in present]  # fmt: skip
    values = ["image_path" if n == "inputImage" else n for n in listed]
    inputs = pages.inputs(
        listed,
        sorted({*present, *ONE_MODEL}),
        ((cell_text(r.get("row_id")), [cell_text(r.get(n)) for n in values]) for r in records),
    )
    filters = _filters(view, swept, params, ranks, show)
    page = {**_header(view, layout, swept, title, show), "sections": sections, "inputs": inputs,
            "sheet": sheet.finish(filters["selects"]), **filters}  # fmt: skip
    del records, by_group, cells, members, view  # the rows are in the page's JSON: let their records go
    return _template().render(page=page, css=_asset("report.css"), sync=_asset("sync.js"), js=_asset("report.js"))


class _Show:
    """How the sheet shows an input's value: the image by its name and thumbnail, the model by its
    task (text-to-video), width 0 as following the image; everything else as its text."""

    def __init__(self, records: Sequence[Record], thumbs: Mapping[str, tuple[int, int]], *, mixed: bool) -> None:
        self.mixed = mixed
        self.images: dict[str, dict[str, str]] = {}
        for record in records:
            identity = cell_text(record.get("inputImage"))
            if identity in self.images:
                continue
            if not identity:
                self.images[""] = {"label": "no image · text-to-video" if mixed else "", "src": "", "ratio": ""}
                continue
            sha = cell_text(record.get("input_image_sha256"))
            size = thumbs.get(sha) if is_sha256(sha) else None
            source = f"{THUMBS}/{sha}.jpg" if size else web_url(cell_text(record.get("inputImageUrl")))
            label = image_label({"inputImage": record.get("image_path"), "inputImageUrl": record.get("inputImageUrl")})
            self.images[identity] = {"label": label, "src": source, "ratio": f"{size[0]} / {size[1]}" if size else ""}

    def text(self, name: str, value: str) -> str:
        if name == "inputImage":
            return self.images.get(value, {}).get("label", value)
        if name == MODEL:
            return value.removeprefix("Wan-AI/Wan2.2-TI2V-5B-")
        if name in ("width", "height") and value == "0":
            return "0 (the image's)"
        return value

    def pair(self, name: str, value: str) -> tuple[str, str, str]:
        """(name, text, thumbnail src or "")."""
        src = self.images.get(value, {}).get("src", "") if name == "inputImage" else ""
        return name, self.text(name, value), src

    def pairs(self, names: Sequence[str], values: Sequence[str]) -> list[tuple[str, str, str]]:
        return [self.pair(n, v) for n, v in zip(names, values, strict=True)]


def _header(view: pd.DataFrame, layout: Layout, swept: list[str], title: str, show: _Show) -> dict[str, Any]:
    costs = pd.Series([as_decimal(v) for v in view["cost_usd"]], index=view.index, dtype=object)
    summary = summarize(view.assign(cost_usd=costs))
    stats = [("cells", str(summary.total), "")]
    stats += [(status_label(s), str(n), status_slug(s)) for s, n in by_status(summary.counts)]
    stats += [("billed", show_money(summary.cost), ""), ("p50 elapsed", show_seconds(summary.p50), ""),
              ("p95 elapsed", show_seconds(summary.p95), "")]  # fmt: skip
    fixed = []
    for name in (n for n in INPUTS if n not in swept and n not in layout.rows and n not in layout.cols):
        values = _values(view, name)
        if (name in IMAGE_INPUTS or name in ONE_MODEL) and not (values != "").any():
            continue  # no row of its model (a text-to-video sweep reads as it always has)
        if name == "inputImageUrl" and "inputImage" in swept:
            continue  # the URL follows the image
        name, text, src = show.pair(name, values.iloc[0] if len(values) else "")
        fixed.append((name, f"{text} ({ONE_MODEL[name]} rows)" if show.mixed and name in ONE_MODEL else text, src))
    models = _models(view)
    if models and models != [TEXT_TO_VIDEO] and MODEL not in (*layout.attrs, *layout.groups):
        fixed.append(show.pair(MODEL, models[0]) if len(models) == 1 else (MODEL, "text-to-video without an image, "
                     "image-to-video with one", ""))  # fmt: skip
    axes = f"rows: {' × '.join(layout.rows)} · columns: {' × '.join(layout.cols) or '—'}"
    if layout.attrs:
        axes += f" · per row: {', '.join(layout.attrs)}"
    if layout.groups:
        axes += f" · sections: {' × '.join(layout.groups)}"
    finished = pd.to_datetime(view.get("finished_at", pd.Series(dtype=object)), utc=True).dropna()
    if len(finished):
        axes += f" · last finished {finished.max():%Y-%m-%d %H:%M} UTC"
    return {"title": title, "stats": stats, "axes": axes, "fixed": fixed}


def _filters(view: pd.DataFrame, swept: list[str], params: dict[str, str],
             ranks: dict[str, dict[str, int]], show: _Show) -> dict[str, Any]:  # fmt: skip
    counts = {str(s): int(n) for s, n in view["status"].map(cell_text).value_counts().items()}
    return {
        "statuses": [(s, status_label(s), n) for s, n in by_status(counts)],
        "selects": [(name, params[name], [(v, shorten(show.text(name, v))) for v in ranks[name]]) for name in swept],
    }


def _head(names: tuple[str, ...], columns: list[tuple[str, ...]], show: _Show) -> list[list[dict[str, Any]]]:
    """One header row per column input; equal neighbours merge, and `cols` lets the filters re-span them."""
    if not names:
        return [[{"span": 1, "cols": "0", "pair": ("", "video", "")}]]
    levels: list[list[dict[str, Any]]] = []
    for level, name in enumerate(names):
        ths, start = [], 0
        while start < len(columns):
            end = start + 1
            while end < len(columns) and columns[end][: level + 1] == columns[start][: level + 1]:
                end += 1
            ths.append({"span": end - start, "cols": " ".join(map(str, range(start, end))),
                        "pair": show.pair(name, columns[start][level])})  # fmt: skip
            start = end
        levels.append(ths)
    return levels


def _card(record: Record, swept: list[str], params: dict[str, str], posters: frozenset[str],
          attrs: tuple[str, ...], show: _Show) -> dict[str, Any]:  # fmt: skip
    """One row's card: its video (or why there is none), its start image, status, cost, time, and the
    swept inputs its row's header does not already show."""
    status = cell_text(record.get("status")) or "unknown"
    path = cell_text(record.get("output_path"))
    error = cell_text(record.get("error"))
    playable = status == "succeeded" and bool(path)
    reason = error or ("no video was saved" if status == "succeeded" else f"{status_label(status)}: no reason recorded")
    image = show.images.get(cell_text(record.get("inputImage")), {}) if record.get("inputImage") else {}
    shown = [
        (n, cell_text(record.get(n))) for n in swept if n != "prompt" and n not in attrs
    ]  # the other model's: none
    return {
        "status": status,
        "slug": status_slug(status),
        "label": status_label(status),
        "row_id": cell_text(record.get("row_id")),
        "data": [(params[n], cell_text(record.get(n))) for n in swept],
        "ratio": ((frame_ratio(record) or image["ratio"]) if image else "")
        or aspect_ratio(cell_text(record.get("size"))),
        "video": href(path) if playable else "",
        "poster": href(str(poster_path(Path(path)))) if playable and path in posters else "",
        "start": image if image.get("src") else None,
        "path": path,
        "clip": clip_length(record),
        "reason": reason,
        "cost": show_money(as_decimal(record.get("cost_usd"))),
        "time": show_seconds(as_float(record.get("elapsed_seconds"))),
        "shown": [(n, show.text(n, v)) for n, v in shown if v or (n not in ONE_MODEL and n != "inputImage")],
        "note": error if error and status == "succeeded" else "",
    }


def write_report(out: Path, *, rows: str = "prompt", cols: str | None = None,
                 manifest: pd.DataFrame | None = None) -> Path:  # fmt: skip
    """Build OUT/report.html from OUT's manifest and replace it atomically; returns its path.
    `manifest` is that manifest as its writer or reader holds it (at 100,000 rows, a read is 100 MB)."""
    out = Path(out)
    if not (out / MANIFEST_PARQUET).is_file():
        raise FileNotFoundError(f"{out / MANIFEST_PARQUET} does not exist: run a sweep with --out {out} first")
    manifest = read_manifest(out) if manifest is None else manifest
    videos = [p for p, s in zip(manifest["output_path"].tolist(), manifest["status"].tolist(), strict=True)
              if p and s == "succeeded"]  # fmt: skip  # lists at once: an Arrow cell at a time took 0.25 s
    paths = {p: os.path.join(out, p) for p in videos}
    thumbs = shown_thumbnails(out, manifest)
    title = f"wiro-sweep · {out.resolve().name}"
    options = stamper(manifest)

    def posters(shown: set[str]) -> frozenset[str]:
        return frozenset(p for p, path in paths.items() if path in shown)

    def made_of(shown: set[str]) -> str:
        return options(rows, cols, title, sorted(posters(shown)), sorted(thumbs.items()))

    path = out / REPORT
    if unchanged(path, list(paths.values()), made_of):
        return path  # a reopened OUT with nothing new keeps its page, and no video is looked at
    shown, mark = ensure_posters(paths.values())[1:]
    write_stamped(path, made_of(shown), mark, lambda: build_report(
        manifest, rows=rows, cols=cols, title=title, posters=posters(shown), thumbs=thumbs))  # fmt: skip
    return path
