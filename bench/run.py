"""Run every benchmark scenario and write docs/benchmarks.md.

    python -m bench.run                 # the full runs the issue asks for (about 20-30 minutes)
    python -m bench.run --quick --out /tmp/b.md    # a few minutes' version, small sizes
    python -m bench.run --smoke --out /tmp/b.md    # tiny sizes, every code path (the test suite does this)

Each scenario runs the sweep and its baseline in the same run, several times; the report gives
medians with min and max, the ratios, the targets, and the machine and date they were taken on.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .harness import prefect_api

# Prefect reads its settings once, when first imported: everything that imports it (the
# scenarios) is imported only after the API to use is in the environment.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@dataclass(frozen=True)
class Plan:
    repeats: int
    throughput: dict[str, Any]
    overhead: dict[str, Any]
    waiting: dict[str, Any]
    scale_rows: tuple[int, ...]
    overhead_repeats: int = 0  # the noisiest scenario: more repetitions (0: as many as the others)


FULL = Plan(
    repeats=3,
    throughput={"rows": 500, "limit": 50, "task_seconds": 2.0},
    overhead={"rows": 1000, "concurrency": 50},
    waiting={"rows": 200, "scale": 0.25, "shortest": 10.0, "longest": 300.0},
    scale_rows=(100, 1000, 10000),
    overhead_repeats=5,
)
SMOKE = Plan(  # the test suite's run: every code path, tiny sizes
    repeats=1,
    throughput={"rows": 6, "limit": 3, "task_seconds": 0.2},
    overhead={"rows": 8, "concurrency": 4},
    waiting={"rows": 4, "scale": 0.05, "shortest": 4.0, "longest": 8.0},
    scale_rows=(5,),
)
QUICK = Plan(
    repeats=1,
    throughput={"rows": 20, "limit": 5, "task_seconds": 0.5},
    overhead={"rows": 30, "concurrency": 10},
    waiting={"rows": 10, "scale": 0.1, "shortest": 10.0, "longest": 30.0},
    scale_rows=(10, 40),
)


def repeat(times: int, scenario: Callable[..., dict[str, float]], **params: Any) -> list[dict[str, float]]:
    from .scenarios import scratch

    results = []
    for n in range(times):
        print(f"  {scenario.__name__} {n + 1}/{times} {params}", flush=True)
        results.append(scenario(scratch(), **params))
    return results


def cell(runs: list[dict[str, float]], key: str, unit: str = "", digits: int = 2) -> str:
    values = [r[key] for r in runs]
    middle = statistics.median(values)
    text = f"{middle:.{digits}f}{unit}"
    if len(values) > 1:
        text += f" ({min(values):.{digits}f}–{max(values):.{digits}f})"
    return text


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    from importlib.metadata import version

    return (f"{cpu}, {os.cpu_count()} cores{memory}; Python {platform.python_version()}, "
            f"Prefect {version('prefect')}, httpx {version('httpx')}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: only checks that it all runs")
    parser.add_argument("--out", default="docs/benchmarks.md", type=Path)
    parser.add_argument(
        "--only",
        help="comma-separated: throughput,overhead,waiting,scale,report,compare,scale-plan,"
        "scale-100k (hours: both designs, one process and four shards up to 100,000 rows; with --quick, "
        "1,000 and 10,000 rows, about 40 minutes)",
    )
    args = parser.parse_args()
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    chosen = set((args.only or "throughput,overhead,waiting,scale,report,compare,scale-plan").split(","))
    started = datetime.now(UTC)
    sections: list[str] = []
    with prefect_api() as api:
        from .scenarios import overhead, scale, throughput, waiting

        if "throughput" in chosen:
            runs = repeat(plan.repeats, throughput, **plan.throughput)
            sections.append(throughput_section(runs, plan))
        if "overhead" in chosen:
            runs = repeat(plan.overhead_repeats or plan.repeats, overhead, **plan.overhead)
            sections.append(overhead_section(runs, plan))
        if "waiting" in chosen:
            runs = repeat(plan.repeats, waiting, **plan.waiting)
            sections.append(waiting_section(runs, plan))
        if "scale" in chosen:
            runs = [repeat(1, scale, rows=rows)[0] for rows in plan.scale_rows]
            sections.append(scale_section(runs, plan))
        if "report" in chosen:  # its own module: python -m bench.report_load updates its section alone
            from .report_load import SIZES as REPORT_SIZES
            from .report_load import section

            sections.append(section(*REPORT_SIZES["smoke" if args.smoke else "quick" if args.quick else "full"]))
        if "compare" in chosen:  # bench/compare.py; `python -m bench.compare` reruns it alone
            from .compare import SIZES as COMPARE_SIZES
            from .compare import compare_section, run_compare
            from .scenarios import scratch

            size = COMPARE_SIZES["smoke" if args.smoke else "quick" if args.quick else "full"]
            sections.append(compare_section(run_compare(size, scratch()), size))
        if "scale-plan" in chosen:  # bench/scale_plan.py; `python -m bench.scale_plan` reruns it alone
            from . import scale_plan

            kind = "smoke" if args.smoke else "quick" if args.quick else "full"
            flag = {"smoke": " --smoke", "quick": " --quick", "full": ""}[kind]
            sections.append(scale_plan.section(scale_plan.run(kind), f"python -m bench.run --only scale-plan{flag}"))
    if "scale-100k" in chosen:  # a stack of its own per sweep; `python -m bench.scale_100k` reruns it alone
        from . import scale_100k

        kind = "smoke" if args.smoke else "quick" if args.quick else "full"
        flag = {"smoke": " --smoke", "quick": " --quick", "full": ""}[kind]
        sections.append(scale_100k.section(scale_100k.run(kind), f"python -m bench.run --only scale-100k{flag}"))
    header = [
        "# Benchmarks",
        "",
        f"Taken {started:%Y-%m-%d %H:%M} UTC on {machine()}, against {api}, with "
        f"`python -m bench.run{' --smoke' if args.smoke else ' --quick' if args.quick else ''}` (regenerates "
        "this file). Every "
        "scenario runs the sweep flow and its baseline in the same run against the bundled emulator "
        "in a process of its own; figures are medians over the repetitions with (min–max).",
        "",
        "Baselines: **plain** makes the very same Wiro calls (the sweep's own submit and wait bodies, "
        "task socket and polls included) with plain asyncio under a semaphore: no Prefect, journal "
        "or manifest. **two empty tasks** is a Prefect flow running two empty task runs per "
        "combination, the floor of any flow with a task per step.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    body = "".join("\n" + section.strip("\n") + "\n" for section in sections)  # one blank line before each
    args.out.write_text("\n".join(header) + "\n" + body)
    print(f"wrote {args.out}")


def throughput_section(runs: list[dict[str, float]], plan: Plan) -> str:
    p = plan.throughput
    ok = statistics.median(r["ratio"] for r in runs) <= 1.1
    busy = statistics.median(r["near_limit"] for r in runs)
    return "\n".join([
        "", f"## 1. Throughput: {p['rows']} combinations, account limit {p['limit']}, {p['task_seconds']:g} s tasks",
        "", "| | sweep | plain | ratio | target |", "| --- | --- | --- | --- | --- |",
        f"| makespan (s) | {cell(runs, 'sweep_s')} | {cell(runs, 'plain_s')} | {cell(runs, 'ratio')} "
        f"| ≤ 1.1x: {verdict(ok)} |",
        f"| steady state: share of time with ≥ 90% of the limit in flight | {cell(runs, 'near_limit')} "
        f"| {cell(runs, 'plain_near_limit')} | | most of the time: {verdict(busy >= 0.5)} |",
        f"| steady state: share of time exactly at the limit | {cell(runs, 'at_limit')} "
        f"| {cell(runs, 'plain_at_limit')} | | |",
        f"| steady state: mean tasks in flight | {cell(runs, 'mean_in_flight', digits=1)} "
        f"| {cell(runs, 'plain_mean_in_flight', digits=1)} | | of {p['limit']} |",
        "", f"The ideal makespan ({p['rows']} / {p['limit']} x {p['task_seconds']:g} s) is "
        f"{runs[0]['ideal_s']:.0f} s. The steady state runs from the first moment the account is full to "
        "the last submission (the ramp and the tail cannot be full). Every task ending leaves its slot "
        f"empty for the moment it takes to notice and submit the next, so with {p['limit']} slots some are "
        "almost always in that moment: exactly-full is rare for any client, the baseline included.",
    ])  # fmt: skip


def overhead_section(runs: list[dict[str, float]], plan: Plan) -> str:
    p = plan.overhead
    ok = all(statistics.median(r[k] for r in runs) <= 1.2 for k in ("ratio", "cpu_ratio"))
    ours_ok = all(statistics.median(r[k] for r in runs) <= 1.0 for k in ("bookkeeping_ms", "bookkeeping_cpu_ms"))
    return "\n".join([
        "", f"## 2. Overhead: {p['rows']} instant combinations, {p['concurrency']} at a time",
        "", "| | wall | process CPU | target |", "| --- | --- | --- | --- |",
        f"| sweep flow (s) | {cell(runs, 'sweep_s')} | | |",
        f"| plain, same calls (s) | {cell(runs, 'plain_s')} | | |",
        f"| the sweep's runner without task runs (s) | {cell(runs, 'runner_s')} | | |",
        f"| two empty tasks per combination (s) | {cell(runs, 'two_empty_s')} | | |",
        f"| orchestration per combination: (sweep − plain) / n (ms) | {cell(runs, 'ours_ms', digits=1)} "
        f"| {cell(runs, 'ours_cpu_ms', digits=1)} | |",
        f"| of which the sweep's own bookkeeping: (runner − plain) / n (ms) | {cell(runs, 'bookkeeping_ms', digits=1)} "
        f"| {cell(runs, 'bookkeeping_cpu_ms', digits=1)} | ≤ 1 ms: {verdict(ours_ok)} |",
        f"| of which Prefect's two task runs around the calls: (sweep − runner) / n (ms) "
        f"| {cell(runs, 'task_runs_ms', digits=1)} | {cell(runs, 'task_runs_cpu_ms', digits=1)} | |",
        f"| Prefect's two empty task runs per combination (ms) | {cell(runs, 'prefect_ms', digits=1)} "
        f"| {cell(runs, 'prefect_cpu_ms', digits=1)} | |",
        f"| ratio to the floor: orchestration / two empty task runs | {cell(runs, 'ratio')} "
        f"| {cell(runs, 'cpu_ratio')} | ≤ 1.2x, both: {verdict(ok)} |",
        "", "Each repetition runs the four in a rotating order. The target holds for both medians; the CPU ratio "
        "(this process's CPU seconds) is less moved by the emulator and the Prefect server, which share the "
        "same two cores. The bookkeeping row is the runner with its Prefect tasks replaced by their "
        "bodies: the journal, the manifest, the budget and the progress, with the same calls.",
        "", "What is ours and what is Prefect's. Ours is the bookkeeping row. The rest of the gap is "
        "Prefect's task engine: profiled (pyinstrument, cProfile), a sweep makes the same engine calls "
        "per task run as the empty flow (state changes, events, contexts, uuids), each of them slower "
        "when the task runs wrap real HTTP calls and share the process and the two cores with the "
        "emulator and the Prefect server. Two of its costs follow from how a task is declared: the "
        "engine binds, walks and records every parameter of every call (the row's six of `submit` and "
        "six of `wait` cost 0.7 ms of CPU a row; each now takes a label and one request, Prefect told "
        "not to walk it), and each task run's \"Finished in state Completed()\" log line costs about "
        "2.5 ms a row in the console and API log handlers (dropped for the rows' task runs; this run, as "
        "`wiro-sweep run` does, logs at WARNING, so both flows here log nothing per row). "
        "`tests/test_per_row_work.py` counts what a row costs in work "
        "that does not depend on the machine (requests to Wiro and to Prefect, task-run state events, "
        "journal writes, manifest rewrites) at two sizes, so per-row work that comes back fails CI.",
        "", "The regression between 31ffd66 and 9f2b0d7 (orchestration 8.8 -> 18.3 ms a row) was bisected "
        "with those counts and cProfile: the two ends made the same Prefect requests, events and task "
        "runs per row. The CPU that grew was ours: a poster (the video's first frame as a JPEG) decoded "
        "and encoded for every download while rows ran (2.5 ms a row; now made when the report is "
        "written, two at a time, as `ensure_posters` already did for older OUTs), the claim of each task "
        "(0.18 ms) and a scan of every row's task ids for each claim (0.06 ms a row at 1,000 rows, 0.7 "
        "at 10,000; now a lookup). On this shared machine the ratio moves by a factor of two or more "
        "between repetitions: read the medians.",
    ])  # fmt: skip


def waiting_section(runs: list[dict[str, float]], plan: Plan) -> str:
    p = plan.waiting
    polls_ok = statistics.median(r["poll_ratio"] for r in runs) <= 0.2
    lag_ok = statistics.median(r["sweep_lag_share_p95"] for r in runs) <= 0.1
    return "\n".join([
        "", f"## 3. Waiting: {p['rows']} tasks of {p['shortest']:g}–{p['longest']:g} model seconds "
        f"(emulator time x{p['scale']:g})",
        "", "| | sweep | fixed 3 s poller | target |", "| --- | --- | --- | --- |",
        f"| Task/Detail polls per task | {cell(runs, 'sweep_polls', digits=1)} | {cell(runs, 'fixed_polls', digits=1)} "
        f"| ≤ 1/5 of the poller: {cell(runs, 'poll_ratio')} {verdict(polls_ok)} |",
        f"| lag from a task's end to noticing it, p50 (model s) | {cell(runs, 'sweep_lag_p50')} "
        f"| {cell(runs, 'fixed_lag_p50')} | |",
        f"| lag p95 (model s) | {cell(runs, 'sweep_lag_p95')} | {cell(runs, 'fixed_lag_p95')} | |",
        f"| lag p95 as a share of the task's duration | {cell(runs, 'sweep_lag_share_p95', digits=3)} "
        f"| {cell(runs, 'fixed_lag_share_p95', digits=3)} | ≤ 0.10: {verdict(lag_ok)} |",
        "", "The sweep listens on Wiro's task socket and polls only to guard against a lost event; "
        "the fixed poller is what Wiro's docs start from (Task/Detail every 3 s). Lags are in model "
        "seconds: real seconds divided by the emulator's time scale.",
    ])  # fmt: skip


def scale_section(runs: list[dict[str, float]], plan: Plan) -> str:
    rows = [
        f"| {n:,} | {r['wall_s']:.1f} | {r['sweep_s']:.1f} | {r['per_row_ms']:.1f} | {r['rss_mib']:.0f} |"
        for n, r in zip(plan.scale_rows, runs, strict=True)
    ]
    peak = max(r["rss_mib"] for r in runs)
    return "\n".join([
        "", "## 4. Scale: one process, preview videos",
        "", "| combinations | process wall (s) | sweep (s) | per combination (ms) | peak RSS (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: |", *rows,
        "", f"Peak RSS target < 1024 MiB: {verdict(peak < 1024)} ({peak:.0f} MiB).",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
