"""The manifest: one row per combination linking its inputs to its task, file, cost and time.

`build_manifest` is a pure function of the grid and the journal's row states; `write_manifest`
replaces `manifest.parquet` and `manifest.csv` atomically (temporary file, fsync, rename), so
a reader never sees a torn file. Money stays exact: `cost_usd` is a decimal in Parquet and
plain decimal text in CSV. The Parquet file comes in row groups of `ROW_GROUP_ROWS` with
statistics and a page index on every column, so pyarrow.dataset, DuckDB or pandas' `filters=`
read one column, or the row groups a filter can match, without loading the rest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from flows.errors import InputError
from flows.grid import IMAGE_SHA, IMAGE_URL, SOURCE, is_missing
from flows.store.code import code_digest
from flows.store.files import MAX_MANIFEST_BYTES, open_regular
from flows.store.rowstate import RowState, utc_text
from wiro_tasks.types import MAX_SECONDS, MAX_TASK_COST, finite_decimal

MANIFEST_PARQUET = "manifest.parquet"
MANIFEST_CSV = "manifest.csv"
SUMMARY_JSON = "summary.json"  # the few numbers an index of many OUTs shows, without reading manifests
FINAL_STATUSES = ("succeeded", "failed", "timed_out", "cancelled", "skipped")
NOT_STARTED = "not_started"  # a final manifest's row the sweep stopped before: no task, nothing billed
STATUSES = (*FINAL_STATUSES, NOT_STARTED, "pending", "running")
"""Every status a manifest row may have: `pending` and `running` only while a sweep runs."""
COST_TYPE = pa.decimal128(38, 18)
_COST_QUANTUM = Decimal("1e-18")
_WRITING = threading.Lock()
ROW_GROUP_ROWS = 10_000  # a filter skips a row group whose min/max rule it out; a column is read alone

SCHEMA = pa.schema(
    [
        ("row_id", pa.string()),
        ("model", pa.string()),
        ("prompt", pa.string()),
        ("negativePrompt", pa.string()),
        ("size", pa.string()),
        ("numFrames", pa.int64()),
        ("scale", pa.float64()),
        ("steps", pa.int64()),
        ("fps", pa.int64()),
        ("seed", pa.string()),
        ("inputImage", pa.string()),  # a local start image, the path as the grid gave it
        ("inputImageUrl", pa.string()),  # the URL given, or the one the local image was uploaded to
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("input_image_sha256", pa.string()),
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

    In the manifest a finished run leaves (`final`), a row it never sent a Run request for is
    `not_started` (no task, nothing billed: a rerun submits it); a row it could not bring to an
    end is `failed`, with what to do about it; the journal still knows its task and a rerun
    waits for it.
    """
    if state is None or state.phase in ("new", "intent"):
        error = state.error if state else ""
        if final and state is not None and state.phase == "intent":
            return "failed", (
                "its Run request was sent but not answered before the sweep stopped; rerun with the same --out"
            )
        if final:
            return NOT_STARTED, error or "the sweep stopped before its Run request; a rerun submits it"
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


STATIC = (*(c for c in COLUMNS[: COLUMNS.index("task_id")] if c != IMAGE_URL), SOURCE)
"""The columns from the grid; every other column comes from the journal (`inputImageUrl` too: a
local image's URL is known once it is uploaded)."""
_DYNAMIC = tuple(c for c in COLUMNS if c not in STATIC and c != IMAGE_URL)
STATUS_AT, COST_AT = _DYNAMIC.index("status"), _DYNAMIC.index("cost_usd")  # in `ManifestBuilder.update`'s values


def build_manifest(grid: pd.DataFrame, states: Mapping[str, RowState], *, final: bool = False) -> pd.DataFrame:
    """One row per grid combination, in grid order, with what the journal knows of it."""
    return manifest_frame(ManifestBuilder(grid).table(states, final=final))


_PLAIN_INTS = ("numFrames", "steps", "fps", "attempts")  # never empty: int64; other whole numbers Int64


def manifest_frame(table: pa.Table) -> pd.DataFrame:
    """A built manifest table as the DataFrame its readers get."""
    frame: pd.DataFrame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return frame.astype(dict.fromkeys(_PLAIN_INTS, "int64"))


_WORDED_ALIKE = ("finished", "skipped")  # phases whose rows `row_status` words alike in a final manifest


class ManifestBuilder:
    """Builds one grid's manifest again and again, cheaply, while a sweep runs: the grid's own
    columns are converted once, and a row's journal-derived values are kept until it changes."""

    def __init__(self, grid: pd.DataFrame) -> None:
        static = pa.Table.from_pandas(grid[list(STATIC)], preserve_index=False)
        self._static = {c: static.column(c).cast(SCHEMA.field(c).type) for c in STATIC}
        self._row_ids: list[str] = grid["row_id"].tolist()
        self._rows: dict[str, tuple[Any, ...]] = {}
        urls = grid[IMAGE_URL] if IMAGE_URL in grid else pd.Series([None] * len(grid), dtype=object)
        self._urls: list[str | None] = [None if pd.isna(u) else str(u) for u in urls]
        self._uploading = [bool(s) for s in (grid[IMAGE_SHA] if IMAGE_SHA in grid else [None] * len(grid))]

    def forget(self, row_id: str) -> None:
        """The row's state changed: compute its values anew at the next build."""
        self._rows.pop(row_id, None)

    def update(self, row_id: str, state: RowState | None) -> tuple[tuple[Any, ...] | None, tuple[Any, ...]]:
        """The row's state changed to `state`: its values (`_DYNAMIC` order, `STATUS_AT`, `COST_AT`)
        as the last build or update had them (None if neither did: a row without state), and now."""
        before = self._rows.get(row_id)
        after = self._rows[row_id] = _dynamic(state, final=False)
        return before, after

    def table(self, states: Mapping[str, RowState], *, final: bool = False) -> pa.Table:
        cache, values = self._rows, []
        for row_id in self._row_ids:
            state = states.get(row_id)
            if final and (state is None or state.phase not in _WORDED_ALIKE):
                values.append(_dynamic(state, final=True))  # a final manifest words unfinished rows differently
                continue
            row = cache.get(row_id)
            if row is None:
                row = cache[row_id] = _dynamic(state, final=False)
            values.append(row)
        columns = dict(zip(_DYNAMIC, zip(*values, strict=True), strict=True)) if values else dict.fromkeys(_DYNAMIC, ())
        arrays = []
        for name in COLUMNS:
            if name == IMAGE_URL:
                arrays.append(pa.array(self._image_urls(states), pa.string()))
            elif name in self._static:
                arrays.append(self._static[name])
            elif name in ("submitted_at", "finished_at"):  # ISO text -> timestamps, in one vectorised cast
                arrays.append(pa.array(columns[name], pa.string()).cast(SCHEMA.field(name).type))
            else:
                arrays.append(pa.array(columns[name], SCHEMA.field(name).type))
        return pa.Table.from_arrays(arrays, schema=_with_pandas_metadata())

    def _image_urls(self, states: Mapping[str, RowState]) -> list[str | None]:
        """Each row's start-image URL: the grid's, or the one its local image was uploaded to and
        its last Run request used (none before that)."""
        if not any(self._uploading):
            return self._urls
        urls = []
        for row_id, given, uploads in zip(self._row_ids, self._urls, self._uploading, strict=True):
            state = states.get(row_id) if uploads else None
            sent = state.inputs.get(IMAGE_URL) if state is not None and state.inputs else None
            urls.append(given or (str(sent) if sent else None))
        return urls


@functools.cache
def _with_pandas_metadata() -> pa.Schema:
    """SCHEMA with the pandas metadata a DataFrame's table carries, so that readers get the same
    dtypes back (`output_bytes` as nullable Int64) however the file was built."""
    empty = SCHEMA.empty_table().to_pandas().astype({"output_bytes": "Int64"})
    return SCHEMA.with_metadata(to_table(empty).schema.metadata)


def _dynamic(state: RowState | None, *, final: bool) -> tuple[Any, ...]:
    """A row's journal-derived values, in the order of `_DYNAMIC`."""
    status, error = row_status(state, final)
    if state is None:
        return ("", status, error, "", "", "", None, Decimal(0).quantize(_COST_QUANTUM), None, None, None, 0, "")
    return (
        state.task_id,
        status,
        error,
        state.output_url,
        state.output_path,
        state.output_sha256,
        state.output_bytes,
        state.cost.quantize(_COST_QUANTUM),
        float(state.elapsed_seconds) if state.elapsed_seconds is not None else None,
        state.submitted_at or None,
        state.finished_at or None,
        state.attempts,
        " ".join(state.every_task_id),  # its strays too: every task paid for the row
    )


def to_table(manifest: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(manifest, schema=SCHEMA, preserve_index=False)


def write_manifest(out: Path, manifest: pd.DataFrame | pa.Table, source: bytes | None = None) -> None:
    """Replace both manifest files and the summary, each atomically; writers in several threads
    take turns. The Parquet, written after the CSV, carries a digest of its types and its CSV's
    text: a manifest already on disk whole, with its summary as new (a reopened OUT with nothing
    new), is not written again (1.4 s at 100,000 rows; making the CSV's text to compare takes 0.3).
    It also carries `source` (`manifest_source`), if given: what it was made from (the same table
    without one keeps the file, and its source, as it is)."""
    table = manifest if isinstance(manifest, pa.Table) else to_table(manifest)
    text = _csv_text(table)
    types = table.schema.to_string(show_field_metadata=False, show_schema_metadata=False).encode()
    hashed = hashlib.blake2b(types + b"\0", digest_size=20)
    hashed.update(text)
    digest = hashed.hexdigest().encode()
    metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k not in (DIGEST_KEY, SOURCE_KEY)}
    table = table.replace_schema_metadata({**metadata, DIGEST_KEY: digest, **({SOURCE_KEY: source} if source else {})})
    with _WRITING:  # the CSV before the Parquet, whose digest says the CSV is of its table
        written = _written_stamps(out)
        same = written.get(DIGEST_KEY) == digest and source in (None, written.get(SOURCE_KEY))
        if same and (out / MANIFEST_CSV).is_file() and _summary_is_current(out):
            return
        atomic_write(out / MANIFEST_CSV, lambda path: _write_bytes(path, text))
        atomic_write(out / MANIFEST_PARQUET, lambda path: write_parquet(table, path))
        atomic_write_text(out / SUMMARY_JSON, json.dumps(table_summary(table)))  # as new as the manifest


def manifest_source(journal: tuple[int, ...], grid: pd.DataFrame) -> bytes:
    """What a final manifest is made of, as a digest: the journal as it lies on disk (`Journal.on_disk`:
    its file's identity, size and time), the grid's cells, and this version's code. The same source
    makes the same manifest."""
    digest = hashlib.blake2b(code_digest(), digest_size=20)
    digest.update(repr((journal, list(grid.columns))).encode())
    digest.update(pd.util.hash_pandas_object(grid, index=False).to_numpy().tobytes())
    return digest.hexdigest().encode()


def kept_manifest(out: Path, source: bytes) -> pd.DataFrame | None:
    """The manifest on disk, read, if it was made from `source` and is whole (its CSV there, its
    summary as new): a reopened OUT with nothing new reads it rather than build it again (2 s and
    a few hundred MiB at 100,000 rows). None if not, or if it cannot be read."""
    with _WRITING:
        if _written_stamps(out).get(SOURCE_KEY) != source:
            return None
        if not (out / MANIFEST_CSV).is_file() or not _summary_is_current(out):
            return None
        try:
            frame = read_manifest(out)
        except (OSError, InputError):
            return None
    nullable = [f.name for f in SCHEMA if pa.types.is_integer(f.type) and f.name not in _PLAIN_INTS]
    return frame.astype(dict.fromkeys(nullable, "Int64"))  # as `manifest_frame` types them: `width` of i2v rows


def _summary_is_current(out: Path) -> bool:
    """Whether `summary.json` is as new as the Parquet manifest (`serve`'s index trusts it only then)."""
    try:
        return (out / SUMMARY_JSON).stat().st_mtime_ns >= (out / MANIFEST_PARQUET).stat().st_mtime_ns
    except OSError:
        return False


DIGEST_KEY = b"wiro-sweep-digest"
SOURCE_KEY = b"wiro-sweep-source"


def _csv_text(table: pa.Table) -> pa.Buffer:
    """The CSV manifest's bytes, in pyarrow's memory (60 MB at 100,000 rows: copied to Python's,
    and again to hash them, they were three at once): money as plain decimals, times to the second."""
    for name in ("cost_usd", "submitted_at", "finished_at"):
        column = table.column(name)
        if name == "cost_usd":  # plain decimal text: 0.00351, 0.00 (never 0E-18 nor 0.003510000000000000)
            text = pa.array([money_text(v) for v in column.to_pylist()], pa.string())
        else:
            text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")  # milliseconds, as the unit is
        table = table.set_column(COLUMNS.index(name), name, text)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="needed"))
    return sink.getvalue()


def _write_bytes(path: str, data: pa.Buffer) -> None:
    Path(path).write_bytes(data)


def _written_stamps(out: Path) -> dict[bytes, bytes]:
    """The digest and source in the Parquet manifest's footer, those it has, if it can be read."""
    try:
        with open_regular(out / MANIFEST_PARQUET, MAX_MANIFEST_BYTES, "manifest") as handle:  # never a FIFO's wait
            metadata = pq.read_schema(handle).metadata or {}
    except (OSError, InputError, pa.ArrowException):
        return {}
    return {key: metadata[key] for key in (DIGEST_KEY, SOURCE_KEY) if key in metadata}


def write_parquet(table: pa.Table, path: str) -> None:
    """The manifest's Parquet: row groups of `ROW_GROUP_ROWS`, statistics and a page index on every column."""
    pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS, write_statistics=True, write_page_index=True)


def table_summary(table: pa.Table) -> dict[str, Any]:
    """A manifest's rows by status, its total billed (exact decimal text) and when its last row finished."""
    counts = {str(c["values"]): int(c["counts"]) for c in pc.value_counts(table.column("status")).to_pylist()}
    billed = pc.sum(table.column("cost_usd")).as_py() or Decimal(0)
    last = pc.max(table.column("finished_at")).as_py()
    return {"rows": table.num_rows, "counts": counts, "billed_usd": money_text(billed),
            "last_finished": last.strftime("%Y-%m-%dT%H:%M:%SZ") if last else None}  # fmt: skip


def money_text(value: Decimal) -> str:
    """Money as plain decimal text: 0.00351, 0.00 (never 0E-18 nor 0.003510000000000000)."""
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.00"


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """`write(temporary)`, fsync, then rename over `path`: readers see the old file or the new one, whole."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(str(temporary))
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:  # a full disk: the old file stays whole, and no partial copy is left behind
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write` of a text file, in UTF-8."""
    atomic_write(path, lambda temporary: _write_text(temporary, text))


def _write_text(path: str, text: str) -> None:
    Path(path).write_text(text, encoding="utf-8")


def read_manifest(out: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The Parquet manifest as a DataFrame, every cell of its column's kind (`readable_cells`):
    every column, or only `columns` (each must be there).

    A FIFO, a device or a directory in its place, or a file over `MAX_MANIFEST_BYTES`, is
    `UnreadableFileError`; a cost that is no amount of money is `ManifestError` (both exit 2)."""
    path = out / MANIFEST_PARQUET
    with open_regular(path, MAX_MANIFEST_BYTES, "manifest") as handle:  # one open file: a rewrite cannot mix in
        frame: pd.DataFrame = pq.read_table(handle, columns=None if columns is None else list(columns)).to_pandas()
    return readable_cells(frame, path)


class ManifestError(InputError):
    """A manifest cell the readers cannot take as it is: one line naming the file, row and field; exit 2."""

    def __init__(self, path: Path, row: int, field: str, rule: str, value: object) -> None:
        self.path, self.row, self.field = path, row, field
        shown = value if value is None or isinstance(value, str) else str(value)
        super().__init__(f"{path}, row {row}, field {field}: {rule} (got {shown!r:.80})")


def readable_cells(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """`frame` with each manifest column's cells of its kind, whatever a hand edit or another tool
    wrote (null, 'abc', '1e400', 'soon', NaN, inf). Money is exact or refused: a `cost_usd` that is
    not a finite amount from 0 to MAX_TASK_COST is `ManifestError`, since a bill or a cost ratio
    that left it out would be wrong. Everything else only describes a row: an unreadable elapsed
    time, timestamp or number is unknown (shown as such, never compared); text is text."""
    fixed = {name: _readable(name, frame[name], path) for name in COLUMNS if name in frame.columns}
    return frame.assign(**{name: column for name, column in fixed.items() if column is not None})


def _readable(name: str, column: pd.Series, path: Path) -> pd.Series | None:
    """One column with its cells of its kind (`readable_cells`), or None when they are already."""
    kind = SCHEMA.field(name).type
    if name == "cost_usd":
        return pd.Series([_cost(v, path, row) for row, v in enumerate(column, 1)], column.index, object)
    if pa.types.is_floating(kind):  # elapsed_seconds, scale: NaN, inf and absurd values are unknown
        number = column if pd.api.types.is_float_dtype(column.dtype) else column.map(_number).astype("float64")
        low, high = (0.0, float(MAX_SECONDS)) if name == "elapsed_seconds" else (-1e18, 1e18)
        return number.where((number >= low) & (number < high))
    if pa.types.is_timestamp(kind):
        aware = isinstance(column.dtype, pd.DatetimeTZDtype)
        return None if aware else pd.Series([_moment(v) for v in column], column.index, "datetime64[ms, UTC]")
    if pa.types.is_integer(kind):
        return None if pd.api.types.is_integer_dtype(column.dtype) else pd.Series(column.map(_whole), dtype="Int64")
    if pd.api.types.infer_dtype(column) in ("string", "empty"):
        return None
    return column.map(lambda v: None if is_missing(v) else v if isinstance(v, str) else str(v))


def _cost(value: object, path: Path, row: int) -> Decimal:
    number = finite_decimal(value)
    if number is None or not 0 <= number < MAX_TASK_COST:
        raise ManifestError(path, row, "cost_usd", f"not an amount of money (dollars from 0 to {MAX_TASK_COST:,})",
                            value)  # fmt: skip
    return number


def _number(value: object) -> float:
    number = finite_decimal(value) if not is_missing(value) else None
    return float(number) if number is not None and abs(number) < 10**18 else math.nan


def _whole(value: object) -> int | None:
    number = _number(value)
    return int(number) if number == number and number.is_integer() else None


def _moment(value: object) -> pd.Timestamp | None:
    """A time as UTC: zone-less read as UTC, anything else that is no time (or out of range) unknown."""
    if is_missing(value) or isinstance(value, (bool, int, float, Decimal)):
        return None
    text = utc_text(value)
    try:
        return pd.Timestamp(text) if text else None
    except (ValueError, OverflowError):  # pandas' range ends in 2262
        return None
