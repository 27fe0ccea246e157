"""`wiro-sweep serve`'s index over many OUTs: how long `GET /` takes, cold and warm.

    python -m bench.serve_index                       # 1,000 OUTs of 1,000 rows
    python -m bench.serve_index --outs 200 --rows 100

Every OUT is a real one (a manifest written by the project's writer, its summary.json, a report
stub); they share one manifest's bytes (hard links), so 1,000 OUTs take seconds to make. Timed over
real loopback HTTP against `ReportServer`: the first `GET /` (nothing cached), the next ones, and
the same with every summary.json removed (OUTs written before summaries: their manifests are read
once, then cached by mtime). Prints a Markdown table; docs/benchmarks.md takes it by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from flows.store.manifest import MANIFEST_CSV, MANIFEST_PARQUET, SUMMARY_JSON
from flows.view import outs_index
from flows.view.serve import ReportServer


def make_outs(root: Path, outs: int, rows: int) -> None:
    from .report_load import make_out

    first = make_out(root / "out-0000", rows, videos=4)
    (first / "report.html").write_text("<!doctype html><title>stub</title>", encoding="utf-8")
    for n in range(1, outs):
        out = root / f"out-{n:04d}"
        out.mkdir()
        for name in (MANIFEST_PARQUET, MANIFEST_CSV, SUMMARY_JSON, "report.html"):
            os.link(first / name, out / name)


def timed_gets(url: str, times: int) -> list[float]:
    spent = []
    with httpx.Client(timeout=120) as client:
        for _ in range(times):
            started = time.perf_counter()
            answer = client.get(url)
            spent.append(time.perf_counter() - started)
            answer.raise_for_status()
    return spent


def measure(outs: int, rows: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="bench-index-") as scratch:
        root = Path(scratch) / "runs"
        root.mkdir()
        make_outs(root, outs, rows)
        found: dict[str, list[float]] = {}
        outs_index._CACHE.clear()
        with ReportServer([root]) as server:
            found["summary.json: first GET /"] = timed_gets(f"{server.url}/", 1)
            found["summary.json: next GET /"] = timed_gets(f"{server.url}/", 5)
            for out in root.iterdir():
                (out / SUMMARY_JSON).unlink()
            found["no summary.json: first GET /"] = timed_gets(f"{server.url}/", 1)
            found["no summary.json: next GET /"] = timed_gets(f"{server.url}/", 5)
        shutil.rmtree(root)
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outs", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000, help="rows in each OUT's manifest")
    args = parser.parse_args()
    found = measure(args.outs, args.rows)
    print(f"| `GET /` over {args.outs:,} OUTs of {args.rows:,} rows | s (median, min–max) |\n| --- | --- |")
    for name, spent in found.items():
        print(f"| {name} | {statistics.median(spent):.3f} ({min(spent):.3f}–{max(spent):.3f}) |")


if __name__ == "__main__":
    main()
