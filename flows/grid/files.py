"""Reading grid files: CSV and Parquet, bounded in size, every cell as text or a value, columns checked."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flows.grid.columns import (
    GRID_SUFFIXES,
    INPUTS,
    MAX_FILE_BYTES,
    SOURCE,
    GridError,
    _hint,
    raise_all,
)
from wiro_tasks.local_files import FileRuleError, open_regular


def grid_files(paths: Iterable[str | Path]) -> list[Path]:
    """The grid files named, with each directory standing for its CSV and Parquet files."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in GRID_SUFFIXES and p.is_file())
            if not found:
                raise GridError(str(path), "directory holds no .csv or .parquet file")
            files.extend(found)
        elif not path.exists():
            raise GridError(str(path), "no such file")
        else:
            files.append(path)
    if not files:
        raise GridError("", "no grid files given")
    return files


_CHECKED: ContextVar[tuple[tuple[Any, ...], pd.DataFrame] | None] = ContextVar("checked_grid", default=None)


def load_key(paths: Iterable[str | Path], axes: Mapping[str, Sequence[object]] | None, model: str | None,
             most: int) -> tuple[Any, ...]:  # fmt: skip
    """A load's arguments, as `checked_grid` compares them: the files by where they are."""
    return tuple(str(Path(p).resolve()) for p in paths), repr(sorted((axes or {}).items())), model, most


@contextmanager
def checked_grid(frame: pd.DataFrame, key: tuple[Any, ...]) -> Iterator[None]:
    """Inside, a load of the same arguments (`load_key`) takes a copy of `frame`, the grid the
    command line checked, rather than reading it again for its flow (2 s at 100,000 rows).
    Nothing of it outlives the block: a worker's or a served flow's loads always read."""
    token = _CHECKED.set((key, frame))
    try:
        yield
    finally:
        _CHECKED.reset(token)


def already_checked(key: tuple[Any, ...]) -> pd.DataFrame | None:
    """The frame `checked_grid` holds for a load of these arguments, if any (a copy)."""
    given = _CHECKED.get()
    return given[1].copy() if given is not None and given[0] == key else None


def read_grid_file(path: Path, problems: list[GridError] | None = None) -> pd.DataFrame:
    """One file's rows as given (strings, numbers or lists), plus a `source` column `file:row`.

    A CSV row with the wrong number of fields is left out and added to `problems`, so that the
    other rows are still checked (without `problems`, it raises)."""
    name = str(path)
    found: list[GridError] = []
    try:
        frame = _read_grid_file(path, name, found)
    except OSError as exc:
        raise GridError(name, f"cannot be read: {exc.strerror or exc}") from None
    if problems is None:
        raise_all(found)
    else:
        problems += found
    return frame


def _read_grid_file(path: Path, name: str, problems: list[GridError]) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise GridError(name, f"unsupported file type {suffix!r}: use .csv or .parquet")
    try:
        handle = open_regular(path, None, "grid file")  # a FIFO, a device, a directory: refused, never read
    except FileRuleError as exc:
        raise GridError(name, exc.rule) from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise GridError(name, f"file is {size:,} bytes, more than the {MAX_FILE_BYTES:,} allowed")
        if size == 0:
            raise GridError(name, "file is empty")
        if suffix == ".csv":
            frame, numbers = _read_csv(handle, name, problems)
        else:
            frame = _read_parquet(handle, name)
            numbers = list(range(1, len(frame) + 1))
    if frame.empty and not problems:
        raise GridError(name, "file has a header but no rows")
    _check_columns(name, list(frame.columns))
    frame[SOURCE] = [f"{name}:{n}" for n in numbers]
    return frame


def _read_csv(file: BinaryIO, name: str, problems: list[GridError]) -> tuple[pd.DataFrame, list[int]]:
    """The rows of the right length, and their numbers (1 = the first row after the header)."""
    csv.field_size_limit(MAX_FILE_BYTES)  # long prompts get their own, clearer rule
    try:
        with io.TextIOWrapper(file, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise GridError(name, "no header row: the first line must name the columns")
            columns = [h.strip() for h in header]
            rows: list[list[str]] = []
            numbers: list[int] = []
            number = 0
            for record in reader:
                if not record or all(not cell.strip() for cell in record):
                    continue
                number += 1
                if len(record) != len(columns):
                    problems.append(GridError(name, f"has {len(record)} fields, the header has {len(columns)} "
                                              f"(line {reader.line_num})", row=number))  # fmt: skip
                    continue
                rows.append(record)
                numbers.append(number)
    except UnicodeDecodeError as exc:
        raise GridError(name, f"is not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise GridError(name, f"malformed CSV: {exc}") from None
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise GridError(name, f"column {duplicates[0]!r} appears twice in the header")
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    return frame.map(lambda v: None if isinstance(v, str) and not v.strip() else v), numbers


def _read_parquet(file: BinaryIO, name: str) -> pd.DataFrame:
    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError) as exc:
        raise GridError(name, f"not a readable Parquet file ({type(exc).__name__})") from None
    if not table.column_names:
        raise GridError(name, "Parquet file has no columns")
    for column in table.schema:
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            kind = kind.value_type
        if pa.types.is_dictionary(kind):  # e.g. a pandas categorical: its values are what count
            kind = kind.value_type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
                or pa.types.is_floating(kind) or pa.types.is_null(kind)):  # fmt: skip
            raise GridError(name, f"column type {column.type} is not text, a number or a list of those",
                            field=column.name)  # fmt: skip
    rows = table.to_pylist()
    return pd.DataFrame(rows, columns=table.column_names, dtype=object)


def _check_columns(name: str, columns: Sequence[str]) -> None:
    for column in columns:
        if column not in INPUTS:
            raise GridError(name, f"unknown column {column!r}{_hint(str(column))}; columns are {', '.join(INPUTS)}")
    if "prompt" not in columns:
        raise GridError(name, "no prompt column")
