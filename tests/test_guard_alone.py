"""Where the budget guard alone stands between the bill and the cap (issue: the budget and
pay-once, round three): per-second tasks that run far longer than Tool/Detail quotes, so admission
lets them start and only stopping them in time keeps the bill within the budget; and a sweep
killed with its tasks running, whose resumed run must stop at once what the budget no longer
covers. The emulator's own bill is the truth."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from flows.engine.guard import BudgetGuard
from flows.engine.rows import records
from flows.store.manifest import read_manifest
from wiro_tasks.emulator import EmulatorServer

from .conftest import EmulatorFactory
from .processes import finish, start, wait_for
from .test_sweep import run_sweep

CPS = Decimal("0.01")
QUOTED_SECONDS = 1.0  # what Tool/Detail's `approximatelycost` says a task takes
TASK_SECONDS = 20.0  # what each task takes: 20x the quote
BUDGET = Decimal("0.10")  # three tasks of the quoted length fit; three of the real length cost $0.60


def long_tasks(make_emulator: EmulatorFactory, **settings: object) -> EmulatorServer:
    return make_emulator(queue_seconds=0.05, cps=CPS, task_seconds=TASK_SECONDS, approximate_seconds=QUOTED_SECONDS,
                         **settings)  # fmt: skip


def write_rows(path: Path, count: int) -> Path:
    pd.DataFrame({"prompt": [f"long take {n}" for n in range(count)], "numFrames": 9}).to_csv(path, index=False)
    return path


async def no_guard(self: BudgetGuard) -> None:
    """The guard replaced by a no-op: nothing is ever stopped for the budget."""


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("guard", ["on", "no-op"])
def test_tasks_far_longer_than_quoted_are_held_to_the_budget_by_the_guard_alone(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    guard: str,
) -> None:
    """Three tasks quoted at 1 s each fit the $0.10 budget, so admission starts them; each runs 20
    s at $0.01/s. The guard stops them in time. Replaced by a no-op, the same sweep is billed past
    the cap: this scenario holds on the guard alone."""
    if guard == "no-op":
        monkeypatch.setattr(BudgetGuard, "watch", no_guard)
    emulator = long_tasks(make_emulator)
    wiro_env(emulator)
    out = tmp_path / "out"
    run_sweep(write_rows(tmp_path / "grid.csv", 6), out, budget=float(BUDGET), max_concurrency=3, timeout=600)
    stats = emulator.account.stats()
    billed = Decimal(stats["billed"])
    assert stats["counters"]["run"] >= 3, "admission let the tasks start: only the guard can hold them"
    print(f"guard {guard}: ${billed} billed on a ${BUDGET} budget, {stats['counters']['run']} tasks")
    if guard == "no-op":
        assert billed > BUDGET, f"without the guard the bill stays within the budget (${billed}): not a guard test"
        return
    assert billed <= BUDGET, f"billed ${billed} on a ${BUDGET} budget"
    rows = records(read_manifest(out))
    assert sum((r["cost_usd"] for r in rows), Decimal(0)) == billed, "every stopped task is counted as billed"
    assert {r["status"] for r in rows} == {"skipped"}, rows
    assert all(r["error"].startswith("budget:") for r in rows), [r["error"] for r in rows]


RESUME_TASK_SECONDS = 120.0  # three such tasks at $0.01/s would cost $3.60
# Down briefly: the cap is reached ~38 s after the tasks start, room for the resumed process to start.
RESUME_BUDGETS = {"briefly": Decimal("1.20"), "past the cap": Decimal("0.45")}


def runs(emulator: EmulatorServer) -> int:
    count: int = emulator.account.stats()["counters"].get("run", 0)
    return count


def running(emulator: EmulatorServer) -> Decimal:
    """What the tasks still running have run up so far (billed when they end)."""
    return Decimal(emulator.account.stats()["running_cost"])


@pytest.mark.parametrize("down", ["briefly", "past the cap"])
def test_a_resumed_sweep_stops_at_once_what_the_budget_no_longer_covers(
    make_emulator: EmulatorFactory,
    subprocess_env: Callable[[EmulatorServer], dict[str, str]],
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    down: str,
) -> None:
    """A sweep is SIGKILLed as its three 120 s tasks start, and resumed. Down briefly, the resumed
    guard counts them from their intents and stops them before the bill passes the budget. Down
    until they have run up more than the budget (unguarded: the guarantee's own condition), the
    resumed run stops every one of them at once and submits nothing more."""
    budget = RESUME_BUDGETS[down]
    emulator = make_emulator(
        queue_seconds=0.05, cps=CPS, task_seconds=RESUME_TASK_SECONDS, approximate_seconds=QUOTED_SECONDS
    )
    out, log = tmp_path / "out", tmp_path / "log.txt"
    grid = write_rows(tmp_path / "grid.csv", 3)
    args = [str(grid), "--out", str(out), "--budget", str(budget), "--max-concurrency", "3",
            "--poll-interval", "0.1", "--timeout", "600"]  # fmt: skip
    env = subprocess_env(emulator)
    first = start(args, env, log)
    processes.append(first)
    assert wait_for(lambda: runs(emulator) == 3, first, 120, every=0.05), log.read_text()[-3000:]
    time.sleep(0.5)  # their answers journaled
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    if down == "past the cap":
        deadline = time.monotonic() + 120
        while running(emulator) <= budget:
            assert time.monotonic() < deadline, "the tasks stopped billing on their own"
            time.sleep(0.2)
    at_resume = running(emulator)
    resumed = start(args, env, log)
    processes.append(resumed)
    code = finish(resumed, log, 240)
    stats = emulator.account.stats()
    billed = Decimal(stats["billed"])
    assert code == 1, log.read_text()[-3000:]  # rows skipped by the budget
    assert stats["counters"]["run"] == 3, "nothing more was submitted"
    assert stats["statuses"] == {"task_cancel": 3}, f"each task was stopped: {stats['statuses']}"
    rows = records(read_manifest(out))
    assert all(r["status"] == "skipped" and r["error"].startswith("budget:") for r in rows), rows
    assert sum((r["cost_usd"] for r in rows), Decimal(0)) == billed, "each is counted at its bill"
    if down == "briefly":
        assert billed <= budget, f"billed ${billed} on a ${budget} budget (${at_resume} at resume)"
    print(f"down {down}: ${at_resume} run up at resume, ${billed} billed in the end, budget ${budget}")
