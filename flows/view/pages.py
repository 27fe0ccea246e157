"""The report's rows as its script takes them: every row of the sheet as compact JSON, in pages.

The HTML holds the first page of rows of each section while it stays under `STATIC_CELLS` (a
sheet of a few hundred cells is all HTML, as it always was); report.js makes the elements of the
other rows when their page nears the screen and drops them when it is far, so a sheet of 100,000
cells opens as fast as one of 1,000 and keeps about as many elements. The filters work on this
JSON, so on every row. `build_report` hands each row to a `Sheet` as it makes it and keeps only
the HTML's share of each section's rows (a select whose options move to the JSON is emptied).
Each JSON block names every text once, in its `strings`, and gives its index elsewhere:
a sweep's texts (its prompts, statuses, costs) repeat from cell to cell.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PAGE_CELLS = 120  # cells a page of rows holds, about: what the script makes or drops at once
STATIC_CELLS = 600  # cells the HTML holds at most (the first page of each section, while they fit)
LINES = 12  # a page of rows is a multiple of this: whole lines when rows sit 1, 2, 3, 4 or 6 across
MAX_OPTIONS = 200  # a filter of more values gets its options from the JSON when first opened: Chromium
# parses a <select> of 10,000 options in seconds


def page_rows(width: int) -> int:
    """Rows a page holds in a section `width` columns wide."""
    rows = max(1, PAGE_CELLS // max(width, 1))
    return rows - rows % LINES if rows >= LINES else rows


class Strings:
    """Each text once: `strings(text)` is its index in `strings.table`."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        return self._index.setdefault(text, len(self._index))

    def all(self, texts: Iterable[str]) -> list[int]:
        return [self(t) for t in texts]

    @property
    def table(self) -> list[str]:
        return list(self._index)


def inputs(names: list[str], optional: list[str], rows: Iterable[tuple[str, list[str]]]) -> dict[str, Any]:
    """The JSON a cell's "inputs" list is made from when it is opened: each row's values of `names`."""
    strings = Strings()
    found = {row_id: strings.all(values) for row_id, values in rows}
    return {"names": names, "optional": optional, "rows": found, "strings": strings.table}


class Sheet:
    """The page's JSON of every section's rows, made row by row as the report builds them: a row's
    card dicts (a kilobyte and more) live only until its compact JSON is made, but for the rows the
    HTML may hold."""

    def __init__(self) -> None:
        self.images: dict[tuple[str, str], int] = {}
        self.strings = Strings()
        self.sections: list[dict[str, Any]] = []
        self._budget = STATIC_CELLS

    def row(self, row: dict[str, Any]) -> list[Any]:
        """A row as the JSON holds it (`_row`)."""
        return _row(row, self.images, self.strings)

    def section(self, width: int, rows: list[list[Any]], first: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Adds a section of these compact `rows`; returns those of its `first` rows the HTML holds
        (its first page while the HTML's cells fit in `STATIC_CELLS`, else none)."""
        page = page_rows(width)
        cells = sum(len(cards) for row in first[:page] for cards in row["cells"])
        static = min(page, len(rows)) if cells <= self._budget else 0
        self._budget -= cells if static else 0
        self.sections.append({"width": width, "page": page, "static": static, "rows": rows})
        return first[:static]

    def finish(self, selects: list[tuple[str, str, list[tuple[str, str]]]]) -> dict[str, Any]:
        """The JSON; `selects` (name, param, [(value, text)...]) past MAX_OPTIONS values move here
        too, by param (their select is emptied)."""
        options = {}  # after the rows: their texts, repeated, get the short indices
        for n, (name, param, values) in enumerate(selects):
            if len(values) > MAX_OPTIONS:
                options[param] = [self.strings.all(pair) for pair in values]
                selects[n] = (name, param, [])
        return {"sections": self.sections, "images": [list(key) for key in self.images], "options": options,
                "strings": self.strings.table}  # fmt: skip


def _row(row: dict[str, Any], images: dict[tuple[str, str], int], strings: Strings) -> list[Any]:
    """[prompt or null, pairs, attrs, [[status, count]...], cells]: cells by column, each a list of
    cards; a pair is [name, text, thumbnail src], each text as its index in `strings`."""
    prompt = None if row["prompt"] is None else strings(row["prompt"])
    pairs = [strings.all(p) for p in row["pairs"]]
    attrs = [strings.all(p) for p in row["attrs"]]
    return [prompt, pairs, attrs, [[strings(s), n] for s, n in row["counts"]],
            [[_card(card, images, strings) for card in cards] for cards in row["cells"]]]  # fmt: skip


def _card(card: dict[str, Any], images: dict[tuple[str, str], int], strings: Strings) -> list[Any]:
    """[status, row_id, swept values, ratio, video, poster, start image (index or -1), path, clip,
    reason, cost, time, shown, note], as report.html.j2 shows a card; texts but the row id and the
    links as their index in `strings`. The poster is 1 when it is the video's link ending in .jpg,
    the path 0 when it is the video's link."""
    start = card["start"]
    image = images.setdefault((start["src"], start["label"]), len(images)) if start else -1
    video, poster, path = card["video"], card["poster"], card["path"]
    poster = 1 if poster and poster == video.rpartition(".")[0] + ".jpg" else poster
    return [strings(card["status"]), card["row_id"], [strings(v) for _, v in card["data"]], strings(card["ratio"]),
            video, poster, image, 0 if path == video else path, strings(card["clip"]), strings(card["reason"]),
            strings(card["cost"]), strings(card["time"]), [strings.all(p) for p in card["shown"]],
            strings(card["note"])]  # fmt: skip
