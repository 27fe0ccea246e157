"""The id floor that lets a scan see a lost task whose time is off (issue 18, point 7) comes from
one Task/List when the run starts. Adversarial pass: when that one Task/List fails (a short
outage of 503s), the first intents had no floor, so with task times 200 s behind a truthful
`Date` each first lost answer's task was hidden and its row paid again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flows.engine.rows import records
from flows.store.manifest import read_manifest
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.config import Faults

from .conftest import EmulatorFactory
from .test_faults import run_sweep, tasks_by_combination, write_grid

pytestmark = pytest.mark.usefixtures("prefect_api", "quick_scans")


def test_a_failed_first_task_list_leaves_no_intent_without_a_floor(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    # Tool/Detail answers; the run's first Task/List (and its four retries) get 503s.
    faults = Faults(script=("ok", "503", "503", "503", "503", "503"), task_clock_offset=-200.0, lost_run_rate=1.0)
    emulator = make_emulator(preview=True, faults=faults)
    wiro_env(emulator)
    combos = [("a floor after a blip", "1"), ("a floor after a blip", "2")]
    out = tmp_path / "out"
    state = run_sweep(write_grid(tmp_path / "grid.csv", combos), out, max_concurrency=2, poll_interval=0.05)
    assert state.is_completed(), state.message
    assert emulator.account.stats()["counters"]["fault_503"] == 5, "the first Task/List failed"
    assert {r["status"] for r in records(read_manifest(out))} == {"succeeded"}
    tasks = tasks_by_combination(emulator)
    assert all(len(ids) == 1 for ids in tasks.values()), f"paid twice: {tasks}"
