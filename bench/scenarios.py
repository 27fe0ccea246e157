"""The four benchmark scenarios. Each runs the sweep flow and, in the same run, its baseline.

Baselines make the very same Wiro calls with no orchestration: `submit.fn` and `wait_for_end` are
the undecorated bodies of the flow's own Prefect tasks, driven by plain asyncio under a
semaphore (no journal, no manifest, no Prefect). The Prefect floor is a flow of two empty tasks
per combination. Every result is a dict of plain numbers.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.orchestrate.flow import sweep
from flows.store.journal import read_events
from wiro_tasks import TEXT_TO_VIDEO, Credentials
from wiro_tasks.prefect_tasks import RunRequest, fetch, find_task, submit, wait_for_end, wiro_session

from .harness import Emulator, emulator, in_flight_profile, pointed_at


def write_grid(directory: Path, rows: int, tag: str) -> Path:
    path = directory / f"{tag}.csv"
    pd.DataFrame({"prompt": [f"bench {tag} {n}" for n in range(rows)], "numFrames": 9}).to_csv(path, index=False)
    return path


def inputs_of(grid: Path) -> list[dict[str, Any]]:
    from flows.engine.rows import records
    from flows.grid import load_grid

    return records(load_grid([grid]))


CPU: dict[str, float] = {}  # process CPU seconds of the last timed run of each kind


def timed(kind: str, main: Coroutine[Any, Any, Any]) -> tuple[float, Any]:
    """Wall seconds of `asyncio.run(main)`, and its result; its process CPU goes to CPU[kind]."""
    cpu = time.process_time()
    started = time.perf_counter()
    result = asyncio.run(main)
    elapsed = time.perf_counter() - started
    CPU[kind] = time.process_time() - cpu
    return elapsed, result


def timed_sweep(grid: Path, out: Path, **params: Any) -> float:
    """Seconds for one sweep flow run, which must end with every row succeeded."""
    elapsed, state = timed("sweep", sweep(grid=[str(grid)], out=str(out), return_state=True, **params))  # type: ignore[arg-type]
    if not state.is_completed():
        raise RuntimeError(f"benchmark sweep did not complete: {state.message}")
    return elapsed


def timed_plain(grid: Path, out: Path, concurrency: int, poll_interval: float, poll_cap: float = 30.0) -> float:
    """Seconds for the same calls as the sweep, with plain asyncio under a semaphore."""
    rows = inputs_of(grid)
    (out / "videos").mkdir(parents=True, exist_ok=True)

    async def everything() -> None:
        slots = asyncio.Semaphore(concurrency)
        deadline = datetime.now(UTC) + timedelta(hours=1)

        async def one(row: dict[str, Any]) -> None:
            async with slots:
                given = {k: row[k] for k in ("prompt", "negativePrompt", "size", "numFrames", "scale", "steps",
                                             "fps", "seed")}  # fmt: skip
                submitted = await submit.fn(row["row_id"], RunRequest(TEXT_TO_VIDEO, given))
                if submitted.kind != "submitted":
                    raise RuntimeError(submitted.message)
                ended = await wait_for_end(submitted.task_id, deadline, poll_interval, poll_cap)
            dest = str(out / "videos" / f"{row['row_id']}.mp4")  # like the sweep: after the slot is free
            await fetch(ended.task_id, ended.output_url, ended.output_bytes, dest)

        async with wiro_session(Credentials.resolve()):
            await asyncio.gather(*(one(r) for r in rows))

    return timed("plain", everything())[0]


@task(cache_policy=NO_CACHE, persist_result=False)
async def empty(n: int) -> int:
    return n


@flow(name="two-empty-tasks", persist_result=False)
async def two_empty_tasks(rows: int, concurrency: int) -> None:
    """Prefect's floor for a sweep: two task runs per combination, nothing inside them."""
    slots = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with slots:
            await empty(n)
            await empty(n)

    await asyncio.gather(*(one(n) for n in range(rows)))


def timed_empty(rows: int, concurrency: int) -> float:
    return timed("empty", two_empty_tasks(rows, concurrency))[0]


def throughput(work: Path, rows: int, limit: int, task_seconds: float) -> dict[str, float]:
    """Makespan of the sweep against the plain baseline, at the account's concurrency limit."""
    options = ["--concurrency-limit", str(limit), "--task-seconds", str(task_seconds), "--queue-seconds", "0",
               "--preview"]  # fmt: skip
    params = {"max_concurrency": limit, "poll_interval": 0.5}
    grid = write_grid(work, rows, "throughput")
    with emulator(*options) as emu, pointed_at(emu.env):
        swept = timed_sweep(grid, work / "sweep", **params)
        profile = in_flight_profile(emu.tasks(), limit)
    with emulator(*options) as emu, pointed_at(emu.env):
        plain = timed_plain(grid, work / "plain", limit, 0.5)
        plain_profile = {f"plain_{k}": v for k, v in in_flight_profile(emu.tasks(), limit).items()}
    ideal = rows / limit * task_seconds
    return {"sweep_s": swept, "plain_s": plain, "ratio": swept / plain, "ideal_s": ideal, **profile, **plain_profile}


def without_prefect_tasks() -> Any:
    """The sweep's runner with no task runs: its rows' steps bare (as past `row_task_runs_max`) and
    no chunk task runs either. What the sweep's own bookkeeping (journal, manifest, budget,
    progress) costs, with no task runs around the calls."""
    from contextlib import ExitStack

    stack = ExitStack()
    stack.enter_context(patch("flows.engine.chunks.rows_chunk", no_chunk_task_run))
    stack.enter_context(patch("flows.engine.matching.find_task", find_task.fn))
    return stack


async def no_chunk_task_run(first: int, last: int, total: int, ended: Any, return_state: bool = True) -> None:
    """A chunk's task run, without the task run: it waits for its rows as the task does."""
    await ended


def timed_runner(grid: Path, out: Path, concurrency: int, poll_interval: float) -> float:
    """Seconds for the sweep's runner alone (no flow, no task runs) over the same rows."""
    from flows.engine.runner import SweepRunner
    from flows.engine.settings import Settings
    from flows.grid import load_grid
    from flows.store.journal import Journal

    async def everything() -> None:
        journal = Journal(out)
        try:
            settings = Settings(max_concurrency=concurrency, poll_interval=poll_interval, row_task_runs_max=0)
            async with wiro_session(Credentials.resolve()):
                await SweepRunner(load_grid([str(grid)]), out, journal, settings).run()
        finally:
            journal.close()

    with without_prefect_tasks():
        return timed("runner", everything())[0]


_overhead_runs = [0]


def overhead(work: Path, rows: int, concurrency: int) -> dict[str, float]:
    """Orchestration time per combination against Prefect's two empty task runs.

    Four runs over the same rows, in an order that rotates from one repetition to the next so
    that no kind always runs first or last on a machine whose speed drifts: the sweep flow, the
    plain calls, the sweep's runner without Prefect's task runs, and two empty task runs."""
    options = ["--concurrency-limit", "100000", "--task-seconds", "0", "--queue-seconds", "0", "--preview"]
    grid = write_grid(work, rows, "overhead")
    wall: dict[str, float] = {}

    def run_sweep() -> None:
        with emulator(*options) as emu, pointed_at(emu.env):
            wall["sweep"] = timed_sweep(grid, work / "sweep", max_concurrency=concurrency, poll_interval=0.01)

    def run_plain() -> None:
        with emulator(*options) as emu, pointed_at(emu.env):
            wall["plain"] = timed_plain(grid, work / "plain", concurrency, 0.01)

    def run_runner() -> None:
        with emulator(*options) as emu, pointed_at(emu.env):
            wall["runner"] = timed_runner(grid, work / "runner", concurrency, 0.01)

    def run_empty() -> None:
        wall["empty"] = timed_empty(rows, concurrency)

    kinds = [run_sweep, run_plain, run_runner, run_empty]
    turn = _overhead_runs[0] % len(kinds)
    _overhead_runs[0] += 1
    for run in kinds[turn:] + kinds[:turn]:
        run()
    ours = (wall["sweep"] - wall["plain"]) / rows
    floor = wall["empty"] / rows
    ours_cpu = (CPU["sweep"] - CPU["plain"]) / rows
    floor_cpu = CPU["empty"] / rows
    return {
        "sweep_s": wall["sweep"], "plain_s": wall["plain"], "runner_s": wall["runner"], "two_empty_s": wall["empty"],
        "ours_ms": 1000 * ours, "prefect_ms": 1000 * floor, "ratio": ours / floor,
        "bookkeeping_ms": 1000 * (wall["runner"] - wall["plain"]) / rows,
        "bookkeeping_cpu_ms": 1000 * (CPU["runner"] - CPU["plain"]) / rows,
        "task_runs_ms": 1000 * (wall["sweep"] - wall["runner"]) / rows,
        "task_runs_cpu_ms": 1000 * (CPU["sweep"] - CPU["runner"]) / rows,
        "ours_cpu_ms": 1000 * ours_cpu, "prefect_cpu_ms": 1000 * floor_cpu, "cpu_ratio": ours_cpu / floor_cpu,
    }  # fmt: skip


def waiting(work: Path, rows: int, scale: float, shortest: float, longest: float) -> dict[str, float]:
    """Polls per task and the lag from a task's end to the sweep noticing it, in model seconds,
    against a plain poller every 3 model seconds."""
    options = ["--concurrency-limit", "100000", "--task-seconds", str(shortest), "--task-seconds-max", str(longest),
               "--queue-seconds", "0", "--time-scale", str(scale), "--preview"]  # fmt: skip
    grid = write_grid(work, rows, "waiting")
    result: dict[str, float] = {}
    with emulator(*options) as emu, pointed_at(emu.env):
        timed_sweep(grid, work / "sweep", max_concurrency=rows, poll_interval=3 * scale, poll_cap=30 * scale)
        noticed = _noticed(work / "sweep" / "journal.jsonl", grid)
        result.update(_lags("sweep", emu, noticed, scale, rows))
    with emulator(*options) as emu, pointed_at(emu.env):
        noticed = asyncio.run(_fixed_poller(grid, 3 * scale))
        result.update(_lags("fixed", emu, noticed, scale, rows))
    result["poll_ratio"] = result["sweep_polls"] / result["fixed_polls"]
    return result


def _noticed(journal: Path, grid: Path) -> dict[str, float]:
    prompts = {r["row_id"]: r["prompt"] for r in inputs_of(grid)}
    return {
        prompts[e["row_id"]]: datetime.fromisoformat(e["at"]).timestamp()
        for e in read_events(journal)
        if e["event"] == "finished"
    }


def _lags(name: str, emu: Emulator, noticed: dict[str, float], scale: float, rows: int) -> dict[str, float]:
    tasks = emu.tasks()
    relative = sorted((noticed[t["prompt"]] - t["ended_wall"]) / max(1e-9, t["ended"] - t["created"]) for t in tasks)
    lags = sorted((noticed[t["prompt"]] - t["ended_wall"]) / scale for t in tasks)
    return {
        f"{name}_polls": emu.stats()["counters"].get("detail", 0) / rows,
        f"{name}_lag_p50": statistics.median(lags),
        f"{name}_lag_p95": lags[int(0.95 * (len(lags) - 1))],
        f"{name}_lag_share_p95": relative[int(0.95 * (len(relative) - 1))],
    }


async def _fixed_poller(grid: Path, every: float) -> dict[str, float]:
    """The plain client every waiting guide starts from: poll every `every` seconds until final."""
    noticed: dict[str, float] = {}

    async def one(row: dict[str, Any]) -> None:
        given = {k: row[k] for k in ("prompt", "numFrames")}
        submitted = await client.run(given)
        while True:
            await asyncio.sleep(every)
            current = await client.detail(submitted.task_id)
            if current.is_terminal:
                noticed[row["prompt"]] = time.time()
                return

    async with wiro_session(Credentials.resolve()) as session:
        client = session.client()
        await asyncio.gather(*(one(r) for r in inputs_of(grid)))
    return noticed


def scale(work: Path, rows: int) -> dict[str, float]:
    """One sweep of `rows` preview videos in a process of its own: wall time and peak RSS."""
    options = ["--concurrency-limit", "100000", "--task-seconds", "0.2", "--queue-seconds", "0", "--preview"]
    grid = write_grid(work, rows, f"scale-{rows}")
    with emulator(*options) as emu:
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-m", "bench.child", str(grid), str(work / f"scale-{rows}")],
            env={**os.environ, **emu.env},
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
        tasks = emu.stats()["tasks"]
    measured: dict[str, float] = {**json.loads(child.stdout.strip().splitlines()[-1]), "wall_s": wall}
    if tasks != rows:
        raise RuntimeError(f"{rows} rows made {tasks} tasks")
    return {**measured, "per_row_ms": 1000 * measured["wall_s"] / rows}


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="wiro-bench-"))
