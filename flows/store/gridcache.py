"""The expanded grid kept in OUT, so that a rerun does not expand it again.

Expanding 100,000 rows (each combination validated and named) takes 2.5 s of a reopen; reading
them back takes 0.1. OUT/.grid.arrow is the frame `load_grid` returned, as an Arrow IPC file, then a
SHA-256 of the key of what it was made from (this version's code, `code_digest`; each grid
file's name and bytes; the axes, the model and the limit on combinations) and of those bytes.
Another key, a damaged or cut file, or a frame that would not come back exactly as it was
written, and the grid is expanded again; a cache that cannot be written is no error. Grids
with start images from local files are not kept: an image's bytes name its rows, and the key
does not read them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

from flows.grid import COLUMNS, IMAGE, IMAGE_PATH, MAX_FILE_BYTES, SOURCE, load_grid
from flows.grid.files import already_checked, grid_files, load_key
from flows.store.code import code_digest
from flows.store.manifest import atomic_write
from wiro_tasks.local_files import FileRuleError, open_regular

GRID_CACHE = ".grid.arrow"
MAX_CACHE_BYTES = 1 << 30
_SEAL = 32  # bytes of SHA-256 after the frame

logger = logging.getLogger("flows.store")


def kept_grid(
    out: Path,
    paths: Sequence[str | Path],
    axes: Mapping[str, Sequence[object]] | None = None,
    *,
    model: str | None = None,
    max_combinations: int,
) -> pd.DataFrame:
    """`load_grid`'s frame: the one OUT keeps for these arguments, if it has it, else expanded."""
    given = already_checked(load_key(paths, axes, model, max_combinations))
    if given is not None:
        return given
    key = grid_key(paths, axes, model, max_combinations)
    kept = None if key is None else _read(out / GRID_CACHE, key)
    if kept is not None:
        return kept
    return load_grid(paths, axes, model=model, max_combinations=max_combinations)


def keep_grid(
    out: Path,
    frame: pd.DataFrame,
    paths: Sequence[str | Path],
    axes: Mapping[str, Sequence[object]] | None = None,
    *,
    model: str | None = None,
    max_combinations: int,
) -> bool:
    """Keep `frame`, the grid of these arguments, in OUT for the next run (unless OUT has it, or it
    cannot be kept exactly); whether OUT now keeps it."""
    key = grid_key(paths, axes, model, max_combinations)
    if key is None or frame[IMAGE_PATH].notna().any():
        return False
    path = out / GRID_CACHE
    if _read(path, key) is not None:
        return True
    try:
        sink = pa.BufferOutputStream()
        feather.write_feather(pa.Table.from_pandas(frame, preserve_index=False), sink, compression="uncompressed")
        data = sink.getvalue().to_pybytes()
        same = _same(_frame(data), frame)
    except (pa.ArrowException, ValueError, TypeError):  # a column Arrow cannot hold
        same = False
    if not same:  # kept only if it comes back as it was: else expanded every time, as before
        return False
    try:
        atomic_write(path, lambda temporary: _write(temporary, data, _seal(key, data)))
    except OSError as exc:  # a full disk, a read-only OUT: the next run expands the grid again
        logger.warning("could not keep the expanded grid in %s: %s", path, exc)
        return False
    return True


def grid_key(
    paths: Iterable[str | Path], axes: Mapping[str, Sequence[object]] | None, model: str | None, most: int
) -> str | None:
    """What a grid's expansion is made from, as a digest; None where it cannot be kept or said."""
    if axes and IMAGE in axes:
        return None
    digest = hashlib.sha256(code_digest())
    digest.update(repr((sorted((axes or {}).items()), model, most)).encode())
    try:
        for file in grid_files(paths):
            with open_regular(file, MAX_FILE_BYTES, "grid file") as handle:
                digest.update(b"\0" + str(file).encode() + b"\0" + handle.read())
    except (OSError, FileRuleError, ValueError):  # what `load_grid` reports, each in its own words
        return None
    return digest.hexdigest()


def _read(path: Path, key: str) -> pd.DataFrame | None:
    """The frame kept at `path` for `key`, or None."""
    try:
        with open_regular(path, MAX_CACHE_BYTES, "grid cache") as handle:
            sealed = handle.read()
    except (OSError, FileRuleError):
        return None
    data = memoryview(sealed)[:-_SEAL]  # not copied: the frame's columns are read from these bytes
    if len(sealed) <= _SEAL or sealed[-_SEAL:] != _seal(key, data):
        return None
    try:
        frame = _frame(data)
    except (pa.ArrowException, ValueError, TypeError):
        return None
    return frame if list(frame.columns) == [*COLUMNS, IMAGE_PATH, SOURCE] else None


def _write(path: str, *parts: bytes) -> None:
    with open(path, "wb") as handle:
        for part in parts:
            handle.write(part)


def _seal(key: str, data: bytes | memoryview) -> bytes:
    digest = hashlib.sha256(key.encode() + b"\0")
    digest.update(data)
    return digest.digest()


def _frame(data: bytes | memoryview) -> pd.DataFrame:
    frame: pd.DataFrame = feather.read_table(pa.BufferReader(data)).to_pandas()
    return frame


def _same(back: pd.DataFrame, frame: pd.DataFrame) -> bool:
    """Whether `back` is `frame`: columns, types and every cell's value and type."""
    if list(back.columns) != list(frame.columns) or not back.dtypes.equals(frame.dtypes) or not back.equals(frame):
        return False
    return all(
        [type(v) for v in back[c].tolist()] == [type(v) for v in frame[c].tolist()]
        for c in frame.columns
        if frame[c].dtype == object
    )
