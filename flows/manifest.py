"""The manifest: one row per combination linking its inputs to its task, file, cost and time.

`build_manifest` is a pure function of the grid and the journal's row states; `write_manifest`
replaces `manifest.parquet` and `manifest.csv` atomically (temporary file, fsync, rename), so
a reader never sees a torn file. Money stays exact: `cost_usd` is a decimal in Parquet and
plain decimal text in CSV.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .grid import INPUTS, SOURCE
from .journal import RowState

MANIFEST_PARQUET = "manifest.parquet"
MANIFEST_CSV = "manifest.csv"
FINAL_STATUSES = ("succeeded", "failed", "timed_out", "cancelled", "skipped")
COST_TYPE = pa.decimal128(38, 18)
_COST_QUANTUM = Decimal("1e-18")
_WRITING = threading.Lock()

SCHEMA = pa.schema(
    [
        ("row_id", pa.string()),
        ("prompt", pa.string()),
        ("negativePrompt", pa.string()),
        ("size", pa.string()),
        ("numFrames", pa.int64()),
        ("scale", pa.float64()),
        ("steps", pa.int64()),
        ("fps", pa.int64()),
        ("seed", pa.string()),
        ("task_id", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("output_url", pa.string()),
        ("output_path", pa.string()),
        ("output_sha256", pa.string()),
        ("output_bytes", pa.int64()),
        ("cost_usd", COST_TYPE),
        ("elapsed_seconds", pa.float64()),
        ("submitted_at", pa.timestamp("ms", tz="UTC")),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
        ("attempts", pa.int64()),
        ("task_ids", pa.string()),
        ("source", pa.string()),
    ]
)
COLUMNS = SCHEMA.names


def row_status(state: RowState | None, final: bool = False) -> tuple[str, str]:
    """The manifest status and error of a row; `pending` and `running` only while a sweep runs.

    In the manifest a finished run leaves (`final`), a row it could not bring to an end is
    `failed`, with what to do about it; the journal still knows its task and a rerun waits for it.
    """
    if state is None or state.phase in ("new", "intent"):
        error = state.error if state else ""
        if final:
            return "failed", f"not submitted: {error or 'the sweep stopped first'}"
        return "pending", error
    if state.phase in ("submitted", "unknown"):
        if final:
            task = f"task {state.task_id}" if state.task_id else "a task whose Run answer was lost"
            return "failed", f"{task} not seen to finish ({state.error or 'stopped'}); rerun with the same --out"
        return "running", state.error
    if state.phase == "skipped":
        return "skipped", state.error
    if state.status == "succeeded" and not state.downloaded:
        return (
            "failed",
            state.error or "paid output not downloaded yet: rerun with the same --out to fetch it",
        )
    return state.status, state.error


def build_manifest(grid: pd.DataFrame, states: Mapping[str, RowState], *, final: bool = False) -> pd.DataFrame:
    """One row per grid combination, in grid order, with what the journal knows of it."""
    rows = []
    for record in grid.to_dict("records"):
        state = states.get(record["row_id"])
        status, error = row_status(state, final)
        row = {c: record[c] for c in ("row_id", *INPUTS)}
        row.update(
            task_id=state.task_id if state else "",
            status=status,
            error=error,
            output_url=state.output_url if state else "",
            output_path=state.output_path if state else "",
            output_sha256=state.output_sha256 if state else "",
            output_bytes=state.output_bytes if state else None,
            cost_usd=(state.cost if state else Decimal(0)).quantize(_COST_QUANTUM),
            elapsed_seconds=float(state.elapsed_seconds) if state and state.elapsed_seconds is not None else None,
            submitted_at=_time(state.submitted_at if state else ""),
            finished_at=_time(state.finished_at if state else ""),
            attempts=state.attempts if state else 0,
            task_ids=" ".join(state.task_ids) if state else "",
            source=record[SOURCE],
        )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"output_bytes": "Int64"})


def _time(value: str) -> pd.Timestamp | None:
    return pd.Timestamp(value) if value else None


def to_table(manifest: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(manifest, schema=SCHEMA, preserve_index=False)


def write_manifest(out: Path, manifest: pd.DataFrame) -> None:
    """Replace both manifest files, each atomically; writers in several threads take turns."""
    table = to_table(manifest)
    csv_table = table
    for name in ("cost_usd", "submitted_at", "finished_at"):
        text = [_money(v) if name == "cost_usd" else _iso(v) for v in manifest[name]]
        csv_table = csv_table.set_column(COLUMNS.index(name), name, pa.array(text, pa.string()))
    options = pacsv.WriteOptions(quoting_style="needed")
    with _WRITING:
        _atomic(out / MANIFEST_PARQUET, lambda path: pq.write_table(table, path))
        _atomic(out / MANIFEST_CSV, lambda path: pacsv.write_csv(csv_table, path, options))


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _money(value: Decimal) -> str:
    text = format(Decimal(value).normalize(), "f")
    return text if "." in text else f"{text}.00"


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    write(str(temporary))
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_manifest(out: Path) -> pd.DataFrame:
    """The Parquet manifest as a DataFrame (cost_usd as Decimal)."""
    with (out / MANIFEST_PARQUET).open("rb") as handle:  # one open file: a rewrite cannot mix in
        frame: pd.DataFrame = pq.read_table(handle).to_pandas()
    return frame
