"""The index page of `wiro-sweep serve`: each OUT with its date, rows by status, billed, and links.

It reads each OUT's `summary.json` (a few hundred bytes written beside the manifest), not its
manifest, so the page opens at once over many OUTs; an OUT without one, or whose manifest is
newer (written before summaries existed), has its summary made from three manifest columns,
kept until the manifest's mtime changes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import pyarrow as pa
import pyarrow.parquet as pq

from flows.errors import InputError
from flows.store.files import MAX_MANIFEST_BYTES, MAX_SMALL_JSON_BYTES, open_regular, read_json
from flows.store.manifest import MANIFEST_PARQUET, SUMMARY_JSON, table_summary
from flows.view.cells import as_decimal, by_status, show_money, status_label, status_slug

REPORT, COMPARE = "report.html", "compare.html"
_CACHE: dict[Path, tuple[int, dict[str, Any]]] = {}  # OUT -> (manifest's mtime_ns, its summary)
_CACHING = threading.Lock()


def outs_under(root: Path) -> list[Path]:
    """`root` when it is an OUT (a manifest or a report), else the OUTs directly inside it."""

    def is_out(folder: Path) -> bool:
        return (folder / MANIFEST_PARQUET).is_file() or (folder / REPORT).is_file()

    if is_out(root):
        return [root]
    return sorted(f for f in root.iterdir() if f.is_dir() and not f.name.startswith(".") and is_out(f))


def out_summary(out: Path) -> dict[str, Any] | None:
    """The OUT's summary: its `summary.json` when it is as new as the manifest, else made from the
    manifest (cached by the manifest's mtime); None without a readable manifest."""
    try:
        stamp = (out / MANIFEST_PARQUET).stat().st_mtime_ns
    except OSError:
        return None
    try:
        if (out / SUMMARY_JSON).stat().st_mtime_ns >= stamp:
            summary = read_json(out / SUMMARY_JSON, MAX_SMALL_JSON_BYTES, "summary")
            if isinstance(summary, dict) and isinstance(summary.get("counts"), dict):
                return summary
    except (OSError, ValueError, InputError):  # none, or no regular file of JSON: made from the manifest
        pass
    with _CACHING:
        cached = _CACHE.get(out)
    if cached and cached[0] == stamp:
        return cached[1]
    try:
        with open_regular(out / MANIFEST_PARQUET, MAX_MANIFEST_BYTES, "manifest") as handle:
            summary = table_summary(pq.read_table(handle, columns=["status", "cost_usd", "finished_at"]))
    except (OSError, ValueError, KeyError, InputError, pa.ArrowException):  # torn, foreign, too big: no numbers
        return None
    with _CACHING:
        _CACHE[out] = (stamp, summary)
    return summary


def out_entry(out: Path) -> dict[str, Any]:
    """What the index shows of one OUT."""
    summary = out_summary(out) or {}
    counts = {str(s): int(n) for s, n in (summary.get("counts") or {}).items() if str(n).isdigit()}
    when = summary.get("last_finished") or _mtime_text(out)
    base = quote(str(out))
    return {
        "name": out.name,
        "path": str(out),
        "when": str(when).replace("T", " ").removesuffix("Z") + (" UTC" if when else ""),
        "rows": summary.get("rows", "—"),
        "counts": [(status_slug(s), n, status_label(s)) for s, n in by_status(counts)],
        "billed": show_money(as_decimal(summary.get("billed_usd"))) if summary else "—",
        "report": f"{base}/{REPORT}" if (out / REPORT).is_file() else "",
        "compare": f"{base}/{COMPARE}" if (out / COMPARE).is_file() else "",
    }


def _mtime_text(out: Path) -> str:
    try:
        return datetime.fromtimestamp(out.stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%MZ")
    except OSError:
        return ""


def index_page(roots: Sequence[Path]) -> str:
    """The index of every OUT under `roots`, newest first within each."""
    groups = []
    for root in roots:
        entries = sorted((out_entry(out) for out in outs_under(root)), key=lambda e: str(e["when"]), reverse=True)
        groups.append({"root": str(root), "outs": entries})
    return _template().render(groups=groups)


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("flows.view", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return environment.get_template("index.html.j2")
