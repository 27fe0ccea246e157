"""Limits of the views and the manifest at scale, counted at two small sizes (never timed): a
manifest read by row group, a report whose page keeps about as many elements for 4,000 cells as
for 1,000 with its filters still over every row, a compare page whose rows come a page at a
time, and a serve index that reads each OUT's small summary, not its manifest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from flows.grid import expand_grid
from flows.store.journal import fold
from flows.store.manifest import MANIFEST_PARQUET, ROW_GROUP_ROWS, build_manifest, write_manifest
from flows.view import outs_index
from flows.view.compare import compare_outs
from flows.view.compare_page import ROWS_PAGE, write_comparison
from flows.view.report import build_report

from .test_report import chromium as chromium
from .test_report import parse

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

AT = "2026-01-01T00:00:00.000Z"
SEEDS = 10


def big_manifest(rows: int, failed: frozenset[int] = frozenset()) -> pd.DataFrame:
    """A finished sweep of `rows` rows (prompts down, 10 seeds across), no video files. Rows
    numbered in `failed` failed; the others succeeded with a video at videos/v<n % 4>.mp4."""
    prompts = [f"scene {n}: a lighthouse keeper walks the stairs at dusk" for n in range(max(1, rows // SEEDS))]
    raw = pd.DataFrame({"prompt": prompts, "numFrames": "33",
                        "source": [f"g.csv:{n + 1}" for n in range(len(prompts))]})  # fmt: skip
    grid = expand_grid(raw, {"seed": [str(s) for s in range(1, SEEDS + 1)]})
    events: list[dict[str, Any]] = []
    for n, rid in enumerate(grid["row_id"]):
        bad = n in failed
        events += [{"event": "intent", "row_id": rid, "at": AT},
                   {"event": "submitted", "row_id": rid, "task_id": str(1000 + n), "at": AT},
                   {"event": "finished", "row_id": rid, "task_id": str(1000 + n), "status": "failed" if bad else
                    "succeeded", "error": "RuntimeError: CUDA out of memory" if bad else "", "cost": "0.0036",
                    "elapsed": "3.0", "output_url": "", "at": AT}]  # fmt: skip
        if not bad:
            events.append({"event": "downloaded", "row_id": rid, "path": f"videos/v{n % 4}.mp4", "sha256": "0",
                           "bytes": 1})  # fmt: skip
    return build_manifest(grid, fold(events))


# ------------------------------------------------------------------ the manifest


def test_the_manifest_comes_in_row_groups_a_filter_reads_only_those_it_may_match(tmp_path: Path) -> None:
    one = big_manifest(SEEDS * 50, failed=frozenset({3}))
    rows = 2 * ROW_GROUP_ROWS + len(one)
    copies = [one.assign(status="succeeded", error="")] * (rows // len(one) - 1) + [one]  # the failure comes last
    write_manifest(tmp_path, pd.concat(copies, ignore_index=True))
    path = tmp_path / MANIFEST_PARQUET
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_row_groups == 3, "row groups of ROW_GROUP_ROWS"
    status = metadata.schema.names.index("status")
    for group in range(metadata.num_row_groups):
        column = metadata.row_group(group).column(status)
        assert column.is_stats_set
        assert column.statistics.has_min_max, "every row group has min/max statistics"
    [fragment] = ds.dataset(path).get_fragments()
    matching = fragment.split_by_row_group(ds.field("status") == "failed")
    assert len(matching) == 1, "the two all-succeeded row groups are skipped by their statistics"
    failed = pd.read_parquet(path, columns=["row_id", "status"], filters=[("status", "==", "failed")])
    assert list(failed["status"]) == ["failed"]


# ------------------------------------------------------------------ the report


def last_failed(cells: int) -> frozenset[int]:
    return frozenset({7, cells - 2})  # one on the first screen, one in the last row, of other seeds


def test_the_report_html_holds_the_same_cells_at_1000_and_4000_and_the_rest_as_compact_json() -> None:
    pages = {n: build_report(big_manifest(n, last_failed(n))) for n in (1000, 4000)}
    cells = {n: len(parse(page).find_all("article", "cell")) for n, page in pages.items()}
    assert cells[1000] == cells[4000] <= 600, f"the first rows only: {cells}"
    grown = (len(pages[4000]) - len(pages[1000])) / 3000
    assert grown < 700, f"{grown:.0f} bytes for each cell past the first 1,000"


def opened_report(chromium: Browser, tmp_path: Path, cells: int) -> Page:
    report = tmp_path / f"report-{cells}.html"
    report.write_text(build_report(big_manifest(cells, last_failed(cells))), encoding="utf-8")
    page = chromium.new_page(viewport={"width": 1600, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    page.wait_for_timeout(300)
    assert errors == []
    return page


ELEMENTS = "document.getElementsByTagName('*').length"
CELLS = "document.querySelectorAll('article.cell').length"


@pytest.fixture(scope="module")
def big_pages(chromium: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Page]]:
    folder = tmp_path_factory.mktemp("big")
    pages = {n: opened_report(chromium, folder, n) for n in (1000, 4000)}
    yield pages
    for page in pages.values():
        page.close()


def scroll_to_end(page: Page) -> None:
    for _ in range(3):  # spacers made into rows change the height: settle
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        page.wait_for_timeout(300)


def test_the_report_keeps_about_as_many_elements_for_4000_cells_as_for_1000(big_pages: dict[int, Page]) -> None:
    opened = {n: (page.evaluate(ELEMENTS), page.evaluate(CELLS)) for n, page in big_pages.items()}
    assert opened[4000][0] < 1.2 * opened[1000][0], f"elements at opening: {opened}"
    assert opened[4000][1] <= 600, f"cells made at opening: {opened}"
    scrolled = {}
    for n, page in big_pages.items():
        scroll_to_end(page)
        scrolled[n] = (page.evaluate(ELEMENTS), page.evaluate(CELLS))
        assert page.locator("article.cell[data-status=failed]").count() >= 1, "the last rows, made when near"
    assert scrolled[4000][0] < 1.2 * scrolled[1000][0], f"elements at the end: {scrolled}"
    assert scrolled[4000][1] <= 600, f"cells made at the end: {scrolled}"


AS_MADE = """b => {
  const c = b.cloneNode(true);
  c.querySelectorAll('video').forEach(v => v.remove());
  return c.outerHTML.replace(/>\\s+</g, '><');
}"""
"""A row's HTML without the video elements the script adds to cells near the screen (whenever it
does) and the template's line breaks between elements."""


def test_a_row_the_script_makes_is_the_row_the_html_holds(big_pages: dict[int, Page]) -> None:
    page = big_pages[4000]
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    first = page.locator("tbody.row").first.evaluate(AS_MADE)
    scroll_to_end(page)
    assert page.locator("tbody.row").first.evaluate("b => b.dataset.i") != "0", "the first rows were dropped"
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_function("document.querySelector('tbody.row').dataset.i === '0'")
    made = page.locator("tbody.row").first.evaluate(AS_MADE)
    assert made == first


def test_the_report_filters_cover_every_row_not_only_those_made(big_pages: dict[int, Page]) -> None:
    page = big_pages[4000]
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("input[data-status-filter][value=succeeded]").uncheck()
    assert page.locator("#shown").inner_text() == "2 of 4000 cells shown"
    cards = page.locator("article.cell:not([hidden])")
    page.wait_for_function("document.querySelectorAll('article.cell:not([hidden])').length === 2")
    assert cards.evaluate_all("cs => cs.map(c => c.dataset.status)") == ["failed", "failed"]
    first, last = cards.evaluate_all("cs => cs.map(c => c.dataset.p1)")  # their seeds
    assert first != last
    page.locator("select[data-param=p1]").select_option(last)
    assert page.locator("#shown").inner_text() == "1 of 4000 cells shown"
    page.locator("input[data-status-filter][value=succeeded]").check()
    page.locator("select[data-param=p1]").select_option("")
    assert page.locator("#shown").inner_text() == "4000 of 4000 cells shown"
    prompts = page.locator("select[data-param=p0]")  # 400 prompts: its options come when it is first opened
    assert prompts.locator("option").count() == 1
    prompts.focus()
    assert prompts.locator("option").count() == 401
    prompts.select_option("scene 399: a lighthouse keeper walks the stairs at dusk")
    assert page.locator("#shown").inner_text() == "10 of 4000 cells shown"
    prompts.select_option("")


# ------------------------------------------------------------------ the serve index


def bytes_read() -> int:
    """What this process has read from files so far (Linux's /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def many_outs(root: Path, outs: int, manifest: pd.DataFrame) -> None:
    for n in range(outs):
        (root / f"out-{n:03d}").mkdir(parents=True)
        write_manifest(root / f"out-{n:03d}", manifest)


def test_the_serve_index_reads_each_outs_summary_not_its_manifest(tmp_path: Path) -> None:
    manifest = big_manifest(2000)
    outs_index.index_page([tmp_path])  # the template, loaded once
    read = {}
    for outs in (5, 20):
        root = tmp_path / f"runs-{outs}"
        many_outs(root, outs, manifest)
        before = bytes_read()
        page = outs_index.index_page([root])
        read[outs] = bytes_read() - before
        assert page.count('class="out"') == outs
    size = (tmp_path / "runs-5" / "out-000" / MANIFEST_PARQUET).stat().st_size
    assert read[20] / 20 < size / 4, f"bytes read per OUT {read}, a manifest is {size}"
    assert read[20] < 4 * read[5] + 4096, f"bytes read grow with the OUTs, no faster: {read}"


# ------------------------------------------------------------------ the compare page


def compared(root: Path, rows: int) -> Path:
    """BASELINE all succeeded, CURRENT with two rows failed (regressions): CURRENT/compare.html."""
    for side, failed in (("baseline", frozenset[int]()), ("current", frozenset({5, rows - 1}))):
        (root / side).mkdir(parents=True)
        write_manifest(root / side, big_manifest(rows, failed))
    return write_comparison(compare_outs(root / "baseline", root / "current"))


def test_the_compare_page_holds_a_page_of_every_row_and_the_rest_as_json(chromium: Browser, tmp_path: Path) -> None:
    pages = {n: compared(tmp_path / str(n), n) for n in (1000, 4000)}
    texts = {n: page.read_text(encoding="utf-8") for n, page in pages.items()}
    lines = {n: len(parse(text).find_all("table", "rows")[0].find_all("tbody")[0].find_all("tr"))
             for n, text in texts.items()}  # fmt: skip
    assert lines == {1000: ROWS_PAGE, 4000: ROWS_PAGE}
    assert (len(texts[4000]) - len(texts[1000])) / 3000 < 400, "bytes for each row past the first 1,000"
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    page.goto(pages[4000].as_uri())
    assert page.locator("nav.pager .at").inner_text() == f"rows 1–{ROWS_PAGE} of 4000"
    first = page.locator("#every tr").first.get_attribute("data-row-id")
    page.locator("nav.pager button", has_text="next").click()
    assert page.locator("nav.pager .at").inner_text() == f"rows {ROWS_PAGE + 1}–{2 * ROWS_PAGE} of 4000"
    assert page.locator("#every tr").count() == ROWS_PAGE
    assert page.locator("#every tr").first.get_attribute("data-row-id") != first
    assert page.locator("#every tr td.prompt").first.inner_text().startswith("scene ")
    page.locator("nav.pager button", has_text="previous").click()
    assert page.locator("#every tr").first.get_attribute("data-row-id") == first
    last = page.evaluate("JSON.parse(document.getElementById('every-rows').textContent).rows.at(-1)[2]")
    page.locator("nav.pager input.find").fill(last[:12])  # a row on the last page, found from the first
    assert page.locator("nav.pager .at").inner_text() == "rows 1–1 of 1 (found in 4000)"
    assert page.locator("#every tr").first.get_attribute("data-row-id") == last
    page.locator("nav.pager input.find").fill("no such text anywhere")
    assert page.locator("#every tr").count() == 0
    assert page.locator("nav.pager .at").inner_text() == "no row of 4000 holds it"
    page.locator("nav.pager input.find").fill("")
    assert page.locator("nav.pager .at").inner_text() == f"rows 1–{ROWS_PAGE} of 4000"
    page.close()
