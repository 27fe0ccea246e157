"""Prompt grids: read CSV/Parquet files, expand list cells and axes, validate, give each row an id.

Pure functions over DataFrames, with file reading at the edge. Every problem is a `GridError`
naming the file, row and field, found before anything is submitted; several at once come as one
`GridErrors` listing each (up to `MAX_REPORTED`), so a person fixes them in one go.

A row with a start image (`inputImage`, a local file, or `inputImageUrl`) runs the image-to-video
model and a row without one text-to-video, unless a model is forced. Local images are checked
here (type, size, readable) and identified by their content: a row's id covers the image's
sha256, not its path.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pandas as pd

from flows.grid.columns import (
    _OTHER_SHAPE,
    BASIC_INPUTS,
    COLUMNS,
    DEFAULT_MAX_COMBINATIONS,
    GRID_SUFFIXES,
    IMAGE,
    IMAGE_INPUTS,
    IMAGE_PATH,
    IMAGE_SHA,
    IMAGE_SUFFIXES,
    IMAGE_URL,
    INPUTS,
    MAX_FILE_BYTES,
    MAX_REPORTED,
    MODEL,
    PLACEHOLDER_URL,
    SOURCE,
    GridError,
    GridErrors,
    _hint,
    raise_all,
)
from flows.grid.files import already_checked, checked_grid, grid_files, load_key, read_grid_file
from flows.grid.ids import _id_of, canonical, row_id
from wiro_tasks import IMAGE_TO_VIDEO, TEXT_TO_VIDEO, InputValidationError, ModelSpec, model_spec
from wiro_tasks.images import ImageCheckError, ImageInfo, check_image
from wiro_tasks.inputs import Memo, Value


def parse_axes(specs: Iterable[str]) -> dict[str, list[str]]:
    """`NAME=V1,V2,...` options into a mapping; each name once, each value non-empty."""
    axes: dict[str, list[str]] = {}
    problems: list[GridError] = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(GridError("--axis", f"{spec!r} is not NAME=V1,V2,..."))
        elif name not in INPUTS:
            problems.append(GridError("--axis", f"unknown input {name!r}{_hint(name)}; inputs are {', '.join(INPUTS)}"))
        elif name in axes:
            problems.append(GridError("--axis", f"{name} is given twice"))
        else:
            items = [v.strip() for v in values.split(",")]
            if not items or any(not v for v in items):
                problems.append(GridError("--axis", f"{name} has an empty value in {values!r}"))
            axes[name] = items
    raise_all(problems)
    return axes


def check_axes(axes: Mapping[str, object] | None) -> dict[str, list[str]]:
    """Axes given as a mapping (a flow parameter): known inputs, each a non-empty list of values."""
    checked: dict[str, list[str]] = {}
    problems: list[GridError] = []
    for name, values in (axes or {}).items():
        items = list(values) if isinstance(values, (list, tuple)) else [values]
        if name not in INPUTS:
            problems.append(GridError("axes", f"unknown input {name!r}{_hint(name)}; inputs are {', '.join(INPUTS)}"))
        elif not items or any(v is None or str(v).strip() == "" for v in items):
            problems.append(GridError("axes", f"{name} needs one or more non-empty values (got {values!r})"))
        else:
            checked[name] = [str(v).strip() for v in items]
    raise_all(problems)
    return checked


def _cell_values(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if any(is_missing(v) for v in value):
            raise ValueError("a list cell holds an empty value")
        return list(value) if value else [None]
    if hasattr(value, "tolist") and not isinstance(value, str):
        return _cell_values(value.tolist())
    return [value]


def expand_grid(
    raw: pd.DataFrame,
    axes: Mapping[str, Sequence[object]] | None = None,
    *,
    model: str | None = None,
    max_combinations: int = DEFAULT_MAX_COMBINATIONS,
) -> pd.DataFrame:
    """Every combination of every row (list cells x axes), validated, with ids, duplicates merged.

    Axes replace the column of the same name. Each combination runs `model`, or (None) the model
    its inputs call for: image-to-video with a start image, text-to-video without. Returns one row
    per distinct combination: `row_id`, `model`, the inputs with defaults filled in (None where its
    model has no such input), `input_image_sha256`, `image_path` (a local image, resolved) and
    `source` (where it came from).
    """
    axes = dict(axes or {})
    if model is not None:
        model_spec(model)  # an unknown model is refused before anything else
    cells = _Cells(raw, axes)
    total = cells.combinations()
    if total > max_combinations:
        raise GridError("grid", f"expands to {total:,} combinations, more than the maximum {max_combinations:,}"
                        " (raise it with --max-combinations)")  # fmt: skip
    out: dict[str, dict[str, Any]] = {}
    problems: list[GridError] = []
    images, memo = _Images(), cast(Memo, {})
    for index, (source, cell) in enumerate(zip(cells.sources, cells.values(), strict=True)):
        file, _, row = source.rpartition(":")
        where = _Where(file, int(row) if row.isdigit() else None, axes)
        try:
            combos = cells.combos(index, cell)
        except GridError as exc:
            problems.append(exc)
            continue
        for combo in combos:
            given = {c: v for c, v in zip(INPUTS, combo, strict=True) if v is not None and not is_missing(v)}
            try:
                key, values = _combination(given, model, images, where, memo)
            except GridErrors as exc:  # several fields of one combination
                problems += exc.problems
                continue
            except GridError as exc:
                problems.append(exc)
                continue
            if key in out:
                out[key][SOURCE] += f" {source}"
            else:
                out[key] = {"row_id": key, **values, SOURCE: source}
    raise_all(problems)
    names = [*COLUMNS, IMAGE_PATH, SOURCE]
    rows = list(out.values())  # by column: a frame from 100,000 dicts takes seconds
    frame = pd.DataFrame({name: [r[name] for r in rows] for name in names} if rows else [], columns=names)
    return frame.astype({"numFrames": "int64", "steps": "int64", "fps": "int64", "scale": "float64",
                         "width": "Int64", "height": "Int64"})  # fmt: skip


class _Cells:
    """A raw grid's cells by input, read once: the values each row takes for each input (its axis,
    else its cell, a list cell's items), without a dict per row."""

    def __init__(self, raw: pd.DataFrame, axes: Mapping[str, Sequence[object]]) -> None:
        self.rows = len(raw)
        self.axes = {c: list(axes[c]) for c in INPUTS if axes.get(c)}
        self.columns = {c: raw[c].tolist() for c in INPUTS if c in raw.columns and c not in self.axes}
        self.listed = [c for c, values in self.columns.items() if any(not _scalar(v) for v in values)]
        self.sources = [str(v) for v in raw[SOURCE].tolist()] if SOURCE in raw.columns else ["?"] * self.rows

    def combinations(self) -> int:
        """How many combinations the rows make; a list cell that holds an empty value raises."""
        each = math.prod(len(v) for v in self.axes.values())
        total = 0
        for index in range(self.rows):
            count = 1
            for column in self.listed:
                count *= len(self._cell(index, column))
            total += count
        return total * each

    def values(self) -> Iterator[tuple[Any, ...]]:
        """Each row's cells, in the order of `INPUTS` (None for an input it has no column of)."""
        absent = [None] * self.rows
        return zip(*(self.columns.get(c, absent) for c in INPUTS), strict=True)

    def combos(self, index: int, cells: tuple[Any, ...]) -> Iterable[tuple[Any, ...]]:
        """The combinations row `index` (its `cells`) makes: axes replace their column, a list cell
        gives each of its items; a list cell that holds an empty value raises."""
        if not self.axes and not self.listed:
            return (cells,)
        return itertools.product(*(self.axes[c] if c in self.axes else self._cell(index, c) if c in self.listed
                                   else [cell] for c, cell in zip(INPUTS, cells, strict=True)))  # fmt: skip

    def _cell(self, index: int, column: str) -> list[Any]:
        try:
            return _cell_values(self.columns[column][index])
        except ValueError as exc:
            file, _, row = self.sources[index].rpartition(":")
            raise GridError(file, str(exc), int(row) if row.isdigit() else None, column) from None


def _scalar(value: object) -> bool:
    """A cell that `_cell_values` would give as it is: one value, of Python's own types."""
    return value is None or type(value) in (str, int, float, bool)


@dataclass(frozen=True)
class _Where:
    """Where a combination's values came from: its file and row, or an axis."""

    file: str
    row: int | None
    axes: Mapping[str, object]

    def error(self, name: str, rule: str) -> GridError:
        if name in self.axes:
            return GridError("--axis", rule, field=name)
        return GridError(self.file, rule, self.row, name)

    def image_path(self, given: str) -> Path:
        """A local image's path: as given when absolute, else relative to the grid file (or, for an
        axis, to the current directory)."""
        path = Path(given).expanduser()
        if path.is_absolute() or IMAGE in self.axes or not self.file:
            return path
        return Path(self.file).parent / path


class _Images:
    """Each local image checked once, however many rows name it: its `ImageInfo` or what is wrong."""

    def __init__(self) -> None:
        self._seen: dict[Path, ImageInfo | str] = {}

    def check(self, path: Path) -> ImageInfo | str:
        key = path.absolute()
        if key not in self._seen:
            try:
                self._seen[key] = check_image(key)
            except ImageCheckError as exc:
                self._seen[key] = exc.rule
        return self._seen[key]


def _combination(
    given: dict[str, Any], model: str | None, images: _Images, where: _Where, memo: Memo
) -> tuple[str, dict[str, Any]]:
    """One combination's id and its frame values, validated against its own model; every broken
    rule is reported (as `GridErrors` when there are several)."""
    problems: list[GridError] = []
    image, url = given.pop(IMAGE, None), given.get(IMAGE_URL)
    if image is not None and url is not None:
        raise where.error(IMAGE, f"give {IMAGE} (a file) or {IMAGE_URL} (a URL), not both")
    chosen = model or (IMAGE_TO_VIDEO if image is not None or url is not None else TEXT_TO_VIDEO)
    spec = model_spec(chosen)
    info: ImageInfo | None = None
    if image is not None:
        if IMAGE_URL not in spec.names:
            raise where.error(IMAGE, f"is not an input of {chosen} (a start image runs {IMAGE_TO_VIDEO})")
        text = str(image).strip()
        path = where.image_path(text)
        checked = images.check(path)
        if isinstance(checked, str):
            problems.append(where.error(IMAGE, f"{path}: {checked}"))
        else:
            info = checked
        given[IMAGE_URL] = PLACEHOLDER_URL
    for name, rule in _OTHER_SHAPE.items():
        if name in given and name not in spec.names:
            problems.append(where.error(name, f"is not an input of {chosen}: {rule}"))
            given.pop(name)
    values = _validated(spec, given, where, problems, memo)
    raise_all(problems)
    values.pop("callbackUrl", None)
    values = canonical(values)
    if info is not None:
        values.pop(IMAGE_URL)
        key = _id_of(chosen, {**values, IMAGE_SHA: info.sha256})  # the content, not the path, names the row
        row = {**values, IMAGE: text, IMAGE_SHA: info.sha256, IMAGE_PATH: str(info.path)}
    else:
        key = _id_of(chosen, values)
        row = dict(values)
    return key, {MODEL: chosen, **{name: row.get(name) for name in _ROW}}


_ROW = (*INPUTS, IMAGE_SHA, IMAGE_PATH)  # a combination's values in the frame, after its model


def _validated(
    spec: ModelSpec, given: Mapping[str, Any], where: _Where, problems: list[GridError], memo: Memo
) -> dict[str, Value]:
    """The typed values, every broken rule added to `problems`: each bad field is left out and the
    rest checked again, so a bad `size` does not hide a bad `steps`."""
    left = dict(given)
    while True:
        try:
            return spec.validate(left, memo=memo)
        except InputValidationError as exc:
            got = "" if exc.value is None else f" (got {exc.value!r})"
            problems.append(where.error(exc.field, f"{exc.rule}{got}"))
            if exc.field not in left:  # a required input missing: nothing more to learn
                return {}
            del left[exc.field]


def is_missing(value: object) -> bool:
    """An empty cell: None, NaN, or pandas' NA (a nullable column's gap)."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def load_grid(
    paths: Iterable[str | Path],
    axes: Mapping[str, Sequence[object]] | None = None,
    *,
    model: str | None = None,
    max_combinations: int = DEFAULT_MAX_COMBINATIONS,
) -> pd.DataFrame:
    """Read every grid file and expand them together into one validated frame; every problem found
    in the files and their rows is reported at once. `model` forces one model on every row (by
    Wiro's name or a short one, `image-to-video`)."""
    paths, model = list(paths), model_name(model)
    given = already_checked(load_key(paths, axes, model, max_combinations))
    if given is not None:  # the grid the command line checked, in its flow
        return given
    checked = check_axes(axes)
    frames, problems = [], []
    try:
        if IMAGE in checked:
            checked[IMAGE] = image_axis(checked[IMAGE])
    except GridError as exc:
        problems.append(exc)
        checked.pop(IMAGE)  # the rows are still checked, without it
    files = grid_files(paths)
    for path in files:
        try:
            frames.append(read_grid_file(path, problems))
        except GridError as exc:
            problems.append(exc)
    if frames:
        raw = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        try:
            frame = expand_grid(raw, checked, model=model, max_combinations=max_combinations)
            if not problems:
                return frame
        except GridErrors as exc:
            problems += exc.problems
        except GridError as exc:
            problems.append(exc)
    raise_all(problems)
    raise AssertionError("unreachable: no frames and no problems")


MODEL_NAMES = {  # what --model takes: Wiro's names (any case) and short ones
    TEXT_TO_VIDEO.lower(): TEXT_TO_VIDEO,
    IMAGE_TO_VIDEO.lower(): IMAGE_TO_VIDEO,
    "text-to-video": TEXT_TO_VIDEO,
    "image-to-video": IMAGE_TO_VIDEO,
    "t2v": TEXT_TO_VIDEO,
    "i2v": IMAGE_TO_VIDEO,
}


def model_name(value: str | None) -> str | None:
    """A forced model, by Wiro's name or a short one (`image-to-video`, `i2v`); None or "" stay None."""
    if value is None or not str(value).strip():
        return None
    try:
        return MODEL_NAMES[str(value).strip().lower()]
    except KeyError:
        raise GridError("--model", f"unknown model {value!r}; use text-to-video or image-to-video "
                        f"({TEXT_TO_VIDEO} or {IMAGE_TO_VIDEO})") from None  # fmt: skip


def image_axis(values: Sequence[str]) -> list[str]:
    """An `inputImage` axis with each directory standing for the images in it (by name, sorted)."""
    expanded: list[str] = []
    for value in values:
        folder = Path(value).expanduser()
        if not folder.is_dir():
            expanded.append(value)
            continue
        found = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise GridError("--axis", f"directory {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})",
                            field=IMAGE)  # fmt: skip
        expanded.extend(found)
    return expanded


__all__ = [
    "BASIC_INPUTS",
    "COLUMNS",
    "DEFAULT_MAX_COMBINATIONS",
    "GRID_SUFFIXES",
    "IMAGE",
    "IMAGE_INPUTS",
    "IMAGE_PATH",
    "IMAGE_SHA",
    "IMAGE_SUFFIXES",
    "IMAGE_URL",
    "INPUTS",
    "MAX_FILE_BYTES",
    "MAX_REPORTED",
    "MODEL",
    "MODEL_NAMES",
    "PLACEHOLDER_URL",
    "SOURCE",
    "GridError",
    "GridErrors",
    "canonical",
    "check_axes",
    "checked_grid",
    "expand_grid",
    "grid_files",
    "image_axis",
    "is_missing",
    "load_grid",
    "load_key",
    "model_name",
    "parse_axes",
    "raise_all",
    "read_grid_file",
    "row_id",
]
