"""The expanded grid kept in OUT, so that a rerun does not expand it again.

Expanding 100,000 rows (each combination validated and named) takes 2.5 s of a reopen; reading
them back takes 0.1. OUT/.grid.arrow is the frame `load_grid` returned, as an Arrow IPC file, then a
SHA-256 of the key of what it was made from (this version's code, `code_digest`; each grid
file's name and bytes; the axes, the model and the limit on combinations) and of those bytes.
Another key, a damaged or cut file, one that is not a grid's frame, or a frame that would not
come back exactly as it was written, and the grid is expanded again; a cache that cannot be
written is no error. The key is taken before the files are read and again after: a file saved
in between keeps nothing. Grids with start images from local files are not kept: an image's
bytes name its rows, and the key does not read them. Like the journal beside it, the cache is
trusted as far as whoever can write OUT is: it is checked for damage, not for forgery.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

from flows.errors import InputError
from flows.grid import COLUMNS, IMAGE, IMAGE_PATH, MAX_FILE_BYTES, SOURCE, load_grid
from flows.grid.files import already_checked, grid_files, load_key
from flows.store.code import code_digest
from flows.store.manifest import atomic_write
from wiro_tasks.local_files import FileRuleError, open_regular

GRID_CACHE = ".grid.arrow"
KEY = "wiro-sweep-grid"  # a frame's `attrs`: the key of the files it was made from, its rows, read from OUT
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
    """`load_grid`'s frame: the one OUT keeps for these arguments, if it has it, else expanded.
    Either way it carries the key of the files it was made from (in `attrs`, for `keep_grid`),
    unless they changed while they were read."""
    given = already_checked(load_key(paths, axes, model, max_combinations))
    if given is not None:  # the command line's, with its key
        return given
    key = grid_key(paths, axes, model, max_combinations)
    frame = kept = None if key is None else _read(out / GRID_CACHE, key)
    if frame is None:
        frame = load_grid(paths, axes, model=model, max_combinations=max_combinations)
        if key is not None and grid_key(paths, axes, model, max_combinations) != key:
            return frame  # a file saved while it was read: which rows it holds is not known
    if key is not None:
        frame.attrs[KEY] = (key, len(frame), kept is not None)
    return frame


def keep_grid(out: Path, frame: pd.DataFrame) -> bool:
    """Keep `frame`, as `kept_grid` gave it, in OUT for the next run (unless OUT has it, or it
    cannot be kept exactly); whether OUT now keeps it. Its key is the one its files had when it
    was read, not what they hold now: a grid saved since is another key."""
    key, rows, read_back = frame.attrs.get(KEY, (None, None, False))
    if key is None or rows != len(frame) or frame[IMAGE_PATH].notna().any():  # a part of it, or images
        return False
    path = out / GRID_CACHE
    if read_back or _read(path, key) is not None:  # read from OUT (by this run's command line, or this flow)
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
        out.mkdir(parents=True, exist_ok=True)  # a first run's OUT: checked writable, not made yet
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
    except (OSError, FileRuleError, ValueError, InputError):  # what `load_grid` reports, in its own words
        return None
    return digest.hexdigest()


def _read(path: Path, key: str) -> pd.DataFrame | None:
    """The frame kept at `path` for `key`, or None: a value on disk never stops a sweep."""
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
        return frame if _shaped(frame) else None
    except Exception:  # sealed, yet not a grid (edited by hand, another tool): expanded again
        return None


def _shaped(frame: pd.DataFrame) -> bool:
    """Whether `frame` has a grid's columns, types and ids (what `expand_grid` makes)."""
    if list(frame.columns) != [*COLUMNS, IMAGE_PATH, SOURCE]:
        return False
    numbers = {"numFrames": "int64", "steps": "int64", "fps": "int64", "scale": "float64", "width": "Int64",
               "height": "Int64"}  # fmt: skip
    if any(str(frame[name].dtype) != kind for name, kind in numbers.items()):
        return False
    text = [c for c in frame.columns if c not in numbers]
    if not all(frame[c].dtype == object or isinstance(frame[c].dtype, pd.StringDtype) for c in text):
        return False
    ids = frame["row_id"]
    return bool(ids.is_unique and ids.str.fullmatch("[0-9a-f]{16}").all())


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
