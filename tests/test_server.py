"""A real Prefect server (PostgreSQL-backed), a process work pool, two workers, deployments.yaml,
and sharded sweeps against the emulator: the production setup, on loopback.

The shared account limit (2) is below each shard's `--max-concurrency` (3), so it is the shared
limit, not the shards' own, that keeps the emulator's tasks in flight at 2, and the test checks
that both shards' tasks did run at the same time (or the limit would have had nothing to do).

A child that frees a slot hands it straight to its own next row, so two shards of equal short
tasks take turns rather than overlap: each shard gets one long task, which holds a slot while
the other shard's rows get the second one. The server is told to let a waiting run retry for a
slot within about a second (Prefect's default wait is up to 30 s), which keeps the test short.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pytest

from flows.engine.rows import records
from flows.grid import load_grid
from flows.priority import autogroup_nice
from flows.store.manifest import read_manifest
from flows.store.shards import SHARDS_FILE, shard_of
from wiro_tasks.emulator import EmulatorServer

from .conftest import API_KEY, API_SECRET, EmulatorFactory
from .prefect_stack import PREFECT, Stack
from .test_secrets import Scanner

HAS_AUTOGROUP = Path("/proc/self/autogroup").is_file()  # Linux shares CPU by session first
SHARDS = 2
PER_SHARD = 3  # each shard's --max-concurrency
SHARED_LIMIT = 2  # the global concurrency limit `wiro-account`: below PER_SHARD, so it is what binds
WORKER_QUERY_SECONDS = "1"  # workers look for new runs this often: both shards start close together
LONG_TASK_SECONDS = 8  # one task per shard; the others take 1 s


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("prefect-home"),
        database_url,
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS="1",
    )
    try:
        running.serve()
        deployed = running.deploy(SHARED_LIMIT)
        assert deployed.count("successfully created") == 3, deployed
        yield running
    finally:
        running.stop()


@pytest.fixture
def workers(stack: Stack, make_emulator: EmulatorFactory) -> Iterator[Callable[..., EmulatorServer]]:
    """An emulator and two workers pointed at it; the workers stop with the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**emulator_settings: object) -> EmulatorServer:
        emulator: EmulatorServer = make_emulator(**emulator_settings)
        assert emulator.config.api_secret == API_SECRET, "signature mode: a secret to leak"
        env = {**stack.env, **emulator.env(), "PREFECT_WORKER_QUERY_SECONDS": WORKER_QUERY_SECONDS}
        for name in ("worker-a", "worker-b"):
            command = [PREFECT, "worker", "start", "--pool", "wiro-sweep", "--name", name, "--limit", "1"]
            started.append(stack.start(name, command, env))
        return emulator

    yield start
    # The test has checked what it checks: a worker's graceful exit (it signals its own process
    # worker and flushes its events) took 10-40 s under load, and is not what is tested here.
    stack.stop(started, grace=5)


def shard_prompts(tmp_path: Path, short: int, long: int) -> list[str]:
    """Prompts that put `short` 1-second rows and `long` long ones in each shard."""
    candidates = [f"shared scene {n}" for n in range(16 * short)]
    candidates += [f"shared long scene {n} [emulator:seconds={LONG_TASK_SECONDS}]" for n in range(16 * long)]
    path = tmp_path / "candidates.csv"
    pd.DataFrame({"prompt": candidates, "numFrames": 9}).to_csv(path, index=False)
    chosen: list[str] = []
    wanted = {(k, is_long): long if is_long else short for k in range(SHARDS) for is_long in (False, True)}
    for row in records(load_grid([str(path)])):
        kind = (shard_of(row["row_id"], SHARDS), "[emulator:" in row["prompt"])
        if wanted[kind]:
            wanted[kind] -= 1
            chosen.append(row["prompt"])
    assert not any(wanted.values()), wanted
    return chosen


def sweep_command(grid: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "flows", "run", str(grid), "--out", str(out), "--shards", str(SHARDS),
            "--max-concurrency", str(PER_SHARD), "--poll-interval", "0.2"]  # fmt: skip


def test_sharded_sweep_on_two_workers_shares_one_account_limit(
    stack: Stack, workers: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    assert SHARED_LIMIT < PER_SHARD, "else each shard's own limit would hold the emulator's count down"
    emulator = workers(queue_seconds=0.1, task_seconds=1.0)
    env = {**stack.env, **emulator.env()}
    prompts = shard_prompts(tmp_path, short=3, long=1)
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": prompts, "numFrames": 9}).to_csv(grid, index=False)
    out = tmp_path / "out"
    command = sweep_command(grid, out)

    # The parent is killed once mid-sweep; its children go on; the rerun picks them up.
    first = stack.start("parent-1", command, env)
    wait_until(lambda: emulator.account.stats()["tasks"] >= 3, stack, "parent-1")
    niced = [(19, 19 if HAS_AUTOGROUP else None)] * SHARDS  # batch work: the server and its UI first
    wait_until(lambda: shard_priorities(stack) == niced, stack, "worker-a", seconds=30)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    second = stack.start("parent-2", command, env)
    assert second.wait(timeout=240) == 0, stack.log("parent-2") + stack.log("worker-a") + stack.log("worker-b")

    manifest = records(read_manifest(out))
    assert sorted(r["prompt"] for r in manifest) == sorted(prompts), "one merged manifest, every row"
    assert {r["status"] for r in manifest} == {"succeeded"}
    assert all((out / r["output_path"]).stat().st_size == r["output_bytes"] for r in manifest)
    tasks = emulator.account.intervals()
    per_prompt = Counter(t["prompt"] for t in tasks)
    assert per_prompt == Counter(dict.fromkeys(prompts, 1)), "every row exactly once, across shards and restarts"
    assert emulator.account.stats()["max_in_flight"] == SHARED_LIMIT, "the shared account limit held, and bound"
    shard = {r["prompt"]: shard_of(r["row_id"], SHARDS) for r in manifest}
    by_shard = [[t for t in tasks if shard[t["prompt"]] == k] for k in range(SHARDS)]
    together = [(a["id"], b["id"]) for a in by_shard[0] for b in by_shard[1] if overlap(a, b)]
    assert together, f"the two shards never had tasks in flight at the same time: {tasks}"
    ran = {name: stack.log(name).count("submitting flow run") for name in ("worker-a", "worker-b")}
    assert all(n >= 1 for n in ran.values()), f"both workers took shards: {ran}"
    assert_no_credentials(stack, out)


def test_cancelling_a_sharded_sweep_stops_its_children_and_their_tasks(
    stack: Stack, workers: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    """Cancel in the UI (here its CLI twin) of a parent started from the command line."""
    emulator = workers(queue_seconds=0.1, task_seconds=120.0)
    env = {**stack.env, **emulator.env()}
    prompts = [f"cancelled scene {n}" for n in range(6)]
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": prompts, "numFrames": 9}).to_csv(grid, index=False)
    out = tmp_path / "out"
    parent = stack.start("parent-cancel", sweep_command(grid, out), env)
    wait_until(lambda: emulator.account.stats()["in_flight"] >= SHARED_LIMIT, stack, "parent-cancel")

    runs = json.loads((out / SHARDS_FILE).read_text())["runs"]
    child = stack.api("GET", f"/flow_runs/{runs['0']['flow_run_id']}")
    task_run = stack.api("GET", f"/task_runs/{child['parent_task_run_id']}")
    stack.run([PREFECT, "flow-run", "cancel", str(task_run["flow_run_id"])])
    code = parent.wait(timeout=150)
    log = stack.log("parent-cancel")
    workers_log = stack.log("worker-a") + stack.log("worker-b")
    assert code == 130, f"exit {code}: stopped, not 'rows failed'\n{log}{workers_log}"
    why = [(r["status"], r["error"]) for r in records(read_manifest(out))]
    assert "failed" not in log.split("sweep ━")[-1], f"the closing block claims no row failed: {why}\n{workers_log}"
    assert stack.state(str(task_run["flow_run_id"])) == "CANCELLED"

    runs = json.loads((out / SHARDS_FILE).read_text())["runs"]
    assert [runs[str(k)]["launch"] for k in range(SHARDS)] == [1] * SHARDS, "no cancelled child was started again"
    assert [stack.state(runs[str(k)]["flow_run_id"]) for k in range(SHARDS)] == ["CANCELLED"] * SHARDS
    # Not checked: that no task was created after the cancel. A child being killed gives its
    # account slots back at once while its tasks run on until they are killed, and a child not
    # killed yet may take those slots and submit (flows/engine/runner.py); such tasks are stopped too.
    stats = emulator.account.stats()
    assert stats["in_flight"] == 0, "every Wiro task of the sweep was stopped"
    time.sleep(3)
    assert emulator.account.stats()["tasks"] == stats["tasks"], "nothing was submitted once the parent ended"
    assert set(Counter(t["prompt"] for t in emulator.account.intervals()).values()) == {1}
    statuses = Counter(r["status"] for r in records(read_manifest(out)))
    assert statuses["cancelled"] == stats["tasks"], f"the merged manifest shows what was stopped: {statuses}"
    assert_no_credentials(stack, out)


def test_an_image_grid_sweeps_on_the_workers(
    stack: Stack, workers: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    """The deployments take image grids: the shards' workers read the start images (from a path they
    all see), upload each one once per shard, and run the image-to-video model from it."""
    from flows.store.journal import read_events

    from .images import landscape, portrait, write

    emulator = workers(queue_seconds=0.05, task_seconds=0.5)
    env = {**stack.env, **emulator.env()}
    (tmp_path / "starts").mkdir()
    write(tmp_path / "starts" / "wide.png", landscape(), "PNG")
    write(tmp_path / "starts" / "tall.jpg", portrait(), "JPEG")
    grid = tmp_path / "grid.csv"
    grid.write_text("prompt,numFrames\n" + "".join(f"image scene {n},9\n" for n in range(3)))
    out = tmp_path / "out"
    command = [*sweep_command(grid, out), "--axis", f"inputImage={tmp_path / 'starts'}"]
    parent = stack.start("parent-images", command, env)
    code = parent.wait(timeout=150)
    assert code == 0, stack.log("parent-images") + stack.log("worker-a") + stack.log("worker-b")

    manifest = read_manifest(out)
    assert len(manifest) == 6
    assert set(manifest["status"]) == {"succeeded"}
    assert set(manifest["model"]) == {"Wan-AI/Wan2.2-TI2V-5B-image-to-video"}
    assert manifest["inputImageUrl"].str.startswith(emulator.root_url).all()
    assert set(Counter(t["prompt"] for t in emulator.account.intervals()).values()) == {2}, "one task per row"
    journaled = 0
    for k in range(SHARDS):
        uploads = Counter(e["sha256"] for e in read_events(out / "shards" / str(k) / "journal.jsonl")
                          if e["event"] == "uploaded")  # fmt: skip
        assert set(uploads.values()) <= {1}, f"shard {k} uploads each of its images once: {uploads}"
        journaled += len(uploads)
    assert journaled >= 2, "both images were uploaded"
    assert emulator.account.stats()["counters"]["upload"] == journaled, "every upload is in a shard's journal"


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two of the emulator's tasks were in flight at the same time."""
    return bool(a["created"] < b["ended"] and b["created"] < a["ended"])


def assert_no_credentials(stack: Stack, out: Path) -> None:
    """The sharded OUT (journals, merged manifest, report, videos) and every log of the stack."""
    scanner = Scanner({"API secret": API_SECRET, "API key": API_KEY})
    assert scanner.tree(out) >= 5
    assert (out / "manifest.parquet") in out.iterdir()
    assert scanner.tree(stack.home) >= 3, "the server's, workers' and parents' logs"
    assert not scanner.found, f"credentials leaked: {sorted(set(scanner.found))}"


def shard_priorities(stack: Stack) -> list[tuple[int, int | None]]:
    """Each running shard's (a worker's flow-run process) nice value and its session's (autogroup)."""
    workers = {p.pid for p in stack.processes if "worker" in cast(list[str], p.args) and p.poll() is None}
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid not in workers or b"prefect.engine" not in (entry / "cmdline").read_bytes():
                continue
            group = autogroup_nice(entry / "autogroup") if HAS_AUTOGROUP else None
            found.append((os.getpriority(os.PRIO_PROCESS, int(entry.name)), group))
        except (OSError, ValueError, IndexError):  # not a process, or one that ended meanwhile
            continue
    return found


def wait_until(check: Callable[[], bool], stack: Stack, log: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, stack.log(log)
        time.sleep(0.05)


def test_the_nightly_schedule_is_on_the_server(stack: Stack) -> None:
    shown = stack.run([PREFECT, "deployment", "inspect", "wiro-sweep/nightly-regression"])
    assert "0 2 * * *" in shown
    assert "'budget': 5.0" in shown
    assert shutil.which(PREFECT)
