"""Claims made while a Run answer is late (adversarial pass on issue 18): two sweeps on one account
with the same grid, into different OUTs, at the same moment, while every Run answer is late. The
emulator's own records are the truth: each OUT pays once per combination and every paid task is
in a manifest.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from flows.engine.rows import records
from flows.store.manifest import read_manifest
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.config import Faults

from .conftest import EmulatorFactory
from .processes import FAST_SCANS, finish, start, wait_for
from .test_faults import run_sweep, tasks_by_combination, write_grid

pytestmark = pytest.mark.usefixtures("prefect_api", "quick_scans")


def start_b(emulator: EmulatorServer, env: dict[str, str], grid: Path, tmp_path: Path, poll: str,
            processes: list[subprocess.Popen[bytes]]) -> tuple[subprocess.Popen[bytes], Path]:  # fmt: skip
    """Sweep B into OUT b as a process of its own, once its Run has made its task; and its log."""
    log = tmp_path / "b.log"
    b = start([str(grid), "--out", str(tmp_path / "b"), "--poll-interval", poll], env, log, FAST_SCANS)
    processes.append(b)
    assert wait_for(lambda: len(emulator.account.intervals()) == 1, b, 120, every=0.05), log.read_text()[-3000:]
    return b, log


def test_a_task_found_for_a_late_answer_is_not_kept_from_the_sweep_that_paid_for_it(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    subprocess_env: Callable[[EmulatorServer], dict[str, str]],
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """Sweep B (no budget) sends its Run first, sweep A (a budget) the same combination just after;
    A's answer is 5 s late, B's 20 s. A's look for its late Run's task finds B's task first (the
    older one) and claims it; then A's own answer comes and A keeps its own task. B's answer names
    its task, which A's claim must not keep from it: before, B found every matching task claimed,
    proved "no task" and paid again (three tasks for two OUTs, B's first task in no manifest)."""
    faults = Faults(run_latency=5.0, run_script=("slow",), slow_seconds=15.0)  # B's Run is the slow one
    emulator = make_emulator(preview=True, faults=faults)
    grid = write_grid(tmp_path / "grid.csv", [("one fox, two sweeps", "1")])
    b, log = start_b(emulator, subprocess_env(emulator), grid, tmp_path, "0.1", processes)
    wiro_env(emulator)
    state = run_sweep(grid, tmp_path / "a", budget=1.0, poll_interval=0.1)
    assert state.is_completed(), state.message
    assert finish(b, log, 180) == 0, log.read_text()[-3000:]
    tasks = tasks_by_combination(emulator)[("one fox, two sweeps", "1")]
    named = {str(r["task_id"]) for out in ("a", "b") for r in records(read_manifest(tmp_path / out))}
    assert len(tasks) == 2, f"one task per OUT, not {tasks} (manifests name {named})"
    assert set(tasks) <= named, f"a paid task in no manifest: {set(tasks) - named}"
    assert Decimal(emulator.account.stats()["billed"]) > 0


def test_a_late_answers_task_stays_stoppable_when_the_task_stopped_for_it_was_another(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    subprocess_env: Callable[[EmulatorServer], dict[str, str]],
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """As above, A's look for its late task finds B's (older) task with the same inputs; A's budget
    then has the guard stop that task, before A's answer (12 s late) names A's own. A's own task,
    60 s at $0.01/s, must then be stopped: before, its row counted as stopped already and it ran
    to its end, $0.60 billed on a $0.07 budget. (Until its answer came, A's task could not be
    told from B's: it billed $0.12 in all, past the budget; see docs/budget.md's conditions.)"""
    faults = Faults(run_latency=12.0, run_script=("slow",), slow_seconds=14.0)  # B's Run is the slow one
    emulator = make_emulator(preview=True, cps=Decimal("0.01"), task_seconds=60.0, approximate_seconds=1.0,
                             faults=faults)  # fmt: skip
    grid = write_grid(tmp_path / "grid.csv", [("one fox, two sweeps", "1")])
    start_b(emulator, subprocess_env(emulator), grid, tmp_path, "0.5", processes)  # left running: killed at the end
    wiro_env(emulator)
    run_sweep(grid, tmp_path / "a", budget=0.07, poll_interval=0.1)
    a_rows = records(read_manifest(tmp_path / "a"))
    a_tasks = {str(r["task_id"]) for r in a_rows}
    account = emulator.account
    with account.lock:
        now = account.clock()
        billed_a = sum((account.cost(t, now) for t in account.tasks.values() if str(t.id) in a_tasks), Decimal(0))
    print(f"A: ${billed_a} billed on a $0.07 budget")
    [row] = a_rows
    assert row["status"] == "skipped", row
    assert row["error"].startswith("budget:"), row["error"]
    assert billed_a < Decimal("0.30"), f"A's own task ran on: ${billed_a} billed on a $0.07 budget"
