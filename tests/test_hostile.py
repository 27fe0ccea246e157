"""An odd or hostile server, and two sweeps at once: nothing paid twice, nothing paid lost, no OUT bricked.

Each test runs the real `sweep` flow on the Prefect test harness against the emulator over
loopback, with the emulator told to misbehave: answers that hold garbage (`[emulator:field ...]`
directives), Run answers lost (`lost`) or naming another Run's task (`dup`), and two OUTs that
submit the same combinations at the same moment.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.engine.rows import records
from flows.orchestrate.flow import sweep
from flows.store.journal import JOURNAL, read_events
from flows.store.manifest import FINAL_STATUSES, read_manifest
from wiro_tasks import TEXT_TO_VIDEO
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.config import Faults

from .conftest import EmulatorFactory
from .test_faults import tasks_by_combination
from .test_sweep import run_sweep

pytestmark = pytest.mark.usefixtures("prefect_api", "quick_scans")


def write_grid(path: Path, prompts: list[str], seeds: tuple[str, ...] = ("1",)) -> Path:
    rows = [(p, s) for p in prompts for s in seeds]
    pd.DataFrame({"prompt": [p for p, _ in rows], "seed": [s for _, s in rows], "numFrames": 9}).to_csv(
        path, index=False
    )
    return path


ODD = {
    "totalcost=NaN": "totalcost 'NaN'",
    "totalcost=Infinity": "totalcost 'Infinity'",
    "totalcost=1e10": "totalcost '1e10'",
    "createtime=nan": "createtime 'nan'",
    "createtime=inf": "createtime 'inf'",
    "createtime=1e30": "createtime '1e30'",
    "pexit=-": "no pexit",
    "elapsedseconds=NaN": "elapsedseconds 'NaN'",
}


def test_garbage_in_final_answers_never_bricks_the_out(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """Every odd value of the review (and some lost answers, whose scans page over the odd tasks):
    the sweep and its rerun finish, each odd row's record names the field and what it held, and
    every paid output is downloaded."""
    odd_prompts = [f"odd {n} [emulator:field {field}]" for n, field in enumerate(ODD)]
    plain = [f"plain {n}" for n in range(6)]
    emulator = make_emulator(preview=True, faults=Faults(run_script=("ok", "lost", "ok", "ok", "lost", "ok", "lost")))
    wiro_env(emulator)
    grid = write_grid(tmp_path / "grid.csv", [*odd_prompts, *plain])
    out = tmp_path / "out"

    for attempt in ("first", "rerun"):
        state = run_sweep(grid, out, max_concurrency=4, poll_interval=0.05)
        assert not state.is_crashed(), (attempt, state.message)
        manifest = {r["prompt"]: r for r in records(read_manifest(out))}
        assert {r["status"] for r in manifest.values()} <= set(FINAL_STATUSES), (attempt, manifest)
        for prompt, (field, shown) in zip(odd_prompts, ODD.items(), strict=True):
            row = manifest[prompt]
            assert row["status"] == "succeeded", (attempt, field, row)
            assert row["output_path"], ("the paid output was downloaded", field, row)
            assert (out / row["output_path"]).is_file()
            assert shown in row["error"], (field, row["error"])
        assert all(manifest[p]["status"] == "succeeded" for p in plain), attempt
    assert state.is_completed(), state.message
    tasks = tasks_by_combination(emulator)
    assert all(len(ids) == 1 for ids in tasks.values()), f"a row paid twice: {tasks}"
    assert len(tasks) == len(odd_prompts) + len(plain)
    adopted = Counter(e["event"] for e in read_events(out / JOURNAL))["adopted"]
    assert adopted == 3, "the lost answers' tasks were found among the odd ones"


def test_one_task_id_answered_for_two_runs_is_not_given_to_both_rows(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """A server that answers a Run with the id of the Run before: each row still gets its own task,
    and no task is recorded (and counted) for two rows."""
    emulator = make_emulator(preview=True, faults=Faults(run_script=("ok", "dup") * 4))
    wiro_env(emulator)
    grid = write_grid(tmp_path / "grid.csv", [f"dup {n}" for n in range(4)], seeds=("1", "2"))
    out = tmp_path / "out"
    state = run_sweep(grid, out, max_concurrency=1, poll_interval=0.05)
    assert state.is_completed(), state.message
    manifest = records(read_manifest(out))
    assert emulator.account.stats()["counters"]["fault_dup"] == 4
    ids = [r["task_id"] for r in manifest]
    assert len(set(ids)) == len(ids) == 8, "one task per row, each task in one row"
    tasks = tasks_by_combination(emulator)
    for row in manifest:
        assert tasks[(row["prompt"], row["seed"])] == [row["task_id"]], ("the row's own task", row)


def test_two_outs_that_lose_their_answers_for_one_combination_adopt_one_task_each(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """Two sweeps into two OUTs, the same grid, every Run answer lost: both tasks of each combination
    are found, and each OUT adopts its own, so no paid task is in no manifest."""
    emulator = make_emulator(preview=True, task_seconds=0.5, faults=Faults(lost_run_rate=1.0))
    wiro_env(emulator)
    grid = write_grid(tmp_path / "grid.csv", [f"twin {n}" for n in range(4)])
    outs = [tmp_path / "out-a", tmp_path / "out-b"]

    async def both() -> list[Any]:
        runs = [sweep(grid=[str(grid)], out=str(o), max_concurrency=4, poll_interval=0.05, return_state=True)
                for o in outs]  # fmt: skip
        return list(await asyncio.gather(*runs))

    states = asyncio.run(both())
    assert all(s.is_completed() for s in states), [s.message for s in states]
    a, b = ({r["row_id"]: r["task_id"] for r in records(read_manifest(o))} for o in outs)
    assert set(a) == set(b)
    assert not set(a.values()) & set(b.values()), "a task adopted by both OUTs"
    tasks = tasks_by_combination(emulator)
    assert all(len(ids) == 2 for ids in tasks.values()), tasks
    paid = {t for ids in tasks.values() for t in ids}
    assert set(a.values()) | set(b.values()) == paid, "every paid task is in a manifest"


def test_a_matching_task_nobody_claims_is_named_not_dropped(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another program on the account ran the same combination a moment before, and this sweep's
    Run answer was lost: the row adopts one of the two tasks, and the other is named (id and
    inputs) in the log and in the run's summary, not left unseen; no lost Run of the sweep
    accounts for it, so it is not kept as the sweep's stray."""
    from prefect.client.orchestration import get_client

    from wiro_tasks import WiroClient

    emulator = make_emulator(preview=True)
    wiro_env(emulator)
    grid = write_grid(tmp_path / "grid.csv", ["the same scene"], seeds=("4",))
    with WiroClient() as elsewhere:  # not a sweep: it claims nothing
        elsewhere.run({"prompt": "the same scene", "seed": "4", "numFrames": 9}, model=TEXT_TO_VIDEO)
        emulator.account.faults = Faults(run_script=("lost",))
    out = tmp_path / "out"
    state = run_sweep(grid, out, poll_interval=0.05)
    assert state.is_completed(), state.message
    tasks = tasks_by_combination(emulator)[("the same scene", "4")]
    assert len(tasks) == 2
    adopted = records(read_manifest(out))[0]["task_id"]
    (stray,) = set(tasks) - {adopted}
    logged = [r.getMessage() for r in caplog.records if "no sweep here claimed" in r.getMessage()]
    assert logged == [f"a paid task that no sweep here claimed: task {stray} (prompt='the same scene', "
                      "size='832*480', numFrames=9, seed='4')"]  # fmt: skip
    assert not [e for e in read_events(out / JOURNAL) if e["event"].startswith("stray")], "not ours: not kept"
    assert not list(out.glob("strays/*")), "another program's task is never fetched as ours"

    async def summary() -> str:
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
            artifacts = await client.read_artifacts()
            return "\n".join(str(a.data) for a in artifacts if a.flow_run_id == run.id)

    assert f"task {stray} (prompt='the same scene'" in asyncio.run(summary()), "named in the run's summary"


def test_an_unreadable_bill_is_counted_at_the_tasks_own_rate_not_the_advertised_one(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """Tool/Detail advertises $0.001/s, the task's own record says (and bills) $0.01/s, and its
    `totalcost` is NaN: the row is counted at the task's rate, never a tenth of it."""
    from decimal import Decimal

    emulator = make_emulator(queue_seconds=0.05, task_seconds=0.5, cps=Decimal("0.01"),
                             advertised_cps=Decimal("0.001"))  # fmt: skip
    wiro_env(emulator)
    grid = write_grid(tmp_path / "grid.csv", ["dear [emulator:field totalcost=NaN]"])
    run_sweep(grid, tmp_path / "out", poll_interval=0.05)
    [row] = records(read_manifest(tmp_path / "out"))
    assert row["status"] == "succeeded", row["error"]
    assert "counted as" in row["error"], row["error"]
    assert row["cost_usd"] >= Decimal(str(row["elapsed_seconds"])) * Decimal("0.01") * Decimal("0.99"), row
