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
