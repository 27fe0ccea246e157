"""A task in a status no document names (issue: the budget and pay-once, round three, point 6):
`--timeout` bounds its row's time, and a task stopped for it is recorded with what it cost.

Before, a `task_weird` task that a Kill did not end was polled for 300 s (`STOP_GRACE`), which
then raised a retryable error: Prefect ran `wait` three more times, each killing and waiting again
(1,279 s for `--timeout 20`), and the row ended with no cost at all."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

import wiro_tasks.waiting
from flows.store.journal import JOURNAL, read_events
from wiro_tasks.emulator import EmulatorServer

from .conftest import EmulatorFactory
from .test_sweep import manifest_rows, run_sweep

CPS = Decimal("0.01")
TIMEOUT = 2.0


def sweep_one_weird_task(tmp_path: Path, **params: object) -> dict[str, object]:
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": ["a weird one"], "numFrames": 9}).to_csv(grid, index=False)
    run_sweep(grid, tmp_path / "out", timeout=TIMEOUT, **params)
    return manifest_rows(tmp_path / "out")["a weird one"]


@pytest.mark.usefixtures("prefect_api")
def test_a_task_a_kill_does_not_end_is_recorded_timed_out_with_its_seconds_and_killed_once(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The task stays `task_weird` whatever it is told. Its wait kills it once at `--timeout`, gives
    the Kill `STOP_GRACE` (1 s here) to land, then records the row `timed_out`, counted at its rate
    x the seconds since its Run request: what it may have cost, never $0."""
    monkeypatch.setattr(wiro_tasks.waiting, "STOP_GRACE", 1.0)
    emulator = make_emulator(queue_seconds=0.05, cps=CPS, unknown_status="task_weird", ignore_kills=True)
    wiro_env(emulator)
    row = sweep_one_weird_task(tmp_path)
    assert row["status"] == "timed_out", row
    assert "still task_weird" in str(row["error"]), row["error"]
    assert "after its Kill" in str(row["error"]), row["error"]
    assert isinstance(row["cost_usd"], Decimal)
    assert row["cost_usd"] >= CPS * Decimal(str(TIMEOUT)), "counted at its rate x its seconds, never $0"
    counters = emulator.account.stats()["counters"]
    assert counters["kill"] == 1, f"the wait was run again and killed again: {counters}"
    events = Counter(e["event"] for e in read_events(tmp_path / "out" / JOURNAL))
    assert events["finished"] == 1, events


@pytest.mark.usefixtures("prefect_api")
def test_a_task_in_an_unknown_status_is_killed_at_its_timeout_and_recorded_with_its_bill(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """A status no document names is not final: at `--timeout` the task is killed, and its row
    records what the emulator billed for it."""
    emulator = make_emulator(queue_seconds=0.05, cps=CPS, unknown_status="task_weird")
    wiro_env(emulator)
    row = sweep_one_weird_task(tmp_path)
    billed = Decimal(emulator.account.stats()["billed"])
    assert row["status"] == "timed_out", row
    assert billed > 0
    assert row["cost_usd"] == billed, (row, billed)
