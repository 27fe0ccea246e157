"""The report's rows as its script takes them: every row of the sheet as compact JSON, in pages.

The HTML holds the first page of rows of each section while it stays under `STATIC_CELLS` (a
sheet of a few hundred cells is all HTML, as it always was); report.js makes the elements of the
other rows when their page nears the screen and drops them when it is far, so a sheet of 100,000
cells opens as fast as one of 1,000 and keeps about as many elements. The filters work on this
JSON, so on every row. `sheet` is pure: `build_report`'s sections in, the JSON and the HTML's
share of the rows out.
"""

from __future__ import annotations

from typing import Any

PAGE_CELLS = 120  # cells a page of rows holds, about: what the script makes or drops at once
STATIC_CELLS = 600  # cells the HTML holds at most (the first page of each section, while they fit)
LINES = 12  # a page of rows is a multiple of this: whole lines when rows sit 1, 2, 3, 4 or 6 across


def page_rows(width: int) -> int:
    """Rows a page holds in a section `width` columns wide."""
    rows = max(1, PAGE_CELLS // max(width, 1))
    return rows - rows % LINES if rows >= LINES else rows


def sheet(sections: list[dict[str, Any]]) -> dict[str, Any]:
    """The page's JSON of every section's rows; each section's `rows` cut to what the HTML holds."""
    images: dict[tuple[str, str], int] = {}
    found, budget = [], STATIC_CELLS
    for section in sections:
        rows, page = section["rows"], page_rows(section["width"])
        cells = sum(len(cards) for row in rows[:page] for cards in row["cells"])
        static = min(page, len(rows)) if cells <= budget else 0
        budget -= cells if static else 0
        found.append({"width": section["width"], "page": page, "static": static,
                      "rows": [_row(row, images) for row in rows]})  # fmt: skip
        section["rows"] = rows[:static]
    return {"sections": found, "images": [list(key) for key in images]}


def _row(row: dict[str, Any], images: dict[tuple[str, str], int]) -> list[Any]:
    """[prompt or null, pairs, attrs, [[status, count]...], cells]: cells by column, each a list of cards."""
    return [row["prompt"], row["pairs"], row["attrs"], row["counts"],
            [[_card(card, images) for card in cards] for cards in row["cells"]]]  # fmt: skip


def _card(card: dict[str, Any], images: dict[tuple[str, str], int]) -> list[Any]:
    """[status, row_id, swept values, ratio, video, poster, start image (index or -1), path, clip,
    reason, cost, time, shown, note]: what report.html.j2 shows of a card, in that order."""
    start = card["start"]
    image = images.setdefault((start["src"], start["label"]), len(images)) if start else -1
    return [card["status"], card["row_id"], [value for _, value in card["data"]], card["ratio"], card["video"],
            card["poster"], image, card["path"], card["clip"], card["reason"], card["cost"], card["time"],
            card["shown"], card["note"]]  # fmt: skip
