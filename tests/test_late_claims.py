"""Claims made while a Run answer is late (adversarial pass on issue 18): two sweeps on one account
with the same grid, into different OUTs, at the same moment, while every Run answer is late. The
emulator's own records are the truth: each OUT pays once per combination and every paid task is
in a manifest.
"""

from __future__ import annotations

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

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(autouse=True)
def _quick_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.engine.matching

    monkeypatch.setattr(flows.engine.matching, "FIND_RETRY_DELAYS", (0.2, 0.4))


def test_a_task_found_for_a_late_answer_is_not_kept_from_the_sweep_that_paid_for_it(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    subprocess_env: Callable[[EmulatorServer], dict[str, str]],
    tmp_path: Path,
) -> None:
    """Sweep B (no budget) sends its Run first, sweep A (a budget) the same combination just after;
    A's answer is 5 s late, B's 20 s. A's look for its late Run's task finds B's task first (the
    older one) and claims it; then A's own answer comes and A keeps its own task. B's answer names
    its task, which A's claim must not keep from it: before, B found every matching task claimed,
    proved "no task" and paid again (three tasks for two OUTs, B's first task in no manifest)."""
    faults = Faults(run_latency=5.0, run_script=("slow",), slow_seconds=15.0)  # B's Run is the slow one
    emulator = make_emulator(preview=True, faults=faults)
    grid = write_grid(tmp_path / "grid.csv", [("one fox, two sweeps", "1")])
    log = tmp_path / "b.log"
    b = start([str(grid), "--out", str(tmp_path / "b"), "--poll-interval", "0.1"], subprocess_env(emulator), log,
              FAST_SCANS)  # fmt: skip
    try:
        assert wait_for(lambda: len(emulator.account.intervals()) == 1, b, 120, every=0.05), log.read_text()[-3000:]
        wiro_env(emulator)
        state = run_sweep(grid, tmp_path / "a", budget=1.0, poll_interval=0.1)
        assert state.is_completed(), state.message
        code = finish(b, log, 180)
    finally:
        if b.poll() is None:
            b.kill()
            b.wait()
    assert code == 0, log.read_text()[-3000:]
    tasks = tasks_by_combination(emulator)[("one fox, two sweeps", "1")]
    named = {str(r["task_id"]) for out in ("a", "b") for r in records(read_manifest(tmp_path / out))}
    assert len(tasks) == 2, f"one task per OUT, not {tasks} (manifests name {named})"
    assert set(tasks) <= named, f"a paid task in no manifest: {set(tasks) - named}"
    assert Decimal(emulator.account.stats()["billed"]) > 0
