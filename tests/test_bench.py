"""A smoke run of the benchmark script, so it never rots: every scenario, tiny sizes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def test_an_emulator_apart_runs_last_in_line_for_the_cpu_as_if_on_another_machine() -> None:
    """Where the server's latency is measured, the emulator stands for Wiro on other machines: its
    session and every thread it starts are at nice 19, so it takes no CPU the server wants."""
    from bench.harness import emulator
    from flows.priority import autogroup_nice

    with emulator("--task-seconds", "0", apart=True) as emu:
        pid = emu.process.pid
        assert os.getsid(pid) == pid, "a session of its own"
        threads = list(Path(f"/proc/{pid}/task").iterdir())
        assert threads
        assert {os.getpriority(os.PRIO_PROCESS, int(t.name)) for t in threads} == {19}
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled")
        if enabled.is_file() and enabled.read_text().strip() == "1":
            assert autogroup_nice(Path(f"/proc/{pid}/autogroup")) == 19
        assert emu.stats()["tasks"] == 0, "and it answers"


def test_the_probe_times_the_api_from_a_process_of_its_own_and_says_when_it_cannot(prefect_api: str) -> None:
    from bench.probe import Probe

    with Probe(prefect_api) as probe:
        time.sleep(1.5)
        assert probe._process.pid != os.getpid()
    assert len(probe.seconds) >= 3, "four a second"
    assert 0 < probe.p(0.5) <= probe.p(0.95) < 60_000
    with (
        pytest.raises(RuntimeError, match=re.escape("the probe of http://127.0.0.1:9/api stopped")),
        Probe("http://127.0.0.1:9/api"),
    ):
        time.sleep(1.0)


def test_the_scale_bench_seeds_earlier_work_so_the_probe_s_answer_is_full_idle_and_busy(prefect_api: str) -> None:
    """A new server's probe answered an empty list, in half the time of a full one; the sweep's
    probes answered up to 50 task runs. Seeded, the idle probe's answer is as full as theirs."""
    import httpx

    from bench.probe import PROBE
    from bench.scale_100k import SEEDED, seed

    seed({**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_LOGGING_LEVEL": "WARNING"})
    mine = {"flows": {"name": {"any_": ["bench-earlier-work"]}}}
    runs = httpx.post(f"{prefect_api}/task_runs/filter", json={**mine, "limit": 200}, timeout=30).json()
    assert len(runs) == SEEDED, "one flow of them, every one recorded"
    assert {run["state"]["type"] for run in runs} == {"COMPLETED"}
    assert len(httpx.post(f"{prefect_api}/task_runs/filter", json=PROBE, timeout=30).json()) == PROBE["limit"] == SEEDED
