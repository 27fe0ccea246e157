"""`wiro-sweep compare`: two nights on disk, their videos rendered by the emulator and decoded by FFmpeg."""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from flows.cli import main
from flows.view.compare import COMPARE_CSV, COMPARE_HTML, COMPARE_PARQUET, Thresholds, compare_outs
from flows.view.compare_page import write_comparison

from .nights import Row, night
from .test_report import CHROMIUM, CHROMIUM_ARGS, parse

LIGHTHOUSE = "A lighthouse on a cliff at dusk, waves crashing below"
TEAPOT = "A ceramic teapot pouring steaming tea into a cup"
MARKET = "A busy night market street in the rain, neon reflections"
ASTRONAUT = "An astronaut walking across red desert dunes"
INK = "Ink drops blooming in water, macro"
CORGI = "A corgi running along a beach"
NASTY = "a <script>alert('x')</script> & \"quoted\" prompt </td>"
SCREENS = Path("/work/screens/compare")


def compare(*args: str) -> Result:
    return CliRunner().invoke(main, ["compare", *args])


def by_prompt(out: Path) -> dict[str, dict[str, Any]]:
    frame = pd.read_parquet(out / COMPARE_PARQUET)
    return {r["prompt"]: r for r in cast(list[dict[str, Any]], frame.to_dict("records"))}


@dataclass
class Nights:
    baseline: Path
    current: Path


@pytest.fixture(scope="module")
def looks(tmp_path_factory: pytest.TempPathFactory) -> Nights:
    """Two nights where every row succeeded: the same video, a re-encode with pixel noise, a different one."""
    root = tmp_path_factory.mktemp("looks")
    night(root / "a", [Row(LIGHTHOUSE), Row(TEAPOT), Row(MARKET)])
    night(root / "b", [Row(LIGHTHOUSE), Row(TEAPOT, variant="noise:2"), Row(MARKET, variant="redraw:2")])
    return Nights(root / "a", root / "b")


def test_identical_near_identical_and_different_outputs_are_told_apart(looks: Nights) -> None:
    result = compare(str(looks.baseline), str(looks.current))
    assert result.exit_code == 0, result.output
    assert "0 of 3 rows regressed, 0 fixed, 1 changed, 2 unchanged" in result.output
    rows = by_prompt(looks.current)
    same, noisy, other = rows[LIGHTHOUSE], rows[TEAPOT], rows[MARKET]
    assert (same["change"], same["output_changed"], pd.isna(same["psnr_db"])) == ("identical", False, True)
    assert (noisy["change"], noisy["output_changed"]) == ("similar", True)
    assert noisy["psnr_db"] > 35, "a re-encode with pixel noise reads as the same video"
    assert (other["change"], other["output_changed"]) == ("changed", True)
    assert other["psnr_db"] < 20, "a different video reads as changed"
    assert not any(r["regressed"] for r in rows.values())
    assert re.search(r"changed +\w{8} +A busy night market.*: \d+\.\d dB \(under 30 dB\)", result.output)


def test_the_psnr_threshold_is_a_setting(looks: Nights) -> None:
    result = compare(str(looks.baseline), str(looks.current), "--psnr-threshold", "60")
    assert result.exit_code == 0, result.output
    assert by_prompt(looks.current)[TEAPOT]["change"] == "changed", "45 dB is under a 60 dB threshold"
    assert "(under 60 dB)" in result.output


def test_the_compare_files_hold_one_row_per_row_id(looks: Nights) -> None:
    assert compare(str(looks.baseline), str(looks.current)).exit_code == 0
    table = pq.read_table(looks.current / COMPARE_PARQUET)
    needed = ["row_id", "status_baseline", "status_current", "output_changed", "psnr_db", "regressed", "cost_baseline",
              "cost_current", "elapsed_baseline", "elapsed_current", "prompt", "seed", "numFrames"]  # fmt: skip
    assert set(needed) <= set(table.column_names)
    manifest = pd.read_parquet(looks.current / "manifest.parquet")
    assert sorted(table.column("row_id").to_pylist()) == sorted(manifest["row_id"])
    with (looks.current / COMPARE_CSV).open(newline="") as handle:
        lines = {r["prompt"]: r for r in csv.DictReader(handle)}
    assert len(lines) == 3
    same, noisy = lines[LIGHTHOUSE], lines[TEAPOT]
    assert (same["output_changed"], same["psnr_db"], same["regressed"]) == ("false", "", "false")
    assert noisy["output_changed"] == "true"
    assert float(noisy["psnr_db"]) > 35
    assert (same["cost_baseline"], same["cost_current"]) == ("0.0036", "0.0036"), "money as plain decimals"
    assert (same["status_baseline"], same["elapsed_current"]) == ("succeeded", "3")


@pytest.fixture(scope="module")
def eventful(tmp_path_factory: pytest.TempPathFactory) -> Nights:
    """Every kind of change at once, as two emulated nights with different model versions show them."""
    root = tmp_path_factory.mktemp("eventful")
    night(root / "a", [Row(LIGHTHOUSE), Row(TEAPOT), Row(MARKET), Row(ASTRONAUT, elapsed=3.0, cost="0.0036"),
                       Row(INK, status="failed"), Row(CORGI), Row(NASTY)])  # fmt: skip
    night(root / "b", [Row(LIGHTHOUSE), Row(TEAPOT, status="failed", error="ValueError: NaN in latents <step 17>"),
                       Row(MARKET, variant="redraw:2"), Row(ASTRONAUT, elapsed=7.0, cost="0.0084"),
                       Row(INK), Row(NASTY), Row("A paper boat drifting down a gutter")])  # fmt: skip
    return Nights(root / "a", root / "b")


def test_regressions_new_and_gone_rows_exit_1_with_a_short_summary(eventful: Nights) -> None:
    result = compare(str(eventful.baseline), str(eventful.current))
    assert result.exit_code == 1, result.output
    rows = by_prompt(eventful.current)
    teapot = rows[TEAPOT]
    assert (teapot["change"], teapot["regressed"]) == ("regressed", True)
    assert (teapot["status_baseline"], teapot["status_current"]) == ("succeeded", "failed")
    assert teapot["note"] == "succeeded -> failed: ValueError: NaN in latents <step 17>"
    astronaut = rows[ASTRONAUT]
    assert astronaut["regressed"]
    assert "elapsed 3.0 s -> 7.0 s (x2.3, over x2)" in astronaut["note"]
    assert "cost $0.0036 -> $0.0084" in astronaut["note"]
    assert (rows[CORGI]["change"], rows[CORGI]["regressed"]) == ("gone", True), "it succeeded, and is not there"
    assert pd.isna(rows[CORGI]["status_current"])
    boat = rows["A paper boat drifting down a gutter"]
    assert (boat["change"], boat["regressed"], pd.isna(boat["status_baseline"])) == ("new", False, True)
    assert (rows[INK]["change"], rows[INK]["regressed"]) == ("fixed", False)
    assert rows[MARKET]["change"] == "changed"
    lines = result.output.splitlines()
    assert lines[0].endswith("3 of 8 rows regressed, 1 fixed, 1 changed, 2 unchanged; 1 new, 1 gone")
    assert lines[1].startswith("cost $0.0216 -> $0.0264; elapsed p50 3.0 s -> 3.0 s")
    assert [line.split()[0] for line in lines[2:7]] == ["regressed", "regressed", "regressed", "changed", "new"]
    assert lines[-1] == f"wrote {eventful.current / COMPARE_HTML} (and {COMPARE_CSV}, {COMPARE_PARQUET})"


def test_the_ratios_are_settings(eventful: Nights) -> None:
    result = compare(str(eventful.baseline), str(eventful.current), "--max-elapsed-ratio", "3",
                     "--max-cost-ratio", "2.5")  # fmt: skip
    assert result.exit_code == 1
    assert not by_prompt(eventful.current)[ASTRONAUT]["regressed"], "2.3x is within 3x and 2.5x"
    assert "2 of 8 rows regressed" in result.output


def test_only_new_rows_still_exit_1(tmp_path: Path) -> None:
    night(tmp_path / "a", [Row(LIGHTHOUSE)])
    night(tmp_path / "b", [Row(LIGHTHOUSE), Row(TEAPOT)])
    result = compare(str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.exit_code == 1
    assert "0 of 2 rows regressed, 0 fixed, 0 changed, 1 unchanged; 1 new" in result.output


def test_a_row_the_current_sweep_stopped_before_is_not_a_regression(tmp_path: Path) -> None:
    night(tmp_path / "a", [Row(LIGHTHOUSE), Row(TEAPOT)])
    stopped = Row(TEAPOT, status="not_started", error="the sweep stopped before its Run request")
    night(tmp_path / "b", [Row(LIGHTHOUSE), stopped])
    result = compare(str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert "0 of 2 rows regressed, 0 fixed, 0 changed, 1 unchanged; 1 not_started" in result.output
    row = by_prompt(tmp_path / "b")[TEAPOT]
    assert (row["change"], row["regressed"]) == ("not_started", False)
    assert 'class="stat ch-not_started"' in (tmp_path / "b" / COMPARE_HTML).read_text()


def test_video_size_frame_count_and_fps_changes_are_reported_as_such(tmp_path: Path) -> None:
    prompts = [LIGHTHOUSE, TEAPOT, MARKET]
    night(tmp_path / "a", [Row(p) for p in prompts])
    night(tmp_path / "b", [Row(LIGHTHOUSE, render={"width": 480, "height": 832}),
                           Row(TEAPOT, render={"num_frames": 17}), Row(MARKET, render={"fps": 24})])  # fmt: skip
    assert compare(str(tmp_path / "a"), str(tmp_path / "b")).exit_code == 0
    rows = by_prompt(tmp_path / "b")
    assert rows[LIGHTHOUSE]["video_change"] == "size 832x480 -> 480x832"
    assert pd.isna(rows[LIGHTHOUSE]["psnr_db"]), "no pixel-by-pixel comparison across sizes"
    assert rows[TEAPOT]["video_change"] == "frames 33 -> 17"
    assert rows[TEAPOT]["psnr_db"] == 100.0, "the same pictures at the same timestamps, fewer of them"
    assert rows[MARKET]["video_change"] == "fps 16 -> 24"
    assert rows[MARKET]["psnr_db"] < 30, "at the same timestamps a faster clip shows other frames"
    assert {r["change"] for r in rows.values()} == {"changed"}


def test_a_video_that_will_not_decode_marks_its_row_and_the_others_go_on(tmp_path: Path) -> None:
    night(tmp_path / "a", [Row(LIGHTHOUSE), Row(TEAPOT), Row(MARKET)])
    manifest = night(tmp_path / "b", [Row(LIGHTHOUSE, variant="noise:2"), Row(TEAPOT, variant="noise:3"),
                                      Row(MARKET, variant="redraw:2")])  # fmt: skip
    paths = dict(zip(manifest["prompt"], manifest["output_path"], strict=True))
    broken = tmp_path / "b" / paths[LIGHTHOUSE]
    broken.write_bytes(broken.read_bytes()[:3000])  # cut off in the middle of its first frame
    (tmp_path / "b" / paths[TEAPOT]).unlink()
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert result.exit_code == 2
    [error] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert str(broken) in error or str(tmp_path / "b" / paths[TEAPOT]) in error
    assert "(and 1 more)" in error
    rows = by_prompt(tmp_path / "b")
    assert rows[LIGHTHOUSE]["change"] == "undecodable"
    cannot = "cannot decode (Invalid data found when processing input)"
    assert rows[LIGHTHOUSE]["video_error"] == f"current {broken}: {cannot}"
    assert rows[TEAPOT]["video_error"].endswith("cannot open (No such file or directory)")
    assert rows[MARKET]["change"] == "changed", "the other rows were compared"
    assert rows[MARKET]["psnr_db"] < 20


def test_a_rerun_replaces_what_the_last_one_wrote(looks: Nights, tmp_path: Path) -> None:
    comparison = compare_outs(looks.baseline, looks.current, Thresholds(psnr_db=60))
    write_comparison(comparison)
    assert len(list((looks.current / "compare").glob("*.png"))) == 2, "a strip for each changed row"
    write_comparison(compare_outs(looks.baseline, looks.current))
    assert len(list((looks.current / "compare").glob("*.png"))) == 1, "the re-encode is no longer shown"
    assert not [p.name for p in looks.current.iterdir() if p.name.startswith(".")], "no temporary left"


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written


def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    night(tmp_path / "good", [Row(LIGHTHOUSE), Row(TEAPOT)])
    night(tmp_path / "other", [Row(MARKET)])
    (tmp_path / "empty").mkdir()
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "manifest.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "afile").write_text("x")
    running = night(tmp_path / "running", [Row(LIGHTHOUSE), Row(TEAPOT)])
    running.loc[1, "status"] = "running"
    from flows.store.manifest import write_manifest

    write_manifest(tmp_path / "running", running)
    good = str(tmp_path / "good")
    cases = {
        (str(tmp_path / "missing"), good): f"BASELINE {tmp_path / 'missing'}: no such folder",
        (good, str(tmp_path / "afile")): f"CURRENT {tmp_path / 'afile'}: not a folder",
        (good, str(tmp_path / "empty")): f"CURRENT {tmp_path / 'empty'}: has no manifest.parquet",
        (str(tmp_path / "torn"), good): f"BASELINE {tmp_path / 'torn' / 'manifest.parquet'}: unreadable",
        (good, str(tmp_path / "other")): "BASELINE and CURRENT share no row_id: they are sweeps of different grids",
        (good, good): "BASELINE and CURRENT are the same folder",
        (good, str(tmp_path / "running")): f"CURRENT {tmp_path / 'running'}: 1 rows still pending or running",
    }
    for (baseline, current), message in cases.items():
        result = CliRunner().invoke(main, ["compare", baseline, current])
        assert result.exit_code == 2, (baseline, current, result.output)
        assert result.output.count("\n") == 1, result.output
        assert result.output.startswith(f"error: {message}"), result.output
    for out in tmp_path.iterdir():
        if out.is_dir():
            assert not [p for p in out.iterdir() if p.name.startswith("compare")], f"nothing written in {out}"


# ------------------------------------------------------------------ the page


def test_the_page_shows_regressions_first_then_changes_with_totals_on_top(eventful: Nights) -> None:
    compare(str(eventful.baseline), str(eventful.current))
    text = (eventful.current / COMPARE_HTML).read_text(encoding="utf-8")
    tree = parse(text)
    stats = {s.find_all("span")[0].text(): s.find_all("b")[0].text() for s in tree.find_all("div", "stat")}
    assert stats == {"rows": "8", "regressed": "3", "fixed": "1", "changed": "1", "unchanged": "2", "new": "1",
                     "gone": "1"}  # fmt: skip
    sides = {tr.find_all("th")[0].text(): [td.text() for td in tr.find_all("td")]
             for tr in tree.find_all("table", "sides")[0].find_all("tbody")[0].find_all("tr")}  # fmt: skip
    assert sides["billed"] == ["$0.0216", "$0.0264"]
    assert sides["p95 elapsed"] == ["3.0 s", "6.0 s"]
    headings = [s.find_all("h2")[0].text() for s in tree.find_all("section")]
    assert headings == ["Regressions 3", "Visual changes 1", "Fixed and new 2", "Every row 8"]
    regressions = tree.find_all("section")[0].find_all("article", "card")
    assert [c.attrs["data-change"] for c in regressions] == ["regressed"] * 3
    [changed] = tree.find_all("section")[1].find_all("article", "card")
    videos = changed.find_all("video")
    assert [v.attrs["class"] for v in videos] == ["baseline", "current"], "side by side, baseline first"
    row_id = changed.attrs["data-row-id"]
    assert videos[0].attrs["src"] == f"compare/baseline/{row_id}.mp4"
    played = (eventful.current / videos[0].attrs["src"]).read_bytes()
    assert played == (eventful.baseline / f"videos/{row_id}.mp4").read_bytes(), "BASELINE's video, inside CURRENT"
    assert (eventful.current / videos[1].attrs["src"]).is_file()
    [strip] = changed.find_all("img")
    assert (eventful.current / strip.attrs["src"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_everything_from_the_manifests_is_escaped_and_nothing_comes_from_the_network(eventful: Nights) -> None:
    compare(str(eventful.baseline), str(eventful.current))
    text = (eventful.current / COMPARE_HTML).read_text(encoding="utf-8")
    assert "<script>alert" not in text
    assert '</td>"' not in text
    assert text.count("<script>") == 1, "only the page's own script"
    assert "ValueError: NaN in latents &lt;step 17&gt;" in text
    tree = parse(text)
    prompts = [n.text() for n in tree.find_all("td", "prompt")]
    assert " ".join(NASTY.split()) in prompts, "and it reads back as written"
    links = [n.attrs.get(a, "") for tag in ("script", "link", "img", "video", "a", "source", "iframe")
             for n in tree.find_all(tag) for a in ("src", "href")]  # fmt: skip
    links = [link for link in links if link]
    assert len(links) > 5
    assert all(link.startswith(("compare/", "videos/")) for link in links), links
    for remote in ("http:", "https:", "@import", "url("):
        assert remote not in text


# ------------------------------------------------------------------ in Chromium


@pytest.fixture(scope="module")
def browser_page(eventful: Nights) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get update && apt-get install -y chromium")
    compare(str(eventful.baseline), str(eventful.current))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda request: errors.append(f"failed to load {request.url}"))
            page.goto((eventful.current / COMPARE_HTML).as_uri())
            yield page
            assert errors == [], "the page loaded everything without a script error"
        finally:
            browser.close()


def test_chromium_plays_both_videos_of_a_changed_row_in_sync(browser_page: Any) -> None:
    card = browser_page.locator("article.card[data-change=changed]")
    videos = card.locator("video")
    assert videos.count() == 2
    card.locator("button.play").click()
    browser_page.wait_for_function(
        "vs => vs.every(v => v.readyState >= 2 && !v.paused) && vs[0].currentTime > 0.4",
        arg=videos.element_handles(), timeout=10_000,
    )  # fmt: skip
    seen = []
    for _ in range(5):
        seen.append(videos.evaluate_all("vs => vs.map(v => v.currentTime)"))
        browser_page.wait_for_timeout(150)
    for baseline, current in seen:
        assert abs(baseline - current) < 0.25, ("played together", seen)
    assert any(later[0] > earlier[0] for earlier, later in itertools.pairwise(seen)), ("and moving", seen)  # it loops
    card.locator("button.play").click()
    browser_page.wait_for_function("vs => vs.every(v => v.paused)", arg=videos.element_handles(), timeout=5_000)
    card.locator("input.seek").fill("500")
    browser_page.wait_for_function(
        "vs => vs.every(v => v.readyState >= 2 && Math.abs(v.currentTime - vs[0].duration / 2) < 0.2)",
        arg=videos.element_handles(), timeout=5_000,
    )  # fmt: skip


def test_the_difference_view_overlays_the_two_and_the_frame_strip_loads(browser_page: Any) -> None:
    card = browser_page.locator("article.card[data-change=changed]")
    current = card.locator("video.current")
    assert current.evaluate("v => getComputedStyle(v).mixBlendMode") == "normal"
    card.get_by_label("difference").check()
    assert current.evaluate("v => getComputedStyle(v).mixBlendMode") == "difference"
    boxes = card.locator("video").evaluate_all("vs => vs.map(v => { const r = v.getBoundingClientRect(); "
                                               "return [r.x, r.y, r.width, r.height]; })")  # fmt: skip
    assert boxes[0] == boxes[1], "one on top of the other"
    strip = card.locator("img")
    strip.scroll_into_view_if_needed()
    browser_page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=strip.element_handle(), timeout=5_000)
    SCREENS.mkdir(parents=True, exist_ok=True)
    browser_page.screenshot(path=str(SCREENS / "compare-difference.png"), full_page=True)
    card.get_by_label("difference").uncheck()


def test_a_regressed_row_shows_the_baseline_video_and_why_the_current_one_is_missing(browser_page: Any) -> None:
    card = browser_page.locator("article.card", has_text="ceramic teapot")
    assert card.get_attribute("data-change") == "regressed"
    assert card.locator("video").count() == 1
    assert card.locator("video").evaluate("v => v.className") == "baseline"
    missing = card.locator(".side.current .novideo")
    assert "ValueError: NaN in latents <step 17>" in missing.inner_text()
    card.locator("button.play").click()
    browser_page.wait_for_function("v => v.readyState >= 2 && v.currentTime > 0.2",
                                   arg=card.locator("video").element_handle(), timeout=10_000)  # fmt: skip
    card.locator("button.play").click()


def test_rows_judged_from_the_manifests_alone_are_never_called_the_same(looks: Nights) -> None:
    from flows.view.compare import join, judge, load_out

    joined = join(load_out(looks.baseline, "BASELINE"), load_out(looks.current, "CURRENT"))
    verdicts = {row["prompt"]: judge(row, None, Thresholds()) for row in joined}
    assert verdicts[LIGHTHOUSE]["change"] == "identical"
    for prompt in (TEAPOT, MARKET):  # other bytes, not decoded: no claim that they look the same
        assert (verdicts[prompt]["change"], verdicts[prompt]["note"]) == ("changed", "other bytes, not decoded")


def test_a_manifest_cannot_point_the_compare_outside_its_out(tmp_path: Path) -> None:
    from flows.store.manifest import write_manifest

    night(tmp_path / "a", [Row(LIGHTHOUSE), Row(TEAPOT)])
    current = night(tmp_path / "b", [Row(LIGHTHOUSE, variant="redraw:2"), Row(TEAPOT, variant="redraw:2")])
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not yours")
    current.loc[current["prompt"] == LIGHTHOUSE, "output_path"] = "../secret.mp4"
    write_manifest(tmp_path / "b", current)
    result = compare(str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.exit_code == 2
    rows = by_prompt(tmp_path / "b")
    assert (
        rows[LIGHTHOUSE]["video_error"] == f"current output_path '../secret.mp4' is not a file under {tmp_path / 'b'}"
    )
    assert rows[TEAPOT]["change"] == "changed", "the other row was compared"
    tree = parse((tmp_path / "b" / COMPARE_HTML).read_text(encoding="utf-8"))
    sources = [v.attrs["src"] for v in tree.find_all("video")]
    assert sources
    assert not [s for s in sources if "secret" in s], "no link out of CURRENT"
    assert not (tmp_path / "b" / "compare" / "baseline" / "secret.mp4").exists()

    current.loc[0, "row_id"] = "../../escape"
    write_manifest(tmp_path / "b", current)
    result = compare(str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.exit_code == 2
    assert "row_id '../../escape' is not a wiro-sweep row id" in result.output
