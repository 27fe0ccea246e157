"""Scenario 5: how long Chromium takes to open a report of 1,000 (or 100,000) cells, and how much memory it uses.

    python -m bench.report_load                          # 1,000 cells, 3 repetitions; updates docs/benchmarks.md
    python -m bench.report_load --cells 50 --out /tmp/b.md
    python -m bench.report_load --size 100k --out /tmp/b.md   # 100,000 cells, no baseline (see below)

Only its own section of the file is replaced, so the other scenarios need not run again; a full
`python -m bench.run` includes it. The OUT is real: a full-size MP4 as the emulator renders it
and its poster, copied for every succeeded cell (5% of the cells failed), and the report
`write_report` makes of it; past `--videos` cells (200 by default) the cells share that many files
(`videos/v<k>.mp4`), so a 100,000-cell OUT takes seconds and megabytes to make. The baseline,
in the same run, is the same page with a video element per cell loading at once
(`preload="metadata"`, poster and source set), as the report did before it made videos near the
screen only; it is left out past `BASELINE_UP_TO` cells. Each page opens in a fresh Chromium at 1600x1000.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SECTION = "## 5. Report"
SIZES = {"smoke": (20, 1), "quick": (200, 1), "full": (1000, 3), "10k": (10_000, 1), "100k": (100_000, 1)}
BASELINE_UP_TO = 2000  # cells: past this the every-video-at-once page is not worth opening
VIDEOS = 200  # distinct video files at most; more cells share them
TARGET_MS = 2000.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
READY = """async () => {
  const near = [...document.querySelectorAll('img.poster, video[poster]')].filter(e => {
    const r = e.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth;
  });
  const url = e => e.tagName === 'IMG' ? e.src : e.poster;
  await Promise.all(near.map(e => { const i = new Image(); i.src = url(e); return i.decode().catch(() => null); }));
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return [performance.now(), new Set(near.map(e => e.closest('.media'))).size];
}"""


def make_out(out: Path, cells: int, videos: int = VIDEOS) -> Path:
    """A swept OUT of `cells` rows (prompts down, 10 seeds across), sharing at most `videos` files:
    its manifest's folder (the report not yet written)."""
    import pandas as pd

    from flows.engine.rows import records
    from flows.grid import INPUTS, expand_grid
    from flows.store.journal import fold
    from flows.store.manifest import build_manifest, write_manifest
    from flows.store.posters import save_poster
    from wiro_tasks.emulator.app import Renderer
    from wiro_tasks.emulator.state import EmulatedTask
    from wiro_tasks.inputs import TEXT_TO_VIDEO, model_spec

    seeds = [str(s) for s in range(1, min(10, cells) + 1)]
    prompts = [f"scene {n}: a lighthouse keeper walks the stairs at dusk" for n in range(max(1, cells // len(seeds)))]
    raw = pd.DataFrame(
        {"prompt": prompts, "numFrames": "33", "source": [f"g.csv:{n + 1}" for n in range(len(prompts))]}
    )
    grid = expand_grid(raw, {"seed": seeds})
    rows = records(grid)
    first = model_spec(TEXT_TO_VIDEO).validate({n: rows[0][n] for n in INPUTS}, allow_unknown=True)
    (out / "videos").mkdir(parents=True)
    (out / "renders").mkdir()
    _, _, rendered = Renderer(out / "renders", preview=False).render(
        EmulatedTask(id=1, model=TEXT_TO_VIDEO, parameters=first, created=0.0, queue=0.0, run=0.0)
    )
    template = out / "videos" / "template.mp4"
    shutil.copyfile(rendered, template)
    poster = save_poster(template)
    assert poster is not None
    events: list[dict[str, Any]] = []
    for n, row in enumerate(rows):
        rid, task = row["row_id"], str(1000 + n)
        failed = n % 20 == 7
        events += [{"event": "intent", "row_id": rid, "at": "2026-01-01T00:00:00.000Z"},
                   {"event": "submitted", "row_id": rid, "task_id": task, "at": "2026-01-01T00:00:00.000Z"},
                   {"event": "finished", "row_id": rid, "task_id": task, "status": "failed" if failed else "succeeded",
                    "error": "RuntimeError: CUDA out of memory" if failed else "", "cost": "0.0036", "elapsed": "3.0",
                    "output_url": "", "at": "2026-01-01T00:00:03.000Z"}]  # fmt: skip
        if not failed:
            name = f"videos/{rid}.mp4" if cells <= videos else f"videos/v{n % videos}.mp4"
            if not (out / name).exists():
                shutil.copyfile(template, out / name)
                shutil.copyfile(poster, (out / name).with_suffix(".jpg"))
            events.append({"event": "downloaded", "row_id": rid, "path": name, "sha256": "0", "bytes": 1})
    template.unlink()
    poster.unlink()
    shutil.rmtree(out / "renders")
    write_manifest(out, build_manifest(grid, fold(events)))
    return out


def eager_copy(report: Path) -> Path:
    """The baseline page: a video element per cell, its poster and source set, preload="metadata"."""
    page = re.sub(r'<div class="media" (style="[^"]*") data-src="([^"]*)" data-file="[^"]*"><img class="poster" '
                  r'src="([^"]*)" loading="lazy" alt="first frame">',
                  r'<div class="media" \1><video controls muted loop playsinline preload="metadata" src="\2" '
                  r'poster="\3"></video>', report.read_text(encoding="utf-8"))  # fmt: skip
    assert page.count("<video ") == report.read_text(encoding="utf-8").count('class="poster"') > 0
    baseline = report.with_name("report-eager.html")
    baseline.write_text(page, encoding="utf-8")
    return baseline


def pss_mib(profile: str) -> float:
    """Proportional set size of every process of one Chromium (found by its profile directory)."""
    total = 0
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or profile not in (proc / "cmdline").read_text(errors="replace"):
                continue
            rollup = (proc / "smaps_rollup").read_text()
        except OSError:
            continue
        match = re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE)
        total += int(match[1]) if match else 0
    return total / 1024


def open_once(page_path: Path) -> dict[str, float]:
    """Open a page in a fresh Chromium; when it loaded, when its first screen showed its posters,
    how much memory Chromium then used, and how many videos it fetched."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, viewport={"width": 1600, "height": 1000}
        )
        try:
            page = context.new_page()
            videos: set[str] = set()
            page.on("request", lambda r: videos.add(r.url) if r.url.endswith(".mp4") else None)
            page.goto(page_path.as_uri(), wait_until="load", timeout=120_000)
            ready, shown = page.evaluate(READY)
            load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            page.wait_for_timeout(1000)  # what it keeps loading after the first screen
            session = context.new_cdp_session(page)
            session.send("Performance.enable")
            metrics = {m["name"]: m["value"] for m in session.send("Performance.getMetrics")["metrics"]}
            nodes, articles = page.evaluate(
                "[document.getElementsByTagName('*').length, document.querySelectorAll('article.cell').length]"
            )
            return {"load_ms": float(load), "ready_ms": float(ready), "pss_mib": pss_mib(profile),
                    "nodes": float(nodes), "articles": float(articles),
                    "heap_mib": metrics["JSHeapUsedSize"] / 2**20, "videos": float(len(videos)),
                    "in_view": float(shown)}  # fmt: skip
        finally:
            context.close()


def measure(cells: int, repeats: int, videos: int = VIDEOS) -> dict[str, Any]:
    """Make the OUT, write its report (timed), open it `repeats` times (and the baseline, when small)."""
    from flows.view.report import write_report

    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch:
        out = make_out(Path(scratch) / "out", cells, videos)
        started = time.perf_counter()
        report = write_report(out)
        written = time.perf_counter() - started
        baseline = eager_copy(report) if cells <= BASELINE_UP_TO else None
        lazy, eager = [], []
        for n in range(repeats):
            print(f"  report {n + 1}/{repeats} ({cells} cells)", flush=True)
            lazy.append(open_once(report))
            if baseline is not None:
                eager.append(open_once(baseline))
            time.sleep(0.5)
        return {"cells": cells, "lazy": lazy, "eager": eager, "write_s": written,
                "bytes": report.stat().st_size}  # fmt: skip


def section(cells: int, repeats: int, videos: int = VIDEOS) -> str:
    measured = measure(cells, repeats, videos)
    lazy, eager = measured["lazy"], measured["eager"]

    def cell(runs: list[dict[str, float]], key: str, digits: int = 0) -> str:
        if not runs:
            return "—"
        values = [r[key] for r in runs]
        text = f"{statistics.median(values):.{digits}f}"
        return text + (f" ({min(values):.{digits}f}–{max(values):.{digits}f})" if len(values) > 1 else "")

    from .run import machine

    ok = statistics.median(r["ready_ms"] for r in lazy) < TARGET_MS
    taken = f"Taken {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}."
    return "\n".join([
        "", f"{SECTION}: {cells:,} cells opened in Chromium (`python -m bench.report_load --cells {cells}`)", "",
        taken, "", f"`write_report` took {measured['write_s']:.1f} s; report.html is "
        f"{measured['bytes'] / 2**20:.1f} MiB ({measured['bytes'] / cells:.0f} bytes a cell).",
        "", "| | this report | baseline: every video at once | target |", "| --- | --- | --- | --- |",
        f"| load event (ms) | {cell(lazy, 'load_ms')} | {cell(eager, 'load_ms')} | |",
        f"| first screen shown with its posters (ms) | {cell(lazy, 'ready_ms')} | {cell(eager, 'ready_ms')} "
        f"| < {TARGET_MS:.0f}: {'met' if ok else '**missed**'} |",
        f"| Chromium memory a second later, PSS of all its processes (MiB) | {cell(lazy, 'pss_mib')} "
        f"| {cell(eager, 'pss_mib')} | |",
        f"| JS heap used (MiB) | {cell(lazy, 'heap_mib', 1)} | {cell(eager, 'heap_mib', 1)} | |",
        f"| DOM elements | {cell(lazy, 'nodes')} | {cell(eager, 'nodes')} | |",
        f"| cells in the DOM | {cell(lazy, 'articles')} | {cell(eager, 'articles')} | |",
        f"| videos fetched by then | {cell(lazy, 'videos')} | {cell(eager, 'videos')} | |",
        "", f"Medians of {repeats} opening(s), each in a fresh Chromium (Debian's, headless, 1600x1000, "
        f"{cell(lazy, 'in_view')} cells on the first screen). \"Shown\" is when the page has loaded, every "
        "video on the first screen has its poster decoded, and two frames have been drawn. The baseline "
        f"(left out past {BASELINE_UP_TO:,} cells) is the same file with a video element in every cell the "
        "HTML holds (its first rows; the others are made from JSON near the screen), its source and poster "
        "set and preload=\"metadata\", as the report was before: Chromium delays the load event for each "
        "video's metadata.",
    ])  # fmt: skip


def replace_section(document: str, new: str) -> str:
    """The benchmarks file with its report section replaced (or added at the end)."""
    start = document.find("\n" + SECTION)
    if start < 0:
        return document.rstrip("\n") + "\n" + new + "\n"
    end = document.find("\n## ", start + 1)
    return document[:start] + new + (document[end:] if end >= 0 else "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="full", help="cells and repetitions: " + ", ".join(
        f"{k} {c:,} x{r}" for k, (c, r) in SIZES.items()))  # fmt: skip
    parser.add_argument("--cells", type=int, help="cells, overriding --size")
    parser.add_argument("--repeats", type=int, help="openings, overriding --size")
    parser.add_argument("--videos", type=int, default=VIDEOS, help="distinct video files the cells share")
    parser.add_argument("--out", default="docs/benchmarks.md", type=Path)
    args = parser.parse_args()
    cells, repeats = SIZES[args.size]
    new = section(args.cells or cells, args.repeats or repeats, args.videos)
    existing = args.out.read_text() if args.out.exists() else "# Benchmarks\n"
    args.out.write_text(replace_section(existing, new))
    print(new)


if __name__ == "__main__":
    main()
