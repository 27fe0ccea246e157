"""A smoke run of the benchmark script, so it never rots: every scenario, tiny sizes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_script_runs_every_scenario_and_writes_the_report(prefect_api: str, tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_LOGGING_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    headings = ("## 1. Throughput", "## 2. Overhead", "## 3. Waiting", "## 4. Scale", "## 5. Report", "## 6. Compare",
                "## 9. Planning and resuming at scale")  # fmt: skip
    for heading in headings:
        assert heading in text
    assert "cores" in text, "the machine is named"
    assert re.search(r"Taken \d{4}-\d\d-\d\d", text), "and the date"
    ratio = re.search(r"\| makespan \(s\) \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|", text)
    assert ratio is not None
    assert 0.2 < float(ratio.group(1)) < 20
    rss = re.search(r"\| 5 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| (\d+) \|", text)
    assert rss is not None
    assert 50 < int(rss.group(1)) < 4096


def test_the_server_s_requests_are_counted_by_path_from_its_access_log() -> None:
    """`--count-requests` reads uvicorn's access lines: each run's id is one `{id}`, a query
    string is no part of the path, and lines that are no request are not counted."""
    from bench.server_load import requests_by_path

    run = "0b5f7a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    log = (
        '20:09:04.662 | INFO    | uvicorn.access - 127.0.0.1:47450 - "GET /api/health HTTP/1.1" 200\n'
        f'20:09:05.101 | INFO    | uvicorn.access - 127.0.0.1:47460 - "GET /api/flow_runs/{run} HTTP/1.1" 200\n'
        f'20:09:05.202 | INFO    | uvicorn.access - 127.0.0.1:47461 - "GET /api/flow_runs/{run[::-1]} HTTP/1.1" 200\n'
        '20:09:05.303 | INFO    | uvicorn.access - 127.0.0.1:47462 - "POST /api/task_runs/filter?x=1 HTTP/1.1" 200\n'
        "20:09:05.404 | WARNING | prefect.server - a line that is no request\n"
    ).encode()
    assert requests_by_path(log) == {"GET /health": 1, "GET /flow_runs/{id}": 1,
                                     f"GET /flow_runs/{run[::-1]}": 1, "POST /task_runs/filter": 1}  # fmt: skip
