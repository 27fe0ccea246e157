"""A task's bill as the sweep counts it: never less than what a per-second task's seconds cost,
whatever its final record says (issue: the budget and pay-once, round three, point 1)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from flows.engine.budget import least_bill
from flows.engine.rows import records
from flows.store.manifest import read_manifest
from wiro_tasks.emulator import EmulatorServer

from .conftest import EmulatorFactory
from .test_sweep import run_sweep


def test_a_per_second_task_that_ran_is_counted_at_least_at_its_rate_times_its_seconds() -> None:
    assert least_bill("succeeded", Decimal(0), Decimal("2.5"), Decimal("0.01")) == (
        Decimal("0.025"),
        "Wiro's record says $0; counted at $0.025000 (2.5 s at $0.01/s)",
    )
    cost, note = least_bill("cancelled", Decimal("0.001"), Decimal("1"), Decimal("0.01"))
    assert (cost, bool(note)) == (Decimal("0.01"), True)  # killed while running: billed for its seconds


def test_a_record_that_says_as_much_or_more_stands_and_failures_stay_free() -> None:
    assert least_bill("succeeded", Decimal("0.03"), Decimal("2.5"), Decimal("0.01")) == (Decimal("0.03"), "")
    assert least_bill("failed", Decimal(0), Decimal("9"), Decimal("0.01")) == (Decimal(0), "")
    assert least_bill("succeeded", Decimal("0.5"), None, Decimal("0.01")) == (Decimal("0.5"), "")  # a fixed price
    assert least_bill("cancelled", Decimal(0), Decimal(0), Decimal("0.01")) == (Decimal(0), "")  # stopped queued


@pytest.mark.both_modes
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("totalcost", ["0", "-"], ids=["zero", "missing"])
def test_final_records_without_a_bill_never_let_the_sweep_pass_its_budget(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path, totalcost: str
) -> None:
    """Every task bills $0.01/s for about a second, and every final record says it cost $0 (or
    leaves `totalcost` out): counted at $0, each hold was freed for a new row and ten rows ran on a
    $0.035 budget. The emulator's own bill is the truth."""
    emulator = make_emulator(queue_seconds=0.05, task_seconds=1.0, cps=Decimal("0.01"))
    wiro_env(emulator)
    grid = tmp_path / "grid.csv"
    prompts = [f"free lunch {n} [emulator:field totalcost={totalcost}]" for n in range(10)]
    pd.DataFrame({"prompt": prompts, "numFrames": 9}).to_csv(grid, index=False)
    run_sweep(grid, tmp_path / "out", budget=0.035, max_concurrency=2)
    billed = Decimal(emulator.account.stats()["billed"])
    rows = records(read_manifest(tmp_path / "out"))
    assert billed <= Decimal("0.035"), f"billed ${billed} on a $0.035 budget"
    ran = [r for r in rows if r["status"] == "succeeded"]
    assert ran, "the budget covers a few tasks"
    assert sum((r["cost_usd"] for r in rows), Decimal(0)) >= billed  # counted at no less than billed
    assert all("Wiro's record says $0" in r["error"] for r in ran), [r["error"] for r in ran]


def test_a_tier_price_below_rate_times_seconds_stands_where_the_method_is_unknown() -> None:
    """Without a quote the sweep cannot tell a tier's price from a per-second bill: a record that
    names a cost stands; only one that says nothing is counted at the rate."""
    assert least_bill("succeeded", Decimal("0.05"), Decimal(10), Decimal("0.01"), per_second=False) == (
        Decimal("0.05"),
        "",
    )
    cost, _ = least_bill("succeeded", Decimal(0), Decimal(10), Decimal("0.01"), per_second=False)
    assert cost == Decimal("0.10")
