"""The report: a contact sheet of OUT, read as a person reads it (parsed HTML) and played in Chromium."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd
import pytest
from click.testing import CliRunner

from flows.cli.view_commands import report as report_command
from flows.engine.rows import records
from flows.grid import expand_grid
from flows.store.journal import fold
from flows.store.manifest import build_manifest, write_manifest
from flows.store.posters import poster_path
from flows.view.report import REPORT, build_report, write_report

from .nights import End, emulator_video, finished_out

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SCREENSHOT_COPY = Path("/tmp/report-screenshot.png")
AT = "2026-01-02T03:04:05.000Z"

# ------------------------------------------------------------- sweeps, as the journal records them

Outcome = tuple[str, str, str, str]  # status, error, cost, elapsed


def succeeded(cost: str = "0.0036", elapsed: str = "3.0") -> Outcome:
    return "succeeded", "", cost, elapsed


def events_for(grid: pd.DataFrame, outcome: Callable[[dict[str, Any]], Outcome]) -> list[dict[str, Any]]:
    """What a sweep would journal for each row: intent, submitted, finished, and downloaded on success."""
    events: list[dict[str, Any]] = []
    for n, row in enumerate(cast(list[dict[str, Any]], grid.to_dict("records"))):
        rid, task = row["row_id"], str(1000 + n)
        status, error, cost, elapsed = outcome(row)
        events += [{"event": "intent", "row_id": rid, "at": AT},
                   {"event": "submitted", "row_id": rid, "task_id": task, "at": AT},
                   {"event": "finished", "row_id": rid, "task_id": task, "status": status, "error": error,
                    "cost": cost, "elapsed": elapsed, "output_url": "", "at": AT}]  # fmt: skip
        if status == "succeeded":
            events.append(
                {"event": "downloaded", "row_id": rid, "path": f"videos/{rid}.mp4", "sha256": "0", "bytes": 1}
            )
    return events


def sweep(prompts: list[str], axes: Mapping[str, list[str]],
          outcome: Callable[[dict[str, Any]], Outcome] = lambda row: succeeded()) -> pd.DataFrame:  # fmt: skip
    """The manifest a finished sweep of `prompts` x `axes` would write."""
    raw = pd.DataFrame({"prompt": prompts, "source": [f"grid.csv:{n + 1}" for n in range(len(prompts))]})
    grid = expand_grid(raw, axes)
    return build_manifest(grid, fold(events_for(grid, outcome)))


# ------------------------------------------------------------- reading the page back


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(" ".join(parts).split())

    def find_all(self, tag: str, cls: str = "") -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and (not cls or cls in child.attrs.get("class", "").split()):
                    found.append(child)
                found += child.find_all(tag, cls)
        return found


class _Tree(HTMLParser):
    VOID = frozenset({"meta", "input", "br", "img", "link", "source", "hr", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        if any(n.tag == tag for n in self.stack[1:]):
            while self.stack.pop().tag != tag:
                pass

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    tree = _Tree()
    tree.feed(page)
    tree.close()
    return tree.root


@dataclass
class Sheet:
    """One table of the page as a reader sees it: column labels, row labels (and the inputs each
    row's header shows), cards by (row, column)."""

    heading: str
    columns: list[str]
    rows: list[str]
    cards: dict[tuple[int, int], list[Node]]
    attrs: list[list[str]] = field(default_factory=list)


def sheets(page: str) -> list[Sheet]:
    found = []
    for section in parse(page).find_all("section"):
        table = section.find_all("table")[0]
        heads = table.find_all("thead")[0].find_all("th")
        columns: dict[int, list[str]] = {}
        for th in heads:
            for col in th.attrs.get("data-cols", "").split():
                columns.setdefault(int(col), []).append(th.text())
        rows, attrs, cards = [], [], {}
        for r, body in enumerate(table.find_all("tbody", "row")):
            [label] = body.find_all("div", "rowlabel")
            prompt = label.find_all("span", "prompt")
            rows.append(prompt[0].text() if prompt else " ".join(k.text() for k in label.find_all("span", "rowkey")))
            attrs.append([a.text() for a in label.find_all("span", "attrs")])
            for td in body.find_all("td"):
                cards[(r, int(td.attrs["data-col"]))] = td.find_all("article", "cell")
        labels = [" · ".join(columns[c]) for c in sorted(columns)]
        heading = " ".join(h.text() for h in section.find_all("h2"))
        found.append(Sheet(heading, labels, rows, cards, attrs))
    return found


def video_src(card: Node) -> str | None:
    """The video a card plays (its video element is made when the cell nears the screen)."""
    media = [m for m in card.find_all("div", "media") if "data-src" in m.attrs]
    return media[0].attrs["data-src"] if media else None


# ------------------------------------------------------------- layout

FOX, BOAT = "a red fox in fresh snow", "a paper boat in the rain"


def test_prompts_go_down_and_the_swept_inputs_across() -> None:
    manifest = sweep([FOX, BOAT], {"seed": ["2", "1"], "steps": ["30", "20"]})
    [sheet] = sheets(build_report(manifest))
    assert sheet.rows == [FOX, BOAT], "prompts in grid order, in full"
    assert sheet.columns == ["steps 20 · seed 1", "steps 20 · seed 2", "steps 30 · seed 1", "steps 30 · seed 2"]
    assert sum(len(c) for c in sheet.cards.values()) == len(manifest) == 8
    for row in manifest.to_dict("records"):
        r = sheet.rows.index(row["prompt"])
        c = sheet.columns.index(f"steps {row['steps']} · seed {row['seed']}")
        [card] = sheet.cards[(r, c)]
        assert card.attrs["data-row-id"] == row["row_id"]
        assert video_src(card) == row["output_path"]


def test_a_chosen_layout_makes_a_sheet_per_prompt_with_seeds_down_and_steps_across() -> None:
    manifest = sweep([FOX, BOAT], {"seed": ["1", "2"], "steps": ["20", "30"]})
    fox, boat = sheets(build_report(manifest, rows="seed", cols="steps"))
    assert (fox.heading, boat.heading) == (FOX, BOAT)
    assert fox.rows == ["seed 1", "seed 2"]
    assert fox.columns == ["steps 20", "steps 30"]
    [card] = boat.cards[(1, 0)]
    expected = manifest[(manifest["prompt"] == BOAT) & (manifest["seed"] == "2") & (manifest["steps"] == 20)]
    assert card.attrs["data-row-id"] == expected["row_id"].item()


def test_only_the_prompt_swept_gives_one_column_and_the_fixed_inputs_in_the_header() -> None:
    manifest = sweep([FOX, BOAT], {"seed": ["7"]})
    page = build_report(manifest)
    [sheet] = sheets(page)
    assert (sheet.rows, sheet.columns) == ([FOX, BOAT], ["video"])
    fixed = parse(page).find_all("p", "fixed")[0].text()
    assert "seed 7" in fixed
    assert "size 832*480" in fixed


def test_an_input_set_per_prompt_is_shown_in_its_row_not_spread_over_columns() -> None:
    """numFrames 81 for one prompt and 121 for the other: as a column axis, half the sheet would
    read "no such combination". It is constant within each row, so each row's header shows it."""
    raw = pd.DataFrame({"prompt": [FOX, BOAT], "numFrames": ["81", "121"], "source": ["g.csv:1", "g.csv:2"]})
    manifest = build_manifest(expand_grid(raw, {"seed": ["1", "2"]}), {})
    page = build_report(manifest)
    [sheet] = sheets(page)
    assert sheet.columns == ["seed 1", "seed 2"], "only the input that crosses the rows is a column"
    assert sheet.rows == [FOX, BOAT]
    assert sheet.attrs == [["numFrames 81"], ["numFrames 121"]]
    assert all(len(cards) == 1 for cards in sheet.cards.values()), "every cell holds its one combination"
    assert not parse(page).find_all("div", "empty"), "no 'no such combination' cell"
    assert "per row: numFrames" in parse(page).find_all("p", "axes")[0].text()


def test_an_input_that_crosses_the_rows_stays_a_column_even_if_one_row_has_one_value() -> None:
    raw = pd.DataFrame({"prompt": [FOX, BOAT], "steps": [[20, 30], [20]], "source": ["g.csv:1", "g.csv:2"]})
    manifest = build_manifest(expand_grid(raw), {})
    [sheet] = sheets(build_report(manifest))
    assert sheet.columns == ["steps 20", "steps 30"]
    assert sheet.attrs == [[], []]
    assert sheet.cards[(1, 1)] == [], "the boat has no steps 30: an honest empty cell"


SAFE_GLYPHS = set(map(chr, range(0x20, 0x7F))) | set("\n·×—…–")  # every system font has these


def test_the_page_adds_no_glyph_a_font_may_lack_and_its_icons_are_inline_svg() -> None:
    """Debian's Chromium drew ⏱ as a missing-glyph box: the page's own text (an ASCII manifest
    here) keeps to glyphs every font has; status icons are drawn as inline SVG."""
    statuses = {"1": "failed", "2": "timed_out", "3": "cancelled", "4": "skipped", "5": "succeeded"}
    manifest = sweep(["plain prompt"], {"seed": list(statuses)},
                     lambda row: (statuses[row["seed"]], "why", "0", "1.0"))  # fmt: skip
    page = build_report(manifest)
    assert set(page) <= SAFE_GLYPHS, sorted(set(page) - SAFE_GLYPHS)
    [sheet] = sheets(page)
    for (_, _), [card] in sheet.cards.items():
        if card.attrs["data-status"] != "succeeded":
            [icon] = card.find_all("svg", "icon")
            assert icon.find_all("path"), "a drawn shape, not a character"


@pytest.mark.parametrize(
    ("rows", "cols", "message"),
    [("sed", None, "unknown --rows input 'sed' (did you mean seed?)"), ("prompt", "steps,bogus", "'bogus'"),
     ("seed", "seed", "seed cannot be both"), ("", None, "names no input")],
)  # fmt: skip
def test_unknown_or_clashing_layout_names_are_a_clear_value_error(rows: str, cols: str | None, message: str) -> None:
    manifest = sweep([FOX], {"seed": ["1", "2"]})
    with pytest.raises(ValueError, match=re.escape(message)):
        build_report(manifest, rows=rows, cols=cols)


# ------------------------------------------------------------- content


def test_everything_from_the_manifest_is_escaped() -> None:
    nasty = "a <script>alert(\"x\")</script> & 'quoted' café 🎬 </td></table>"
    error = '<img src=x onerror="alert(1)"> & broke'
    manifest = sweep([nasty, FOX], {"seed": ["1"]},
                     lambda row: ("failed", error, "0", "1.0") if "café" in row["prompt"] else succeeded())  # fmt: skip
    page = build_report(manifest, title="<b>my</b> sweep")
    for raw in ("<script>alert", "<img", "<b>my", "</td></table>"):
        assert raw not in page
    assert page.count("<script>") == 1, "only the page's own filter script"
    assert page.count("</script>") == 3, "and its rows' and inputs' JSON, which no prompt can close"
    assert nasty in [v for values in inputs_listed(page)["rows"].values() for v in values], "and reads back exactly"
    [sheet] = sheets(page)
    assert sheet.rows == [nasty, FOX], "the prompt reads back exactly, unicode and all"
    [card] = sheet.cards[(0, 0)]
    assert error in card.text()
    assert parse(page).find_all("title")[0].text() == "<b>my</b> sweep"


def test_failures_show_their_reason_and_no_video() -> None:
    reasons = {"1": "RuntimeError: CUDA out of memory", "3": "task ran past --timeout (600 s)"}
    statuses = {"1": "failed", "3": "timed_out"}
    manifest = sweep([FOX], {"seed": ["1", "2", "3"]},
                     lambda row: (statuses[row["seed"]], reasons[row["seed"]], "0.001", "9.0")
                     if row["seed"] in reasons else succeeded())  # fmt: skip
    [sheet] = sheets(build_report(manifest))
    by_seed = {sheet.columns[c].removeprefix("seed "): cards[0] for (_, c), cards in sheet.cards.items()}
    for seed, reason in reasons.items():
        card = by_seed[seed]
        assert video_src(card) is None
        assert card.attrs["data-status"] == statuses[seed]
        assert f"st-{statuses[seed]}" in card.attrs["class"].split(), "marked with its status colour"
        assert reason in card.text()
        assert statuses[seed].replace("_", " ") in card.text()
    assert video_src(by_seed["2"]) is not None
    assert "CUDA" not in by_seed["2"].text()


def test_rows_a_stopped_sweep_never_started_are_their_own_status_not_failures() -> None:
    raw = pd.DataFrame({"prompt": [FOX], "source": ["grid.csv:1"]})
    grid = expand_grid(raw, {"seed": ["1", "2", "3"]})
    ran = grid[grid["seed"] == "1"]
    manifest = build_manifest(grid, fold(events_for(ran, lambda row: succeeded())), final=True)
    page = build_report(manifest)
    [sheet] = sheets(page)
    cards = [cards[0] for cards in sheet.cards.values()]
    assert sorted(c.attrs["data-status"] for c in cards) == ["not_started", "not_started", "succeeded"]
    never = [c for c in cards if c.attrs["data-status"] == "not_started"]
    assert all("st-not_started" in c.attrs["class"].split() and "not started" in c.text() for c in never)
    header = parse(page).find_all("header")[0]
    stats = {s.find_all("span")[0].text(): s.find_all("b")[0].text() for s in header.find_all("div", "stat")}
    assert (stats["not started"], "failed" in stats) == ("2", False)
    filters = [i.attrs["value"] for i in parse(page).find_all("input") if "data-status-filter" in i.attrs]
    assert filters == ["succeeded", "not_started"], "a filter of their own, none of them under Failed"


def test_the_header_totals_counts_cost_and_elapsed_percentiles() -> None:
    outcomes = {"1": succeeded("0.0010", "2.0"), "2": succeeded("0.0020", "4.0"), "3": succeeded("0.0035", "10.0"),
                "4": ("failed", "boom", "0.0005", "1.0")}  # fmt: skip
    manifest = sweep([FOX], {"seed": list(outcomes)}, lambda row: outcomes[row["seed"]])
    header = parse(build_report(manifest)).find_all("header")[0]
    stats = {s.find_all("span")[0].text(): s.find_all("b")[0].text() for s in header.find_all("div", "stat")}
    assert stats == {"cells": "4", "succeeded": "3", "failed": "1", "billed": "$0.0070",
                     "p50 elapsed": "4.0 s", "p95 elapsed": "9.4 s"}  # fmt: skip


def inputs_listed(page: str) -> dict[str, Any]:
    """The JSON block a cell's "inputs" list is made from when it is opened."""
    [block] = [s for s in parse(page).find_all("script") if s.attrs.get("id") == "inputs"]
    listed: dict[str, Any] = json.loads(block.text())
    strings = listed.pop("strings")  # each text once, given by its index
    listed["rows"] = {row_id: [strings[i] for i in values] for row_id, values in listed["rows"].items()}
    return listed


def test_each_cell_shows_its_inputs_status_cost_and_time() -> None:
    manifest = sweep([FOX], {"seed": ["1", "2"]}, lambda row: succeeded("0.0046", "3.84"))
    page = build_report(manifest, posters=frozenset(manifest["output_path"]))
    [sheet] = sheets(page)
    card = sheet.cards[(0, 1)][0]
    text = card.text()
    for shown in ("succeeded", "$0.0046", "3.8 s", "seed 2"):
        assert shown in text
    listed = inputs_listed(page)
    assert listed["names"][:8] == ["prompt", "negativePrompt", "size", "numFrames", "scale", "steps", "fps", "seed"]
    values = dict(zip(listed["names"], listed["rows"][card.attrs["data-row-id"]], strict=True))
    assert (values["prompt"], values["seed"], values["row_id"]) == (FOX, "2", card.attrs["data-row-id"])
    assert card.find_all("video") == [], "no video element until the cell nears the screen"
    assert video_src(card) == manifest["output_path"].iloc[1]
    [poster] = card.find_all("img", "poster")
    assert poster.attrs["loading"] == "lazy", "its poster too is loaded near the screen"
    assert poster.attrs["src"] == str(poster_path(Path(manifest["output_path"].iloc[1])))


def test_the_page_needs_no_network() -> None:
    page = build_report(sweep([FOX], {"seed": ["1", "2"]}))
    tree = parse(page)
    links = [n.attrs.get(a, "") for tag in ("script", "link", "img", "video", "a", "source", "iframe")
             for n in tree.find_all(tag) for a in ("src", "href")]  # fmt: skip
    assert [link for link in links if link and not link.startswith("videos/")] == []
    for remote in ("http:", "https:", "@import", "url("):
        assert remote not in page


# ------------------------------------------------------------- files and the command


def test_write_report_and_the_command_write_out_report_html(tmp_path: Path) -> None:
    write_manifest(tmp_path, sweep([FOX, BOAT], {"seed": ["1", "2"]}))
    path = write_report(tmp_path, rows="seed", cols="prompt")
    assert path == tmp_path / REPORT
    assert len(sheets(path.read_text(encoding="utf-8"))[0].columns) == 2
    result = CliRunner().invoke(report_command, [str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(tmp_path / REPORT)
    assert sheets((tmp_path / REPORT).read_text(encoding="utf-8"))[0].rows == [FOX, BOAT]
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["manifest.csv", "manifest.parquet", REPORT, "summary.json"], "no temp left"


def test_the_command_exits_2_without_a_manifest_or_with_an_unknown_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(report_command, [str(tmp_path)])
    assert result.exit_code == 2
    assert "has no manifest.parquet" in result.output
    assert not (tmp_path / REPORT).exists()
    write_manifest(tmp_path, sweep([FOX], {"seed": ["1", "2"]}))
    result = CliRunner().invoke(report_command, [str(tmp_path), "--cols", "sede"])
    assert result.exit_code == 2
    assert "unknown --cols input 'sede' (did you mean seed?)" in result.output
    with pytest.raises(ValueError, match="sede"):
        write_report(tmp_path, cols="sede")


def test_a_poster_is_made_for_a_video_without_one_and_a_broken_video_gets_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flows.store.posters import ensure_posters, save_poster

    (tmp_path / "renders").mkdir()
    row = records(sweep([FOX], {"seed": ["1"]}))[0]
    video = tmp_path / "a.mp4"
    video.write_bytes(emulator_video(tmp_path / "renders", row))
    broken = tmp_path / "b.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    assert ensure_posters([video, broken, tmp_path / "gone.mp4"])[:2] == (1, {str(video)})
    assert poster_path(video).read_bytes()[:3] == b"\xff\xd8\xff"
    assert not poster_path(broken).exists()
    assert "no poster for" in caplog.text
    assert ensure_posters([video])[:2] == (0, {str(video)}), "an up-to-date poster is kept, and shown"
    assert save_poster(broken) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a.mp4", "b.mp4", "renders"], "no temp left"


@pytest.mark.parametrize(("codec", "pixels"), [("mpeg4", "yuv420p"), ("mjpeg", "yuvj420p"), ("ffv1", "yuv444p"),
                                               ("ffv1", "bgr0")])  # fmt: skip
def test_a_poster_is_the_first_frame_in_its_colours_whatever_the_pixel_format(
    tmp_path: Path, codec: str, pixels: str
) -> None:
    """Video range (yuv420p) and full range (yuvj420p) planes go to JPEG as they are, stretched
    where they must be; other formats through RGB. Left half red, right half green; the second
    frame's green turns blue-ish, so a poster of it would show."""
    import av
    import numpy as np

    from flows.store.posters import first_frame_jpeg

    video = tmp_path / "clip.mkv"
    with av.open(str(video), "w") as container:
        stream = cast("av.VideoStream", container.add_stream(codec, rate=8))
        stream.width, stream.height, stream.pix_fmt = 64, 48, pixels
        for frame in range(2):
            picture = np.zeros((48, 64, 3), np.uint8)
            picture[:, :32], picture[:, 32:] = (200, 30, 30), (20, 180, 60 + 120 * frame)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    jpeg = tmp_path / "poster.jpg"
    jpeg.write_bytes(first_frame_jpeg(video))
    with av.open(str(jpeg)) as image:
        shown = next(image.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert shown.shape == (48, 64, 3)
    assert np.abs(shown[8:40, 4:24] - (200, 30, 30)).max() < 8, shown[24, 10]  # 10 off: not stretched
    assert np.abs(shown[8:40, 40:60] - (20, 180, 60)).max() < 8, shown[24, 50]


def out_with_videos(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """An OUT of four succeeded rows, each with a real video and no poster, and its manifest."""
    (tmp_path / "renders").mkdir()
    out = tmp_path / "out"
    manifest = sweep([FOX, BOAT], {"seed": ["1", "2"]})
    (out / "videos").mkdir(parents=True)
    video = emulator_video(tmp_path / "renders", records(manifest)[0])
    for path in manifest["output_path"]:
        (out / path).write_bytes(video)
    write_manifest(out, manifest)
    return out, manifest


def test_an_unchanged_out_keeps_its_report_and_any_change_renders_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reopening a finished OUT rewrote a report nothing had changed: 15 s at 100,000 rows."""
    import flows.view.report

    built: list[int] = []
    build = flows.view.report.build_report

    def counted(manifest: pd.DataFrame, **options: Any) -> str:
        built.append(len(manifest))
        return build(manifest, **options)

    monkeypatch.setattr(flows.view.report, "build_report", counted)
    out, manifest = out_with_videos(tmp_path)

    def renders(**options: Any) -> bool:
        before = len(built)
        write_report(out, **options)
        return len(built) > before

    assert renders(), "the first report"
    page = (out / REPORT).read_bytes()
    assert not renders(), "nothing changed: the page stays"
    assert (out / REPORT).read_bytes() == page
    poster_path(out / manifest["output_path"][0]).unlink()
    assert not renders(), "a missing poster is made again, as it was: the same page"
    assert poster_path(out / manifest["output_path"][0]).is_file()
    assert renders(cols="seed"), "other options"
    assert renders(), "and back"
    write_manifest(out, manifest.assign(status=["failed", *manifest["status"][1:]]))
    assert renders(), "a row changed"
    assert (out / REPORT).read_bytes() != page
    (out / REPORT).write_text((out / REPORT).read_text().replace("wiro-sweep page", "wiro-sweep pag"))
    assert renders(), "a page without its stamp is rendered again"
    assert not renders()


def test_a_reopened_out_keeps_its_report_without_looking_at_each_video_yet_sees_any_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The posters' check took a stat of every video and poster: 1.9 s of a 100,000-row reopen.
    An unchanged videos folder (its time, which every save, poster and delete moves) needs none."""
    import os
    import time

    import flows.store.posters
    import flows.view.report

    looked: list[int] = []
    ensure = flows.store.posters.ensure_posters

    def counted(videos: Any) -> Any:
        looked.append(1)
        return ensure(videos)

    monkeypatch.setattr(flows.view.report, "ensure_posters", counted)
    out, manifest = out_with_videos(tmp_path)

    def looks() -> bool:
        before = len(looked)
        write_report(out)
        time.sleep(0.03)  # a folder's time moves in the kernel's clock ticks (a few ms): a change after the next
        return len(looked) > before

    assert looks(), "the first report makes the posters"
    page = (out / REPORT).read_bytes()
    assert not looks(), "nothing changed: no video is looked at"
    assert (out / REPORT).read_bytes() == page
    first = out / manifest["output_path"][0]
    poster_path(first).unlink()
    assert looks(), "a poster gone"
    assert poster_path(first).is_file()
    assert (out / REPORT).read_bytes() != page, "its page marked again: the same page, its folder since"
    assert not looks(), "...so the next reopen looks at nothing again"
    again = first.with_name(".again")
    again.write_bytes(emulator_video(tmp_path / "renders", records(manifest)[1]))
    old = poster_path(first).read_bytes()
    os.utime(poster_path(first), ns=(1, 1))  # older than the video saved next
    os.replace(again, first)  # a video saved again, as downloads save
    assert looks(), "a video saved again"
    assert poster_path(first).read_bytes() != old, "its poster made again"
    marked = (out / REPORT).read_text()
    (out / REPORT).write_text(re.sub(r" \w{64} -->", " -->", marked))  # a page from before the mark
    assert looks(), "a page without its folders' mark looks once..."
    assert not looks(), "...and is marked"
    real = flows.store.posters.first_frame_jpeg

    def failing(video: Path) -> bytes:
        raise OSError(24, "Too many open files")  # a passing trouble

    poster_path(first).unlink()
    monkeypatch.setattr(flows.store.posters, "first_frame_jpeg", failing)
    assert looks()
    assert not poster_path(first).exists()
    monkeypatch.setattr(flows.store.posters, "first_frame_jpeg", real)
    assert looks(), "a poster that could not be made is tried again..."
    assert poster_path(first).is_file(), "...and made"
    assert not looks()


# ------------------------------------------------------------- in a real browser

CLIPS = {"numFrames": ["17", "33"], "fps": ["16", "8"]}  # 1.06 s, 2.06 s, 2.13 s and 4.13 s
LANDSCAPE, PORTRAIT = "832*480", "480*832"  # Wiro's `size` is width*height


def frame_size(row: Mapping[str, Any]) -> tuple[int, int]:
    """The picture a row asked for, read off its manifest `size` (width*height)."""
    width, height = str(row["size"]).split("*")
    return int(width), int(height)


def real_out(out: Path, renders: Path) -> pd.DataFrame:
    """A finished sweep on disk, the real way: grid, journal, MP4s as the emulator renders them,
    manifest; one row failed. The fox is landscape, the boat portrait."""
    raw = pd.DataFrame({"prompt": [FOX, 'a <b>bold</b> "boat" — ünïcode'], "size": [LANDSCAPE, PORTRAIT],
                        "source": ["grid.csv:1", "grid.csv:2"]})  # fmt: skip
    grid = expand_grid(raw, {**CLIPS, "seed": ["5"]})
    ends = [End("failed", "0", "2.5", "RuntimeError: CUDA out of memory <GPU 0>") if n == 5
            else End("succeeded", f"0.00{n + 1}", str(2 + n)) for n in range(len(grid))]  # fmt: skip
    return finished_out(out, grid, ends, lambda row: emulator_video(renders, row), first_task=2000)


@dataclass
class Opened:
    page: Page
    out: Path
    rows: list[dict[str, Any]]

    def cell(self, row: Mapping[str, Any]) -> Locator:
        return self.page.locator(f'article.cell[data-row-id="{row["row_id"]}"]')

    def with_status(self, status: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == status]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, driven by Playwright, for this module's pages."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -e .[dev] "
                    "(it drives Debian's Chromium; never run `playwright install`)")  # fmt: skip
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get update && apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def watch(page: Page) -> list[str]:
    """The page's script errors and failed loads, as they happen. Chromium ends a video's request
    once it has what preload="metadata" wants (ERR_ABORTED): the tests check those videos loaded."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda request: None if request.failure == "net::ERR_ABORTED"
            and request.url.endswith(".mp4") else errors.append(f"failed to load {request.url}"))  # fmt: skip
    return errors


@pytest.fixture(scope="module")
def opened(chromium: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Opened]:
    """A real OUT's report open in Chromium, after every video has loaded; screenshot taken."""
    out = tmp_path_factory.mktemp("out")
    manifest = real_out(out, tmp_path_factory.mktemp("renders"))
    report = write_report(out)
    page = chromium.new_page(viewport={"width": 2560, "height": 1000})  # the whole sheet: every video paints
    errors = watch(page)
    page.goto(report.as_uri())
    loaded = "v => v.readyState >= 2 && v.networkState !== HTMLMediaElement.NETWORK_LOADING"
    made = "document.querySelectorAll('video').length === document.querySelectorAll('.media[data-src]').length"
    page.wait_for_function(f"{made} && [...document.querySelectorAll('video')].every({loaded})", timeout=10_000)
    assert page.evaluate("[...document.querySelectorAll('video')].filter(v => v.error).length") == 0
    page.screenshot(path=str(out / "report.png"), full_page=True)
    shutil.copyfile(out / "report.png", SCREENSHOT_COPY)
    yield Opened(page, out, cast(list[dict[str, Any]], manifest.to_dict("records")))
    assert errors == [], "the page loaded everything without a script error"
    page.close()


def test_every_row_has_a_cell_and_every_video_loads_at_its_size_and_length(opened: Opened) -> None:
    for row in opened.rows:
        assert opened.cell(row).count() == 1, row
    assert len(opened.with_status("succeeded")) == 7
    sizes = {str(row["size"]) for row in opened.with_status("succeeded")}
    assert sizes == {LANDSCAPE, PORTRAIT}, "landscape and portrait videos, so a swapped width/height shows"
    for row in opened.with_status("succeeded"):
        video = opened.cell(row).locator("video")
        seen = video.evaluate("v => [v.readyState, v.duration, v.videoWidth, v.videoHeight, v.currentSrc]")
        ready, duration, width, height, src = cast(list[Any], seen)
        assert ready >= 1, seen
        assert (width, height) == frame_size(row), ("the picture its row's size asked for", seen, row)
        assert duration == pytest.approx(row["numFrames"] / row["fps"], abs=1e-3), ("numFrames / fps", seen, row)
        assert src == (opened.out / row["output_path"]).as_uri()
    heads = opened.page.locator(".rowlabel .prompt").all_inner_texts()
    assert heads == [FOX, opened.rows[-1]["prompt"]], "prompts in full, as written"


def test_the_failed_cell_shows_its_reason_in_red_and_no_video(opened: Opened) -> None:
    [bad] = opened.with_status("failed")
    cell = opened.cell(bad)
    assert cell.is_visible()
    assert cell.locator("video").count() == 0
    assert "CUDA out of memory <GPU 0>" in cell.inner_text()
    assert cell.evaluate("c => getComputedStyle(c).borderTopColor") == "rgb(207, 34, 46)"


def test_opening_a_cells_inputs_lists_them_with_its_file(opened: Opened) -> None:
    row = opened.with_status("succeeded")[0]
    cell = opened.cell(row)
    cell.locator("summary").click()
    cell.locator("dl").wait_for()  # made when first opened
    listed = dict(zip(cell.locator("dt").all_inner_texts(), cell.locator("dd").all_inner_texts(), strict=True))
    assert [t for t in listed if t != "model"] == ["prompt", "negativePrompt", "size", "numFrames", "scale", "steps",
                                                   "fps", "seed", "row_id", "task_id", "attempts", "source",
                                                   "file"], "(model too, once manifests have it)"  # fmt: skip
    assert listed["prompt"] == row["prompt"]
    assert listed["row_id"] == row["row_id"]
    assert cell.locator("dd a").get_attribute("href") == row["output_path"]
    cell.locator("summary").click()
    assert cell.locator("dl").count() == 1, "made once"


def test_clicking_a_video_plays_it(opened: Opened) -> None:
    video = opened.cell(opened.with_status("succeeded")[-1]).locator("video")
    video.click()
    opened.page.wait_for_function("v => !v.paused && v.currentTime > 0.2", arg=video.element_handle(), timeout=5_000)
    video.evaluate("v => v.pause()")


def test_filters_hide_cells_by_status_and_by_parameter_value(opened: Opened) -> None:
    page = opened.page
    [bad] = opened.with_status("failed")
    good = opened.with_status("succeeded")[0]
    page.get_by_role("checkbox", name="failed").uncheck()
    assert not opened.cell(bad).is_visible()
    assert opened.cell(good).is_visible()
    assert page.locator("#shown").inner_text() == "7 of 8 cells shown"
    page.get_by_role("checkbox", name="failed").check()
    page.get_by_role("checkbox", name="succeeded").uncheck()
    assert opened.cell(bad).is_visible()
    assert not opened.cell(good).is_visible()
    assert page.locator("tbody.row:visible").count() == 1, "the prompt without a failure is hidden"
    page.get_by_role("checkbox", name="succeeded").check()
    page.get_by_label("fps").select_option("8")
    visible = {r["row_id"] for r in opened.rows if opened.cell(r).is_visible()}
    assert visible == {r["row_id"] for r in opened.rows if r["fps"] == 8}
    page.get_by_label("fps").select_option("")
    assert page.locator("#shown").inner_text() == "8 of 8 cells shown"


def test_each_video_shows_its_first_frame_as_a_poster(opened: Opened) -> None:
    import av
    import numpy as np

    for row in opened.with_status("succeeded"):
        video = opened.cell(row).locator("video")
        poster = cast(str, video.evaluate("v => v.poster"))
        assert poster == (opened.out / poster_path(Path(row["output_path"]))).as_uri()
        size = video.evaluate("v => { const i = new Image(); i.src = v.poster; return i.decode().then("
                              "() => [i.naturalWidth, i.naturalHeight]); }")  # fmt: skip
        width, height = frame_size(row)
        scaled = min(width, 512)
        assert size == [scaled, 2 * round(height * scaled / width / 2)], "loaded, at most 512 px wide, even sides"
        with av.open(str(opened.out / row["output_path"])) as clip:
            first, *_, last = [f.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray().astype(int)
                               for f in clip.decode(video=0)]  # fmt: skip
        with av.open(str(opened.out / poster_path(Path(row["output_path"])))) as image:
            shown = next(image.decode(video=0)).to_ndarray(format="rgb24").astype(int)
        off, other = np.abs(first - shown).mean(), np.abs(last - shown).mean()
        assert off < 10, ("the poster is the video's first frame, JPEG-close", off)
        assert off < other / 3, ("and not a later one", off, other)


def test_each_row_is_labelled_in_one_line_above_its_cells(opened: Opened) -> None:
    """Denser than a tall side card per prompt: the label spans the row, its cells start at the left."""
    boxes = opened.page.evaluate("""[...document.querySelectorAll('tbody.row')].map(row => {
        const label = row.querySelector('.rowlabel').getBoundingClientRect();
        const cell = row.querySelector('article.cell').getBoundingClientRect();
        return [label.top, label.bottom, label.left, cell.top, cell.left]; })""")
    assert len(boxes) == 2
    for label_top, label_bottom, label_left, cell_top, cell_left in boxes:
        assert label_bottom - label_top < 30, "one line of text"
        assert label_bottom <= cell_top < label_bottom + 12, "right above its cells"
        assert abs(cell_left - label_left) < 12, "cells start where the label does: no side column"


def test_videos_load_only_near_the_screen(chromium: Browser, tmp_path: Path) -> None:
    """A sheet longer than the screen: its videos and posters are fetched as their cells come
    near, not all when the page opens; one scrolled to plays."""
    prompts = [f"scene number {n}" for n in range(40)]
    raw = pd.DataFrame({"prompt": prompts, "numFrames": "9", "source": [f"g.csv:{n}" for n in range(1, 41)]})
    grid = expand_grid(raw)
    (tmp_path / "renders").mkdir()
    data = emulator_video(tmp_path / "renders", records(grid)[0])
    out = tmp_path / "out"
    (out / "videos").mkdir(parents=True)
    events = events_for(grid, lambda row: succeeded())
    for event in events:
        if event["event"] == "downloaded":
            (out / event["path"]).write_bytes(data)
    write_manifest(out, build_manifest(grid, fold(events)))
    report = write_report(out)
    page = chromium.new_page(viewport={"width": 1200, "height": 700})
    errors = watch(page)
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url.rsplit("/", 1)[-1]))
    page.goto(report.as_uri())
    page.wait_for_timeout(1500)
    videos = [f for f in fetched if f.endswith(".mp4")]
    assert 1 <= len(videos) <= 20, f"only the cells near the screen (four one-video rows a line): {videos}"
    assert len(videos) <= len([f for f in fetched if f.endswith(".jpg")]) < 40, "posters as the browser nears them"
    assert page.locator("video").count() == len(videos)
    media = page.locator(".media[data-src]").last
    assert media.locator("video").count() == 0
    media.scroll_into_view_if_needed()
    last = media.locator("video")
    last.wait_for(state="attached")
    page.wait_for_function("v => v.readyState >= 1", arg=last.element_handle(), timeout=10_000)
    last.evaluate("v => v.play()")
    page.wait_for_function("v => v.readyState >= 2 && v.currentTime > 0", arg=last.element_handle(), timeout=10_000)
    assert len([f for f in fetched if f.endswith(".mp4")]) < 40
    assert errors == []
    page.close()
