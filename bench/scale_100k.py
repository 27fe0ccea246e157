"""Sweeps of 1,000 to 100,000 rows in one process and on four shards against the production
setup (issue 19, `python -m bench.run --only scale-100k`): a `prefect server` on PostgreSQL with
its UI on, the `wiro-sweep` process work pool, the `wiro-account` limit, deployments.yaml
deployed and one worker a shard, as `scripts/prefect-stack.sh` sets them up; a stack of its own
for each sweep.

    python -m bench.scale_100k --rows 1000                      # prints a Markdown table
    python -m bench.scale_100k --rows 1000,10000 --shards 1,4 --out /tmp/scale.md
    python -m bench.scale_100k --rows 100000 --shards 1 --designs chunk

Each sweep runs in each design of `DESIGNS`: a task run per row's step (today's), or chunks
(`--row-task-runs-max 0`), so the two are measured in the same run.

Each sweep is `wiro-sweep run GRID` (`--shards 4`: four child runs on the workers), instant
emulator tasks and preview videos, 100 at a time a process. Measured: wall time a row, the peak
RSS of the process that runs the rows (the command's own, or each shard's flow-run process, from
/proc five times a second), the API's p95 during the sweep against the same server idle
(`bench.probe.Probe`), the database's growth, and a run page with its task runs in Chromium.

The probe asks for the latest 50 task runs. A new server holds none, and an empty answer took
half the time of a full one: before the idle probe, a flow of `SEEDED` tasks runs on the
server (`seed`), so the probe's answer is 50 task runs idle and during the sweep alike, as on
a server that has done any work before.

The probe (`bench.probe`) stands for a person's browser, in a process of its own. The sweep
command runs in a session of its own, as a terminal's does. The emulator stands for Wiro, which
runs on other machines: in a session of its own at the lowest CPU priority
(`bench.harness.emulator`), its 40% of a core is not counted as the server's latency, and it
slows the rows instead (it shares the CPU with the shards, at nice 19 too). The workers look
for runs every second, ten times as often as Prefect's default that `prefect-stack.sh` keeps:
the shards start at once, and the server bears more polls than in production.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.prefect_stack import PREFECT, ROOT, Stack

from .harness import emulator, markdown_table, new_database, pointed_at
from .probe import Probe
from .scenarios import scratch, write_grid
from .server_load import IDLE_SECONDS, database_mib, open_seconds, requests_by_path

OPTIONS = ["--concurrency-limit", "100000", "--task-seconds", "0", "--queue-seconds", "0", "--preview"]
PER_SHARD = 100
DESIGNS = {  # how many rows may have task runs of their own (`--row-task-runs-max`)
    "step": 10**9,  # today's: a submit and a wait task run for every row
    "chunk": 0,  # past the limit: a task run per 1,000 rows and per row that did not succeed
}


class PeakRss:
    """The peak RSS (VmHWM, MiB) of every `python -m prefect.engine` process (a worker's flow run,
    a shard) seen while it runs, from /proc, five times a second."""

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
        while not self._stop.wait(0.2):
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


SEEDED = 50  # the probe's page: every answer idle or busy is full
SEED = """
from prefect import flow, task

@task
def earlier(n: int) -> int:
    return n

@flow(name="bench-earlier-work")
def earlier_work(count: int) -> None:
    earlier.map(range(count)).result()

earlier_work(int(__import__("sys").argv[1]))
"""


def seed(env: dict[str, str], count: int = SEEDED, seconds: float = 120) -> None:
    """Run a flow of `count` task runs on the server: earlier work, as any server in use holds;
    back once the server has recorded them all (it records task runs from their events)."""
    subprocess.run([sys.executable, "-c", SEED, str(count)], env=env, cwd=ROOT, check=True, capture_output=True,
                   timeout=300)  # fmt: skip
    done = {"type": {"any_": ["COMPLETED"]}}
    mine = {"flows": {"name": {"any_": ["bench-earlier-work"]}}, "task_runs": {"state": done}}
    deadline = time.monotonic() + seconds
    while httpx.post(f"{env['PREFECT_API_URL']}/task_runs/count", json=mine, timeout=60).json() < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not record the {count} earlier task runs in {seconds:.0f} s")
        time.sleep(0.5)


def a_shards_run(api: str) -> str:
    """The flow run of the latest task run: the sweep's, or a shard's (a parent runs none)."""
    runs = httpx.post(f"{api}/task_runs/filter", json={"sort": "EXPECTED_START_TIME_DESC", "limit": 1}, timeout=60)
    return str(runs.json()[0]["flow_run_id"])


def workers_up(stack: Stack, count: int, seconds: float = 120) -> None:
    """Wait until `count` workers have said they started, and a moment for their first polls."""
    deadline = time.monotonic() + seconds
    while sum("started!" in stack.log(f"worker-{n}") for n in range(count)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not start: " + stack.log("worker-0")[-2000:])
        time.sleep(0.5)
    time.sleep(3)


def stack_sweep(work: Path, rows: int, shards: int, design: str = "step", count: bool = False) -> dict[str, Any]:
    """One sweep of `rows` (on `shards` shards, if more than 1) on its own stack, its task runs as
    `design` says (`DESIGNS`), and what it cost; with `count`, the server's requests a second
    during the sweep by path (its access log costs the server some time of its own)."""
    home = Path(tempfile.mkdtemp(prefix="wiro-bench-stack-"))
    database, _ = new_database(home)
    loud = {"PREFECT_SERVER_LOGGING_LEVEL": "INFO"} if count else {}
    stack = Stack(home, database, PREFECT_UI_ENABLED="true", PREFECT_LOGGING_LEVEL="WARNING", **loud)
    try:
        stack.serve()
        stack.deploy(account_limit=shards * PER_SHARD)
        seed(stack.env)  # before the workers start: its events are long handled by the idle probe
        with emulator(*OPTIONS, apart=True) as emu, pointed_at({"PREFECT_API_DATABASE_CONNECTION_URL": database}):
            env = {**stack.env, **emu.env, "PREFECT_WORKER_QUERY_SECONDS": "1"}
            for n in range(shards):
                command = [PREFECT, "worker", "start", "--pool", "wiro-sweep", "--name", f"worker-{n}", "--limit", "1"]
                stack.start(f"worker-{n}", command, env)
            api = stack.env["PREFECT_API_URL"]
            grid, out = write_grid(work, rows, f"shards-{rows}"), work / f"shards-{rows}"
            workers_up(stack, shards)  # their start is not the server's idle state
            before = database_mib()
            with Probe(api) as idle:
                time.sleep(IDLE_SECONDS)
            command = [sys.executable, "-m", "flows", "run", str(grid), "--out", str(out),
                       "--max-concurrency", str(PER_SHARD), "--poll-interval", "0.2",
                       "--row-task-runs-max", str(DESIGNS[design])]  # fmt: skip
            command += ["--shards", str(shards)] if shards > 1 else []
            log_from = (home / "server.log").stat().st_size
            with Probe(api) as busy:
                started = time.perf_counter()
                # in a session of its own, as a terminal's is; the probe stands for a browser's
                sweep = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
                with PeakRss() as rss:
                    output = sweep.stdout.read() if sweep.stdout else b""
                    _, status, usage = os.wait4(sweep.pid, 0)  # its own peak, to the last byte
                wall = time.perf_counter() - started
            counted = requests_by_path((home / "server.log").read_bytes()[log_from:]) if count else None
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"the sweep exited {status}: {output.decode()[-2000:]}")
            tasks = emu.stats()["tasks"]
            growth = database_mib() - before
        pages = open_seconds(api.removesuffix("/api"), a_shards_run(api))
    finally:
        stack.stop(grace=10)
    if tasks != rows:
        raise RuntimeError(f"{rows} rows made {tasks} tasks")
    peaks = [usage.ru_maxrss / 1024] if shards == 1 else list(rss.peaks.values())
    return {
        "rows": rows, "shards": shards, "design": design, "per_row_ms": 1000 * wall / rows,
        "peak_rss_mib": max(peaks or [0.0]),
        "idle_p95_ms": idle.p(0.95), "busy_p95_ms": busy.p(0.95), "p95_ratio": busy.p(0.95) / idle.p(0.95),
        "db_growth_mib": growth, **pages,
        **({"requests_per_s": {path: n / wall for path, n in counted.most_common(12)}} if counted else {}),
    }  # fmt: skip


COLUMNS = [
    ("rows", "rows", ","), ("processes", "shards", "d"), ("task runs", "design", "s"),
    ("per row (ms)", "per_row_ms", ".1f"),
    ("peak RSS of one (MiB)", "peak_rss_mib", ".0f"), ("API p95 idle (ms)", "idle_p95_ms", ".0f"),
    ("API p95 during (ms)", "busy_p95_ms", ".0f"), ("ratio (target ≤ 2x)", "p95_ratio", ".2f"),
    ("database growth (MiB)", "db_growth_mib", ".1f"), ("a run page (s)", "run_page_s", ".2f"),
    ("its task-run list (s)", "task_list_s", ".2f"),
]  # fmt: skip


def table(runs: list[dict[str, Any]]) -> str:
    return markdown_table(runs, COLUMNS)


HEADING = "## 11. One process and four shards on a real server, 1,000 to 100,000 rows (issue 19)"
SIZES = {"full": (1000, 10_000, 100_000), "quick": (1000, 10_000), "smoke": (200,)}


def sweeps(sizes: Sequence[int], shards: Sequence[int] = (1, 4),
           designs: Sequence[str] = tuple(DESIGNS), count: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Every combination of size, shards and design, each on a stack of its own."""
    return [stack_sweep(scratch(), rows, k, d, count) for rows in sizes for k in shards for d in designs]


def run(size: str) -> list[dict[str, Any]]:
    return sweeps(SIZES[size])


def section(runs: list[dict[str, Any]], command: str) -> str:
    """The section of docs/benchmarks.md: the table, and each target met or missed."""
    verdicts = []
    for k, design in sorted({(r["shards"], r["design"]) for r in runs}):
        mine = [r for r in runs if (r["shards"], r["design"]) == (k, design)]
        first, last = mine[0], mine[-1]
        flat, pages = last["per_row_ms"] / first["per_row_ms"], max(last["run_page_s"], last["task_list_s"])
        verdicts.append(
            f"- {'one process' if k == 1 else f'{k} shards'}, task runs by {design}, at {last['rows']:,} rows: per row "
            f"{flat:.2f}x the {first['rows']:,} figure ({_verdict(flat <= 1.3, '≤ 1.3x')}); peak RSS "
            f"{last['peak_rss_mib']:.0f} MiB ({_verdict(last['peak_rss_mib'] < 1024, '< 1024')}); API p95 "
            f"{last['p95_ratio']:.1f}x idle ({_verdict(last['p95_ratio'] <= 2, '≤ 2x')}); pages {pages:.1f} s "
            f"({_verdict(pages < 3, '< 3 s')})."
        )
    return "\n".join([HEADING, "", f"Taken {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`.", "",
                      table(runs), "", *verdicts, ""])  # fmt: skip


def _verdict(ok: bool, target: str) -> str:
    return f"target {target}: {'met' if ok else '**missed**'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000", help="comma-separated sizes, e.g. 1000,10000,100000")
    parser.add_argument("--shards", default="1,4", help="comma-separated: 1 is one process, more are shards")
    parser.add_argument("--designs", default=",".join(DESIGNS), help=f"comma-separated, of {', '.join(DESIGNS)}")
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--count-requests", action="store_true",
                        help="log the server's requests and count them by path (costs the server time)")  # fmt: skip
    args = parser.parse_args()
    sizes, shards = ([int(n) for n in given.split(",")] for given in (args.rows, args.shards))
    runs = sweeps(sizes, shards, args.designs.split(","), args.count_requests)
    text = table(runs) + "\n"
    for one in runs:
        for path, rate in one.get("requests_per_s", {}).items():
            text += f"\n{one['rows']} rows, {one['shards']} process(es): {rate:6.2f}/s {path}"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
