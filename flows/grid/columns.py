"""A grid's names and limits, and the error every broken rule raises (naming file, row and field)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

from flows.errors import InputError
from wiro_tasks.images import EXTENSIONS

IMAGE = "inputImage"  # a local start image: a path, absolute or relative to its grid file (or, in an axis, to here)
IMAGE_URL = "inputImageUrl"
BASIC_INPUTS = ("prompt", "negativePrompt", "size", "numFrames", "scale", "steps", "fps", "seed")  # every manifest's
IMAGE_INPUTS = (IMAGE, IMAGE_URL, "width", "height")  # manifests from before image-to-video lack these
INPUTS = (*BASIC_INPUTS, *IMAGE_INPUTS)
IMAGE_SHA = "input_image_sha256"
MODEL = "model"
IMAGE_PATH = "image_path"  # a local image resolved (not in the manifest: `inputImage` is the path as given)
COLUMNS = ("row_id", MODEL, *INPUTS, IMAGE_SHA)  # a loaded grid's columns, then `image_path` and `source`
IMAGE_SUFFIXES = tuple(sorted({s for suffixes in EXTENSIONS.values() for s in suffixes}))
PLACEHOLDER_URL = "https://upload.invalid/start-image"  # stands for a local image not uploaded yet (validation, prices)
_OTHER_SHAPE = {  # an input of the other model, and what this one takes instead
    "size": "image-to-video takes width and height (0 follows the image), not size",
    "width": "text-to-video takes size, not width",
    "height": "text-to-video takes size, not height",
}
GRID_SUFFIXES = (".csv", ".parquet", ".pq")
DEFAULT_MAX_COMBINATIONS = 100_000
MAX_FILE_BYTES = 256 * 1024 * 1024
SOURCE = "source"
MAX_REPORTED = 10  # problems listed in one message; the rest are counted


@dataclass
class GridError(InputError):
    """Bad grid input. Prints as `FILE, row N, field F: rule`; the command exits with 2."""

    file: str
    rule: str
    row: int | None = None
    field: str | None = None
    exit_code: int = 2

    def __str__(self) -> str:
        where = [self.file] if self.file else []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.rule}" if where else self.rule


@dataclass
class GridErrors(GridError):
    """Several problems, found in one pass: one line each, the first `MAX_REPORTED` shown."""

    problems: list[GridError] = field(default_factory=list)

    def __str__(self) -> str:
        shown = [f"  {p}" for p in self.problems[:MAX_REPORTED]]
        more = len(self.problems) - len(shown)
        return "\n".join([f"{len(self.problems)} problems in the grid:", *shown]
                         + ([f"  …and {more} more like these"] if more else []))  # fmt: skip


def raise_all(problems: Sequence[GridError]) -> None:
    """Raise the problems found, if any: one as itself, several as one `GridErrors` (each once)."""
    unique = list({str(p): p for p in problems}.values())
    if len(unique) == 1:
        raise unique[0]
    if unique:
        raise GridErrors("", f"{len(unique)} problems", problems=unique)


def _hint(name: str) -> str:
    """` (did you mean seed?)` for a near miss of an input's name, else nothing."""
    by_case = [i for i in INPUTS if i.lower() == name.lower()]
    close = by_case or difflib.get_close_matches(name, INPUTS, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
