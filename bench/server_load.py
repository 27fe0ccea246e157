"""The Prefect server under a big sweep (issue 19, part 2): its API's latency during the sweep
against the same server idle, how much its database grew, and how long the flow run's page and
its task-run list take to open in Chromium.

    python -m bench.server_load --rows 1000            # prints a Markdown table
    python -m bench.server_load --rows 1000,10000 --out /tmp/server.md

One sweep per size, in a process of its own (`bench.child`, instant emulator tasks, preview
videos), against a `prefect server` of the benchmark's own on PostgreSQL with its UI on
(`bench.harness.prefect_api`). A probe (`bench.probe`) sends the request the UI's run page sends
most, four times a second: for `IDLE_SECONDS` before the sweep (idle), then for as long as it
runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from .harness import emulator, markdown_table, prefect_api
from .probe import Probe
from .report_load import CHROMIUM, CHROMIUM_ARGS
from .scenarios import scratch, write_grid

IDLE_SECONDS = 60.0  # 240 probes: its p95 is the twelfth slowest (of 80 in 20 s, it read 13-46 ms)

ACCESS_LINE = re.compile(rb'"(GET|POST|PATCH|PUT|DELETE) /api/([^ ?"]*)')
AN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def requests_by_path(log: bytes) -> Counter[str]:
    """The API requests in a server log with uvicorn's access lines (`PREFECT_SERVER_LOGGING_LEVEL=
    INFO`), counted by method and path, ids as `{id}`."""
    return Counter(
        f"{match[1].decode()} /{AN_ID.sub('{id}', match[2].decode(errors='replace'))}"
        for match in ACCESS_LINE.finditer(log)
    )


def database_mib() -> float:
    """The size of the server's database (PostgreSQL), in MiB; NaN on SQLite."""
    url = os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL", "")
    if not url.startswith("postgresql"):
        return float("nan")
    import asyncpg

    async def size() -> int:
        connection = await asyncpg.connect(url.replace("+asyncpg", ""), timeout=5)
        try:
            return int(await connection.fetchval("SELECT pg_database_size(current_database())"))
        finally:
            await connection.close()

    return asyncio.run(size()) / 2**20


def open_seconds(ui: str, flow_run_id: str) -> dict[str, float]:
    """Seconds until the run page shows its task-run count, and then until its Task Runs tab lists a row."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            started = time.perf_counter()
            page.goto(f"{ui}/runs/flow-run/{flow_run_id}", timeout=120_000)
            page.get_by_text("Task runs").first.wait_for(timeout=120_000)
            run_page = time.perf_counter() - started
            started = time.perf_counter()
            page.locator("li.p-tab#task-runs").click()
            page.locator(".state-list-item__name a").first.wait_for(timeout=120_000)
            task_list = time.perf_counter() - started
        finally:
            browser.close()
    return {"run_page_s": run_page, "task_list_s": task_list}


def last_flow_run(api: str) -> str:
    runs = httpx.post(f"{api}/flow_runs/filter", json={"sort": "START_TIME_DESC", "limit": 1}, timeout=60).json()
    return str(runs[0]["id"])


def server_load(work: Path, rows: int) -> dict[str, float]:
    """One sweep of `rows` and what it did to the server."""
    api = os.environ["PREFECT_API_URL"]
    grid = write_grid(work, rows, f"server-{rows}")
    options = ["--concurrency-limit", "100000", "--task-seconds", "0", "--queue-seconds", "0", "--preview"]
    before = database_mib()
    with Probe(api) as idle:
        time.sleep(IDLE_SECONDS)
    with emulator(*options) as emu, Probe(api) as busy:
        started = time.perf_counter()
        command = [sys.executable, "-m", "bench.child", str(grid), str(work / f"server-{rows}")]
        child = subprocess.run(command, env={**os.environ, **emu.env}, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - started
    peak = json.loads(child.stdout.strip().splitlines()[-1])["rss_mib"]  # the sweep process's own
    pages = open_seconds(api.removesuffix("/api"), last_flow_run(api))
    return {
        "rows": rows, "per_row_ms": 1000 * wall / rows, "idle_p50_ms": idle.p(0.5), "idle_p95_ms": idle.p(0.95),
        "busy_p50_ms": busy.p(0.5), "busy_p95_ms": busy.p(0.95), "p95_ratio": busy.p(0.95) / idle.p(0.95),
        "db_growth_mib": database_mib() - before, "peak_rss_mib": peak, **pages,
    }  # fmt: skip


COLUMNS = [
    ("rows", "rows", ","), ("per row (ms)", "per_row_ms", ".1f"), ("API p95 idle (ms)", "idle_p95_ms", ".0f"),
    ("API p95 during (ms)", "busy_p95_ms", ".0f"), ("ratio (target ≤ 2x)", "p95_ratio", ".2f"),
    ("database growth (MiB)", "db_growth_mib", ".1f"), ("sweep's peak RSS (MiB)", "peak_rss_mib", ".0f"),
    ("run page (s)", "run_page_s", ".2f"), ("task-run list (s)", "task_list_s", ".2f"),
]  # fmt: skip


def table(runs: list[dict[str, Any]]) -> str:
    return markdown_table(runs, COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000", help="comma-separated sizes, e.g. 1000,10000,100000")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    with prefect_api(ui=True) as note:
        runs = [server_load(scratch(), int(n)) for n in args.rows.split(",")]
    text = f"Against {note}, {statistics.fmean(r['per_row_ms'] for r in runs):.1f} ms a row on average.\n\n"
    text += table(runs) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
