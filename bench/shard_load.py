"""A sweep on four shards against the production setup (issue 19, part 1): a `prefect server` on
PostgreSQL with its UI on, the `wiro-sweep` process work pool, the `wiro-account` limit,
deployments.yaml deployed and one worker a shard, as `scripts/prefect-stack.sh` sets them up.

    python -m bench.shard_load --rows 1000            # prints a Markdown table
    python -m bench.shard_load --rows 1000,10000 --shards 4 --out /tmp/shards.md

One sharded `wiro-sweep run GRID --shards N` per size (instant emulator tasks, preview videos,
100 at a time a shard). Measured: wall time a row, each shard's flow-run process's peak RSS
(read from /proc twice a second), the API's p95 during the sweep against the same server idle
(`bench.server_load.Probe`), the database's growth, and the parent run's page in Chromium.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.prefect_stack import PREFECT, ROOT, Stack

from .harness import _database, emulator, pointed_at
from .scenarios import scratch, write_grid
from .server_load import IDLE_SECONDS, Probe, database_mib, open_seconds

OPTIONS = ["--concurrency-limit", "100000", "--task-seconds", "0", "--queue-seconds", "0", "--preview"]
PER_SHARD = 100


class PeakRss:
    """The peak RSS (VmHWM, MiB) of every `python -m prefect.engine` process (a worker's flow run)
    seen while it runs, from /proc, twice a second."""

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
                try:
                    if b"prefect.engine" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peaks[pid] = max(self.peaks.get(pid, 0.0), int(line.split()[1]) / 1024)


def a_shards_run(api: str) -> str:
    """The flow run of the latest task run: a shard's (the parent's own runs none)."""
    runs = httpx.post(f"{api}/task_runs/filter", json={"sort": "EXPECTED_START_TIME_DESC", "limit": 1}, timeout=60)
    return str(runs.json()[0]["flow_run_id"])


def shard_load(work: Path, rows: int, shards: int) -> dict[str, Any]:
    """One sharded sweep of `rows` on its own stack, and what it cost."""
    home = Path(tempfile.mkdtemp(prefix="wiro-bench-stack-"))
    database, _ = _database(home)
    stack = Stack(home, database, PREFECT_UI_ENABLED="true", PREFECT_LOGGING_LEVEL="WARNING")
    try:
        stack.serve()
        stack.deploy(account_limit=shards * PER_SHARD)
        with emulator(*OPTIONS) as emu, pointed_at({"PREFECT_API_DATABASE_CONNECTION_URL": database}):
            env = {**stack.env, **emu.env, "PREFECT_WORKER_QUERY_SECONDS": "1"}
            for n in range(shards):
                command = [PREFECT, "worker", "start", "--pool", "wiro-sweep", "--name", f"worker-{n}", "--limit", "1"]
                stack.start(f"worker-{n}", command, env)
            api = stack.env["PREFECT_API_URL"]
            grid, out = write_grid(work, rows, f"shards-{rows}"), work / f"shards-{rows}"
            before = database_mib()
            with Probe(api) as idle:
                time.sleep(IDLE_SECONDS)
            command = [sys.executable, "-m", "flows", "run", str(grid), "--out", str(out), "--shards", str(shards),
                       "--max-concurrency", str(PER_SHARD), "--poll-interval", "0.2"]  # fmt: skip
            with Probe(api) as busy, PeakRss() as rss:
                started = time.perf_counter()
                done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
                wall = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(
                    f"the sharded sweep exited {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
                )
            tasks = emu.stats()["tasks"]
            growth = database_mib() - before
        pages = open_seconds(api.removesuffix("/api"), a_shards_run(api))
    finally:
        stack.stop(grace=10)
    if tasks != rows:
        raise RuntimeError(f"{rows} rows made {tasks} tasks")
    peaks = sorted(rss.peaks.values(), reverse=True)[:shards]
    return {
        "rows": rows, "shards": shards, "per_row_ms": 1000 * wall / rows, "shard_peak_rss_mib": max(peaks or [0]),
        "idle_p95_ms": idle.p(0.95), "busy_p95_ms": busy.p(0.95), "p95_ratio": busy.p(0.95) / idle.p(0.95),
        "db_growth_mib": growth, **pages,
    }  # fmt: skip


def table(runs: list[dict[str, Any]]) -> str:
    head = ("| rows | shards | per row (ms) | a shard's peak RSS (MiB) | API p95 idle (ms) | API p95 during (ms) "
            "| ratio (target ≤ 2x) | database growth (MiB) | a shard's run page (s) | its task-run list (s) |\n"
            + "| ---: " * 10 + "|")  # fmt: skip
    lines = [
        f"| {r['rows']:,} | {r['shards']} | {r['per_row_ms']:.1f} | {r['shard_peak_rss_mib']:.0f} "
        f"| {r['idle_p95_ms']:.0f} | {r['busy_p95_ms']:.0f} | {r['p95_ratio']:.2f} | {r['db_growth_mib']:.1f} "
        f"| {r['run_page_s']:.2f} | {r['task_list_s']:.2f} |"
        for r in runs
    ]
    return "\n".join([head, *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000", help="comma-separated sizes, e.g. 1000,10000,100000")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    runs = [shard_load(scratch(), int(n), args.shards) for n in args.rows.split(",")]
    text = table(runs) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
