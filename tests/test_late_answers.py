"""Run answers that come late, name another Run's task, or come from a server whose task times
disagree with its `Date` header: the bill stays within the budget, each row keeps its own task
(and so its own video), and no combination is paid twice.

Each test runs the real `sweep` flow on the Prefect test harness against the emulator over
loopback; the emulator's own records (what it billed, what parameters each task had) are the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flows.engine.rows import records
from flows.store.manifest import read_manifest
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.config import Faults

from .conftest import EmulatorFactory
from .test_faults import run_sweep, tasks_by_combination, write_grid

pytestmark = pytest.mark.usefixtures("prefect_api", "quick_scans")


def paid_in_no_manifest(emulator: EmulatorServer, rows: list[dict[str, Any]]) -> set[str]:
    """Tasks the emulator created that no manifest row names."""
    created = {t for ids in tasks_by_combination(emulator).values() for t in ids}
    return created - {str(r["task_id"]) for r in rows}


def assert_each_row_has_its_own_task(emulator: EmulatorServer, rows: list[dict[str, Any]]) -> None:
    """A row's task is one the emulator made from that row's prompt and seed, and its video is saved."""
    tasks = tasks_by_combination(emulator)
    succeeded = [row for row in rows if row["status"] == "succeeded"]
    assert succeeded, rows
    for row in succeeded:
        assert str(row["task_id"]) in tasks[(row["prompt"], str(row["seed"]))], ("another row's task", row)
        assert row["output_path"], row
        assert row["output_bytes"] > 0, row


def test_a_run_answered_late_is_found_and_stopped_within_the_budget(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """Every Run answer 12 s late, tasks billing per second all along and running 15x longer than
    quoted: the guard finds each late Run's task (Task/List) and stops it, so what the emulator
    billed stays within the budget. Before, a task could be stopped only once its answer came:
    $2.34 was billed on a $1 budget."""
    emulator = make_emulator(
        preview=True, cps=Decimal("0.05"), task_seconds=60.0, approximate_seconds=4.0,
        faults=Faults(run_latency=12.0),
    )  # fmt: skip
    wiro_env(emulator)
    grid = write_grid(tmp_path / "grid.csv", [(f"late {n}", "1") for n in range(8)])
    out = tmp_path / "out"
    state = run_sweep(grid, out, budget=1.0, max_concurrency=4, poll_interval=0.05)
    assert not state.is_crashed(), state.message
    billed = Decimal(emulator.account.stats()["billed"])
    assert billed <= Decimal(1), f"billed ${billed} on a $1 budget"
    rows = records(read_manifest(out))
    assert not paid_in_no_manifest(emulator, rows)
    assert all(len(ids) == 1 for ids in tasks_by_combination(emulator).values()), "a combination paid twice"
    counted = sum((Decimal(str(r["cost_usd"] or 0)) for r in rows), Decimal(0))
    assert counted >= billed, "the manifest counts what was billed (a kill Wiro does not bill, at its seconds)"


def test_an_answer_naming_an_earlier_runs_task_is_not_claimed(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """The first Run's answer is 2 s late; the second Run creates its own (billed) task, yet is
    answered at once with the first Run's task id. Each row keeps its own task: no video swapped,
    no combination paid twice, no paid task left out of the manifest. Before, the second row took
    the fox's task, the fox was paid again, and the bird's task was in no manifest."""
    emulator = make_emulator(preview=True, faults=Faults(run_script=("slow", "dup"), slow_seconds=2.0))
    wiro_env(emulator)
    grid = write_grid(tmp_path / "grid.csv", [("a red fox", "1"), ("a blue bird", "1")])
    out = tmp_path / "out"
    state = run_sweep(grid, out, max_concurrency=2, poll_interval=0.05)
    assert state.is_completed(), state.message
    assert emulator.account.stats()["counters"]["fault_dup"] == 1
    rows = records(read_manifest(out))
    assert {r["status"] for r in rows} == {"succeeded"}
    assert_each_row_has_its_own_task(emulator, rows)
    tasks = tasks_by_combination(emulator)
    assert all(len(ids) == 1 for ids in tasks.values()), f"a combination paid twice: {tasks}"
    assert not paid_in_no_manifest(emulator, rows), "a paid task in no manifest"


def test_task_times_behind_a_truthful_date_hide_no_lost_task(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """Every Run answer lost, task records' times 200 s behind the server's (truthful) `Date`:
    each lost answer's task is still found, so each row is paid once. Before, the scan trusted
    the `Date` clock with a 2-minute margin: every task was hidden and each row paid five times."""
    emulator = make_emulator(preview=True, faults=Faults(task_clock_offset=-200.0, lost_run_rate=1.0))
    wiro_env(emulator)
    combos = [(f"skewed {n}", str(seed)) for n in range(3) for seed in (1, 2)]
    grid = write_grid(tmp_path / "grid.csv", combos)
    out = tmp_path / "out"
    state = run_sweep(grid, out, max_concurrency=3, poll_interval=0.05)
    assert state.is_completed(), state.message
    rows = records(read_manifest(out))
    assert {r["status"] for r in rows} == {"succeeded"}
    tasks = tasks_by_combination(emulator)
    assert len(tasks) == len(combos)
    assert all(len(ids) == 1 for ids in tasks.values()), f"paid twice: {tasks}"
    assert_each_row_has_its_own_task(emulator, rows)
