"""Compare two sweeps of the same grid, row by row: `wiro-sweep compare BASELINE CURRENT`.

    comparison = compare_outs(Path("runs/nightly-2026-01-01"), Path("runs/nightly-2026-01-02"))
    write_comparison(comparison)      # CURRENT/compare.csv, compare.parquet, compare.html
    comparison.exit_code              # 0 nothing to see, 1 regressions or new/gone rows, 2 undecodable

The manifests are joined by `row_id` (`join`, pure). Each row gets one `change`, in the order a
reader wants them: regressed (succeeded in BASELINE, not in CURRENT; or slower or dearer past
the thresholds), gone, undecodable, changed (the video looks different: PSNR under the threshold,
or another size, frame count or fps), fixed, new, not_started (CURRENT's sweep stopped before
it: not a regression), failing (on both sides), similar (other bytes, same look) and identical
(same sha256; never decoded). Only rows whose bytes differ are decoded
(flows/view/videodiff.py), a few at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from flows.errors import InputError
from flows.grid import BASIC_INPUTS
from flows.grid import COLUMNS as GRID_COLUMNS
from flows.store.manifest import COST_TYPE, MANIFEST_PARQUET, NOT_STARTED, SCHEMA, read_manifest
from flows.store.summary import Summary, summarize
from flows.store.thumbnails import IMAGE_COLUMNS, image_label, text, with_image_columns
from flows.view.videodiff import SAMPLES, VideoDiff, diff_videos

COMPARE_CSV, COMPARE_PARQUET, COMPARE_HTML = "compare.csv", "compare.parquet", "compare.html"
ASSETS = "compare"  # CURRENT/compare/: frame strips, the baseline videos and the start images the page shows
CHANGES = ("regressed", "gone", "undecodable", "changed", "fixed", "new", NOT_STARTED, "failing", "similar",
           "identical")  # fmt: skip
UNFINISHED = ("pending", "running")
_NEEDED = ("row_id", *BASIC_INPUTS, "status", "error", "output_path",
           "output_sha256", "cost_usd", "elapsed_seconds")  # fmt: skip
# A row's inputs as the compare files carry them: the manifest's, image columns included (null in an
# older manifest, which has none), in the manifest's order.
CARRIED = GRID_COLUMNS[1:]  # model, the inputs, input_image_sha256
_IMAGE_TYPES = {name: pa.int64() if dtype == "Int64" else pa.string() for name, dtype in IMAGE_COLUMNS.items()}

COLUMNS = pa.schema(
    [pa.field("row_id", pa.string()),
     *(SCHEMA.field(n) if n in SCHEMA.names else pa.field(n, _IMAGE_TYPES[n]) for n in CARRIED),
     ("change", pa.string()), ("regressed", pa.bool_()), ("note", pa.string()),
     ("status_baseline", pa.string()), ("status_current", pa.string()),
     ("output_changed", pa.bool_()), ("psnr_db", pa.float64()), ("video_change", pa.string()),
     ("video_error", pa.string()), ("cost_baseline", COST_TYPE), ("cost_current", COST_TYPE),
     ("elapsed_baseline", pa.float64()), ("elapsed_current", pa.float64()),
     ("error_baseline", pa.string()), ("error_current", pa.string()),
     ("output_path_baseline", pa.string()), ("output_path_current", pa.string())]
)  # fmt: skip


class CompareError(InputError):
    """Bad input: one line naming the OUT and what is wrong with it; exit code 2."""


@dataclass(frozen=True)
class Thresholds:
    """What counts as a visual change, and how much slower or dearer a row may get."""

    psnr_db: float = 30.0  # mean PSNR under this: the video changed (a re-encode reads ~45)
    elapsed_ratio: float | None = 2.0  # CURRENT's elapsed over BASELINE's past this: regressed
    cost_ratio: float | None = 2.0  # the same for cost
    samples: int = SAMPLES  # frames compared per video


@dataclass
class Comparison:
    baseline: Path
    current: Path
    thresholds: Thresholds
    rows: pd.DataFrame  # one row per row_id, columns as COLUMNS, in CHANGES order
    sides: dict[str, Summary]  # "baseline" and "current"
    strips: dict[str, bytes] = field(default_factory=dict)  # row_id -> PNG frame strip

    @property
    def counts(self) -> dict[str, int]:
        found = self.rows["change"].value_counts()
        return {change: int(found.get(change, 0)) for change in CHANGES}

    @property
    def regressed(self) -> int:
        return int(self.rows["regressed"].sum())

    @property
    def failed(self) -> bool:
        """Something a person must look at: a regression, a new or gone row, an unreadable video."""
        c = self.counts
        return bool(self.regressed or c["new"] or c["gone"] or len(self.undecodable))

    @property
    def undecodable(self) -> pd.DataFrame:
        """Rows with a video that would not decode (marked; every other row was compared)."""
        return self.rows[self.rows["video_error"] != ""]

    @property
    def exit_code(self) -> int:
        return 2 if len(self.undecodable) else 1 if self.failed else 0

    def message(self) -> str:
        """One line, e.g. `2 of 12 rows regressed, 1 fixed, 3 changed, 6 unchanged; 1 gone`."""
        c = self.counts
        unchanged = c["similar"] + c["identical"] + c["failing"]
        line = (f"{self.regressed} of {len(self.rows)} rows regressed, {c['fixed']} fixed, "
                f"{c['changed']} changed, {unchanged} unchanged")  # fmt: skip
        extra = [f"{c[k]} {k}" for k in ("new", "gone", "undecodable", NOT_STARTED) if c[k]]
        return str(line + ("; " + ", ".join(extra) if extra else ""))

    def lines(self, limit: int = 20) -> list[str]:
        """The short summary `wiro-sweep compare` prints."""
        b, c = self.sides["baseline"], self.sides["current"]
        lines = [f"{self.baseline} -> {self.current}: {self.message()}",
                 f"cost ${b.cost:.4f} -> ${c.cost:.4f}; elapsed p50 {seconds_text(b.p50)} -> {seconds_text(c.p50)}, "
                 f"p95 {seconds_text(b.p95)} -> {seconds_text(c.p95)}"]  # fmt: skip
        shown = self.rows[self.rows["regressed"] | self.rows["change"].isin(("gone", "undecodable", "changed", "new"))]
        for row in shown.head(limit).to_dict("records"):
            label = "regressed" if row["regressed"] else row["change"]
            image = f"  image {_short(image_label(row), 30)}" if text(row["input_image_sha256"] or
                                                                   row["inputImageUrl"]) else ""  # fmt: skip
            lines.append(f"  {label:<11} {row['row_id'][:8]}  {_short(row['prompt'], 40)}{image}  seed {row['seed']}: "
                         f"{row['note']}")  # fmt: skip
        if len(shown) > limit:
            lines.append(f"  …and {len(shown) - limit} more in {self.current / COMPARE_CSV}")
        return lines


def seconds_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _short(value: Any, limit: int) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------ reading an OUT


def load_out(out: Path, role: str) -> pd.DataFrame:
    """OUT's manifest, or a CompareError naming OUT and what is wrong with it."""
    if not out.exists():
        raise CompareError(f"{role} {out}: no such folder")
    if not out.is_dir():
        raise CompareError(f"{role} {out}: not a folder")
    if not (out / MANIFEST_PARQUET).is_file():
        raise CompareError(f"{role} {out}: has no {MANIFEST_PARQUET} (not a wiro-sweep OUT, or its sweep never ran)")
    try:
        manifest = read_manifest(out)
    except InputError as exc:  # not a regular file, or a cost that is no amount of money
        raise CompareError(f"{role} {exc}") from None
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise CompareError(f"{role} {out / MANIFEST_PARQUET}: unreadable ({one_line(exc)})") from None
    missing = [c for c in _NEEDED if c not in manifest.columns]
    if missing:
        raise CompareError(f"{role} {out / MANIFEST_PARQUET}: not a wiro-sweep manifest (no column {missing[0]})")
    manifest = with_image_columns(manifest)
    odd = manifest["row_id"][~manifest["row_id"].astype(str).str.fullmatch(r"[0-9a-f]{8,64}")]
    if len(odd):
        raise CompareError(
            f"{role} {out / MANIFEST_PARQUET}: row_id {str(odd.iloc[0])[:80]!r} is not a wiro-sweep row id"
        )
    twice = manifest["row_id"][manifest["row_id"].duplicated()]
    if len(twice):
        raise CompareError(f"{role} {out / MANIFEST_PARQUET}: row_id {twice.iloc[0]} appears twice")
    unfinished = int(manifest["status"].isin(UNFINISHED).sum())
    if unfinished:
        raise CompareError(f"{role} {out}: {unfinished} rows still pending or running; compare once its sweep has "
                           "finished (rerun it with the same --out)")  # fmt: skip
    return manifest


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


# ------------------------------------------------------------------ the pure part


def join(baseline: pd.DataFrame, current: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of both manifests by row_id: CURRENT's order, then rows gone from it; each side's
    fields suffixed `_baseline` / `_current` (None where the row is not on that side)."""
    if len(baseline) and len(current) and not set(baseline["row_id"]) & set(current["row_id"]):
        raise CompareError("BASELINE and CURRENT share no row_id: they are sweeps of different grids")
    before = {r["row_id"]: r for r in baseline.to_dict("records")}
    after = {r["row_id"]: r for r in current.to_dict("records")}
    order = list(after) + [r for r in before if r not in after]
    joined = []
    for row_id in order:
        sides = {"baseline": before.get(row_id), "current": after.get(row_id)}
        inputs = sides["current"] or sides["baseline"]
        assert inputs is not None
        row: dict[str, Any] = {"row_id": row_id, **{name: _value(inputs.get(name)) for name in CARRIED}}
        for name in ("width", "height"):
            row[name] = None if row[name] is None else int(row[name])
        for role, side in sides.items():
            row[f"status_{role}"] = side["status"] if side else None
            row[f"error_{role}"] = (side["error"] or "") if side else None
            row[f"output_path_{role}"] = (side["output_path"] or "") if side else None
            row[f"sha_{role}"] = (side["output_sha256"] or "") if side else ""
            row[f"cost_{role}"] = Decimal(side["cost_usd"]) if side else None
            elapsed = side["elapsed_seconds"] if side else None
            row[f"elapsed_{role}"] = None if elapsed is None or pd.isna(elapsed) else float(elapsed)
        joined.append(row)
    return joined


def _value(value: Any) -> Any:
    """A manifest cell as the compare table holds it: None where it is missing (NaN, NA)."""
    return None if value is None or value is pd.NA or (isinstance(value, float) and value != value) else value


def video(out: Path, output_path: str) -> Path | None:
    """OUT's video at the manifest's relative `output_path`, or None for a path that leaves OUT."""
    path = (out / output_path).resolve()
    return path if output_path and path.is_relative_to(out.resolve()) and path != out.resolve() else None


def needs_decoding(row: dict[str, Any]) -> bool:
    """Both sides succeeded with other bytes: only then is there something to look at."""
    both = row["status_baseline"] == row["status_current"] == "succeeded"
    return both and str(row["sha_baseline"]) != str(row["sha_current"])


def judge(row: dict[str, Any], diff: VideoDiff | None, t: Thresholds) -> dict[str, Any]:
    """The row's change, whether it regressed, a note saying why, and what its videos showed."""
    before, after = row["status_baseline"], row["status_current"]
    ok_before, ok_after = before == "succeeded", after == "succeeded"
    diff = diff or VideoDiff()
    reasons = []
    if before is None:
        change, note = "new", "not in BASELINE"
    elif after is None:
        change, note = "gone", f"{before} in BASELINE, not in CURRENT"
        reasons = [note] if ok_before else []
    elif after == NOT_STARTED:
        change, note = NOT_STARTED, f"{before} in BASELINE; CURRENT's sweep stopped before it"
    else:
        if ok_before and not ok_after:
            reasons.append(f"{before} -> {after}" + (f": {row['error_current']}" if row["error_current"] else ""))
        if ok_before and ok_after:
            reasons += _slower(row, "elapsed", t.elapsed_ratio, lambda v: f"{v:.1f} s")
            reasons += _slower(row, "cost", t.cost_ratio, lambda v: f"${v:.4f}")
        looks = [diff.change] if diff.change else []
        if diff.psnr_db is not None:
            looks.append(f"{diff.psnr_db:.1f} dB")
        if reasons:
            change, note = "regressed", "; ".join(reasons + looks)
        elif diff.error:
            change, note = "undecodable", diff.error
        elif diff.change or (diff.psnr_db is not None and diff.psnr_db < t.psnr_db):
            under = diff.psnr_db is not None and diff.psnr_db < t.psnr_db
            change, note = "changed", "; ".join(looks) + (f" (under {t.psnr_db:g} dB)" if under else "")
        elif not ok_before and ok_after:
            change, note = "fixed", f"{before} -> {after}"
        elif not ok_after:
            error = f": {row['error_current']}" if row["error_current"] else ""
            change, note = "failing", f"{before} -> {after}{error}"
        elif needs_decoding(row) and diff.psnr_db is None:  # not looked at (judged from the manifests alone)
            change, note = "changed", "other bytes, not decoded"
        elif needs_decoding(row):
            change, note = "similar", f"other bytes, looks the same: {diff.psnr_db:.1f} dB"
        else:
            change, note = "identical", "same bytes"
    return {"change": change, "regressed": bool(reasons), "note": note,
            "output_changed": row["sha_baseline"] != row["sha_current"],
            "psnr_db": None if diff.psnr_db is None else round(diff.psnr_db, 2),
            "video_change": diff.change, "video_error": diff.error}  # fmt: skip


def _slower(row: dict[str, Any], what: str, ratio: float | None, show: Callable[[Any], str]) -> list[str]:
    before, after = row[f"{what}_baseline"], row[f"{what}_current"]
    if ratio is None or before is None or after is None or before <= 0 or float(after) <= float(before) * ratio:
        return []
    return [f"{what} {show(before)} -> {show(after)} (x{float(after) / float(before):.1f}, over x{ratio:g})"]


def table(joined: list[dict[str, Any]], judged: list[dict[str, Any]]) -> pd.DataFrame:
    """The compare table: one row per row_id, COLUMNS, ordered by change then grid order."""
    records = [{**row, **verdict} for row, verdict in zip(joined, judged, strict=True)]
    rank = {change: n for n, change in enumerate(CHANGES)}
    records.sort(key=lambda r: 0 if r["regressed"] else 1 + rank[r["change"]])  # stable: grid order within
    arrays = {name: pa.array([r[name] for r in records], COLUMNS.field(name).type) for name in COLUMNS.names}
    frame: pd.DataFrame = pa.Table.from_pydict(arrays, schema=COLUMNS).to_pandas()
    return frame


# ------------------------------------------------------------------ the edges: files


def compare_outs(baseline: Path, current: Path, thresholds: Thresholds | None = None,
                 workers: int | None = None) -> Comparison:  # fmt: skip
    """Join, decode the rows whose bytes differ (`workers` at a time), judge every row."""
    thresholds = thresholds or Thresholds()
    baseline, current = Path(baseline).resolve(), Path(current).resolve()
    if baseline == current:
        raise CompareError(f"BASELINE and CURRENT are the same folder: {current}")
    before, after = load_out(baseline, "BASELINE"), load_out(current, "CURRENT")
    joined = join(before, after)

    def look(row: dict[str, Any]) -> VideoDiff | None:
        if not needs_decoding(row):
            return None
        before, after = video(baseline, row["output_path_baseline"]), video(current, row["output_path_current"])
        if before is None or after is None:
            role, out = ("baseline", baseline) if before is None else ("current", current)
            return VideoDiff(error=f"{role} output_path {row[f'output_path_{role}']!r} is not a file under {out}")
        return diff_videos(before, after, threshold_db=thresholds.psnr_db, samples=thresholds.samples)

    changed = [n for n, row in enumerate(joined) if needs_decoding(row)]  # only these are decoded
    diffs: list[VideoDiff | None] = [None] * len(joined)
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        for n, diff in zip(changed, pool.map(look, [joined[n] for n in changed]), strict=True):
            diffs[n] = diff
    judged = [judge(row, diff, thresholds) for row, diff in zip(joined, diffs, strict=True)]
    strips = {row["row_id"]: d.strip for row, d in zip(joined, diffs, strict=True) if d is not None and d.strip}
    sides = {"baseline": summarize(before), "current": summarize(after)}
    return Comparison(baseline, current, thresholds, table(joined, judged), sides, strips)
