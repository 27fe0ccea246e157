"""The report at a laptop's width, in Chromium: the sheet fills the window, long headers do not
push the page sideways, the filter bar fits, and a row's videos play as one; and the index of
`wiro-sweep serve` over real loopback HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np

from flows.grid import load_grid
from flows.store.journal import fold
from flows.store.manifest import SUMMARY_JSON, build_manifest
from flows.view.compare import compare_outs
from flows.view.compare_page import write_comparison
from flows.view.report import build_report, write_report
from flows.view.serve import ReportServer

from .nights import Row, night
from .test_report import chromium as chromium
from .test_report import events_for, sheets, succeeded, watch
from .test_report_images import image_sweep, picture

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

WIDTH = 1400
WORDS = ("fox", "boat", "owl")
NO_SIDEWAYS = "document.documentElement.scrollWidth <= window.innerWidth"


def opened(chromium: Browser, report: Path) -> Page:
    page = chromium.new_page(viewport={"width": WIDTH, "height": 900})
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    return page


def test_two_seed_columns_fill_a_1400px_window_with_prompts_side_by_side(chromium: Browser, tmp_path: Path) -> None:
    out = tmp_path / "out"
    night(out, [Row(f"a {w} at dusk", seed=s) for w in WORDS for s in "12"])
    page = opened(chromium, write_report(out))
    assert page.locator("table.sheet thead th").all_inner_texts() == ["seed 1", "seed 2"]
    width = page.evaluate("document.querySelector('table.sheet').getBoundingClientRect().width")
    boxes = page.evaluate("[...document.querySelectorAll('article.cell')].map(c => c.getBoundingClientRect())"
                          ".map(r => [r.left, r.right, r.top])")  # fmt: skip
    assert width > 0.8 * WIDTH, f"the sheet is {width:.0f} px of {WIDTH}"
    covered = max(b[1] for b in boxes) - min(b[0] for b in boxes)
    assert covered > 0.8 * WIDTH, f"the cells cover {covered:.0f} px of {WIDTH}"
    assert min(b[1] - b[0] for b in boxes) >= 240, "no cell under the zoom's width"
    lines = sorted({round(b[2]) for b in boxes})
    assert len(lines) < len(WORDS), f"prompts sit side by side: {len(WORDS)} prompts on {len(lines)} lines"
    assert page.evaluate(NO_SIDEWAYS)
    page.close()


def test_long_prompts_across_neither_widen_the_page_nor_their_headers(chromium: Browser, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prompts = [("a very long prompt about the " + w + " ") * 12 for w in WORDS]
    night(out, [Row(p) for p in prompts])
    page = opened(chromium, write_report(out, rows="seed", cols="prompt"))
    heads = page.locator("table.sheet thead th")
    assert heads.count() == 3
    assert page.evaluate(NO_SIDEWAYS), "the page does not scroll sideways"
    assert page.evaluate("document.querySelector('.scroll').scrollWidth <= window.innerWidth")
    for n, prompt in enumerate(prompts):
        head = heads.nth(n)
        assert head.evaluate("th => th.getBoundingClientRect().height") < 80, "clamped to a few lines"
        assert head.locator(".clamp").get_attribute("title") == prompt, "the whole prompt on hover"
    page.close()


def test_the_image_to_video_filter_bar_stays_in_the_window(chromium: Browser, tmp_path: Path) -> None:
    starts = [picture(tmp_path, f"a-rather-long-image-file-name-{k}.png", np.full((64, 96, 3), 40 * k, np.uint8),
                      "PNG") for k in range(3)]  # fmt: skip
    prompts = [f"the {w} moves slowly across the frame, with a long description of the light" for w in WORDS]
    report = tmp_path / "report.html"
    report.write_text(build_report(image_sweep(prompts, [None, *starts], ["1", "2"])), encoding="utf-8")
    page = opened(chromium, report)
    right = page.evaluate("document.querySelector('nav.filters').getBoundingClientRect().right")
    assert right <= WIDTH, f"the filter bar ends at {right:.0f} px"
    for select in page.locator("nav.filters select").all():
        assert select.evaluate("s => s.getBoundingClientRect().right") <= WIDTH
    assert page.evaluate(NO_SIDEWAYS)
    page.close()


PLAYING = "vs => vs.map(v => !v.paused)"
TIMES = "vs => vs.map(v => v.currentTime)"


def test_playing_one_video_of_a_row_plays_the_rows_others_in_step(chromium: Browser, tmp_path: Path) -> None:
    out = tmp_path / "out"
    night(out, [Row(f"a {w} at dusk", seed=s) for w in WORDS[:2] for s in "123"])
    page = opened(chromium, write_report(out))
    errors = watch(page)
    page.wait_for_function("document.querySelectorAll('video').length === 6 && "
                           "[...document.querySelectorAll('video')].every(v => v.readyState >= 1)")  # fmt: skip
    first, second = page.locator("tbody.row").all()
    first.locator("video").nth(1).evaluate("v => v.play()")
    page.wait_for_function("[...document.querySelectorAll('tbody.row')[0].querySelectorAll('video')]"
                           ".every(v => !v.paused && v.currentTime > 0.3)")  # fmt: skip
    times = first.locator("video").evaluate_all(TIMES)
    assert max(times) - min(times) < 0.35, f"the row plays in step: {times}"
    assert second.locator("video").evaluate_all(PLAYING) == [False] * 3, "another row stays still"
    first.locator("video").nth(2).evaluate("v => v.pause()")  # a follower paused by hand: the row stops
    page.wait_for_function("[...document.querySelectorAll('tbody.row')[0].querySelectorAll('video')]"
                           ".every(v => v.paused)")  # fmt: skip
    assert errors == []
    page.close()


# ------------------------------------------------------------- the index of `wiro-sweep serve`


def test_the_serve_index_lists_each_out_with_its_counts_billed_and_working_links(
    chromium: Browser, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    night(runs / "monday", [Row("a fox at dusk"), Row("a boat at dusk", status="failed")])
    night(runs / "tuesday", [Row("a fox at dusk", cost="0.01"), Row("a boat at dusk", cost="0.0025")])
    for out in ("monday", "tuesday"):
        write_report(runs / out)
    write_comparison(compare_outs(runs / "monday", runs / "tuesday"))
    (runs / "monday" / SUMMARY_JSON).unlink()  # an OUT written before summaries: read from its manifest
    (runs / "notes").mkdir()  # not an OUT: not listed
    with ReportServer([runs]) as server:
        page = chromium.new_page(viewport={"width": WIDTH, "height": 900})
        errors = watch(page)
        page.goto(f"{server.url}/")
        rows = page.locator("tr.out")
        assert rows.count() == 2
        by_name = {row.locator(".name").inner_text(): row for row in rows.all()}
        assert set(by_name) == {"monday", "tuesday"}
        monday, tuesday = by_name["monday"], by_name["tuesday"]
        assert monday.locator(".counts span").all_inner_texts() == ["1 succeeded", "1 failed"]
        assert tuesday.locator(".counts span").all_inner_texts() == ["2 succeeded"]
        assert (monday.locator(".rows").inner_text(), tuesday.locator(".rows").inner_text()) == ("2", "2")
        billed = [row.locator(".billed").inner_text() for row in (monday, tuesday)]
        assert billed == ["$0.0036", "$0.0125"]
        assert monday.locator(".when").inner_text().endswith(" UTC")
        assert monday.locator("a.compare").count() == 0
        tuesday.locator("a.compare").click()
        page.wait_for_load_state("load")
        assert page.url == f"{server.url}{quote(str((runs / 'tuesday' / 'compare.html').resolve()))}"
        assert page.title() == "wiro-sweep compare · tuesday"
        page.go_back()
        page.locator("tr.out", has_text="monday").locator("a.report").click()
        page.wait_for_load_state("load")
        assert page.title() == "wiro-sweep · monday"
        assert page.locator("article.cell").count() == 2
        assert errors == []
        page.close()


# ------------------------------------------------------------- the shipped image example, as the docs tell it

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SAYS = "as in `examples/image-grid.csv`, the image heads its row"


def test_the_mixed_example_grid_renders_the_one_section_the_docs_describe() -> None:
    """examples/image-grid.csv mixes three image rows and a text row, one image per prompt:
    docs/report.md says how that renders, and the report renders it so."""
    grid = load_grid([ROOT / "examples" / "image-grid.csv"], {"seed": ["1", "2"]})
    manifest = build_manifest(grid, fold(events_for(grid, lambda row: succeeded())))
    [sheet] = sheets(build_report(manifest))
    assert sheet.columns == ["seed 1", "seed 2"]
    images = [a for attrs in sheet.attrs for a in attrs if a.startswith("inputImage ")]
    assert images == [f"inputImage {n}" for n in ("sunrise.png", "harbour.jpg", "lantern.png",
                                                  "no image · text-to-video")]  # fmt: skip
    said = " ".join((ROOT / "docs" / "report.md").read_text(encoding="utf-8").split())
    assert EXAMPLE_SAYS in said, "docs/report.md describes the example's sheet"
    assert "one section, seeds across" in said
