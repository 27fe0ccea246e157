"""Faults and load: nothing is lost, nothing is paid twice, the manifest is readable at every instant.

Two tests against the emulator, sized for CI (each well under a minute on two cores):

- `test_fault_matrix_every_row_accounted_for_one_task_each`: the real `sweep` flow in this
  process against 10% 5xx, 5% 429 (with Retry-After), 5% dropped connections, 3% lost Run answers,
  10% failed tasks, task_error interims and hung tasks killed at the timeout; then a second sweep
  with `retry_failed=True`. A background thread reads `OUT/manifest.parquet` (pyarrow) and
  `OUT/manifest.csv` (pandas) over and over for the whole time.
- `test_random_sigkills_then_resume_lose_nothing_and_pay_once`: `python -m flows run ...` as a
  subprocess (with the lost-answer scans spread over a second instead of 20 s, see `tests.processes.FAST_SCANS`),
  killed with SIGKILL at random moments (some right after a Run request reached the emulator) at
  least five times in one sweep, resumed each time with the same command.
- `test_read_manifest_survives_a_concurrent_rewrite`: the product's own manifest reader against a
  writer rewriting the manifest as fast as it can.

The long soak: set `WIRO_SOAK=N` (a whole number, N >= 1) and both tests scale up, N times the
rows in the fault matrix and N times the rows and kills in the SIGKILL test (the random
moments stay reproducible: the kill schedule is drawn from a fixed seed, plus N):

    WIRO_SOAK=20 ./scripts/test.sh tests/test_faults.py

Without it they use the CI sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows.engine.rows import records
from flows.orchestrate.flow import sweep
from flows.store.journal import JOURNAL, read_events
from flows.store.manifest import FINAL_STATUSES, MANIFEST_CSV, MANIFEST_PARQUET, read_manifest
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.config import Faults
from wiro_tasks.emulator.records import FAILURE_REASONS
from wiro_tasks.emulator.state import EmulatedTask

from .conftest import EmulatorFactory, resize_disk
from .processes import FAST_SCANS, finish, start, wait_for


def soak_factor() -> int:
    """N from WIRO_SOAK (1 when unset): how many times the CI sizes to run."""
    raw = os.environ.get("WIRO_SOAK", "").strip()
    if not raw:
        return 1
    try:
        factor = int(raw)
    except ValueError:
        raise pytest.UsageError(f"WIRO_SOAK must be a whole number >= 1 (got {raw!r})") from None
    if factor < 1:
        raise pytest.UsageError(f"WIRO_SOAK must be a whole number >= 1 (got {raw!r})")
    return factor


SOAK = soak_factor()


# Helpers shared by both tests.


class ManifestReader(threading.Thread):
    """Reads both manifests over and over while a sweep runs; every read must parse whole.

    A manifest that exists must have exactly one row per combination (the expected row ids),
    whatever moment it is read at. Failures are collected, never raised in the thread. A round
    of both reads takes ~5 ms of CPU; a pause of 20 ms after each keeps this thread from taking
    most of a core (and the GIL from the sweep and emulator in this process) for the whole test,
    while still reading each manifest dozens of times a second: hammering one manifest as fast as
    possible is `test_read_manifest_survives_a_concurrent_rewrite`'s job.
    """

    PAUSE = 0.02

    def __init__(self, out: Path, row_ids: set[str]) -> None:
        super().__init__(name="manifest-reader", daemon=True)
        self.out = out
        self.row_ids = row_ids
        self.reads: Counter[str] = Counter()
        self.failures: list[str] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.check(MANIFEST_PARQUET, parquet_row_ids)
            self.check(MANIFEST_CSV, lambda p: pd.read_csv(p, dtype=str, keep_default_na=False)["row_id"].tolist())
            time.sleep(self.PAUSE)

    def check(self, name: str, read_ids: Callable[[Path], list[Any]]) -> None:
        path = self.out / name
        if not path.exists():
            return
        try:
            ids = read_ids(path)
        except Exception as exc:  # any exception is a torn or unreadable manifest
            self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            return
        self.reads[name] += 1
        if len(ids) != len(self.row_ids) or set(ids) != self.row_ids:
            self.failures.append(f"{name}: {len(ids)} rows, {len(set(ids) & self.row_ids)} of the expected ids")

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)

    def assert_readable_throughout(self, at_least: int) -> None:
        assert not self.failures, f"{len(self.failures)} bad reads, first ones: {self.failures[:5]}"
        for name in (MANIFEST_PARQUET, MANIFEST_CSV):
            assert self.reads[name] >= at_least, f"{name} read only {self.reads[name]} times: {dict(self.reads)}"


def parquet_row_ids(path: Path) -> list[Any]:
    """The row ids of a Parquet manifest, read through one open file (one version of it).

    `pq.read_table(path)` opens the path more than once (footer, then pages), so a rename
    between the two mixes two versions however atomic the writer is: see
    `test_read_manifest_survives_a_concurrent_rewrite`.
    """
    with path.open("rb") as handle:
        ids: list[Any] = pq.read_table(handle, columns=["row_id"]).column("row_id").to_pylist()
    return ids


def tasks_by_combination(emulator: EmulatorServer) -> dict[tuple[str, str], list[str]]:
    """Every Wiro task the emulator created, by (prompt, seed)."""
    found: dict[tuple[str, str], list[str]] = {}
    for task in emulator.account.intervals():
        found.setdefault((task["prompt"], task["seed"]), []).append(task["id"])
    return found


def assert_outputs_match_the_manifest(out: Path, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if row["status"] != "succeeded":
            continue
        video = out / row["output_path"]
        assert video.is_file(), row
        data = video.read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["output_sha256"], row["row_id"]
        assert len(data) == row["output_bytes"], row["row_id"]


def leftovers(out: Path) -> list[Path]:
    """Partial downloads and temporary manifests that a finished sweep must not leave."""
    return [p for p in out.rglob("*") if p.name.endswith((".part", ".tmp"))]


class ErrorAnswers:
    """Which tasks the emulator answered as `task_error` (Task/Detail, Task/List, Cancel, Kill)."""

    def __init__(self, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.task_ids: set[int] = set()
        account = emulator.account
        describe = account.describe

        def recording(task: EmulatedTask, now: float, file_url: str) -> dict[str, Any]:
            described = describe(task, now, file_url)
            if described["status"] == "task_error":
                self.task_ids.add(task.id)
            return described

        monkeypatch.setattr(account, "describe", recording)


def assert_task_error_interims_were_survived(
    emulator: EmulatorServer, answered: set[int], first: dict[str, dict[str, Any]]
) -> None:
    """Every row whose one task went through a `task_error` interim ended as that task ended:
    succeeded (or failed with the task's own reason, or timed out if it hung), never failed for
    the interim and never given a second task. Some interims were answered to the sweep."""
    tasks = emulator.account.tasks
    assert answered <= {i for i, t in tasks.items() if t.error_interim}, "only tasks with an interim show task_error"
    by_task = {int(r["task_id"]): r for r in first.values()}
    interim = {i: t for i, t in tasks.items() if t.error_interim and i in by_task}
    wobbly = {i for i, t in interim.items() if "[emulator:error]" in str(t.parameters["prompt"])}
    assert len(wobbly) == 3, "every [emulator:error] row's task had an interim"
    assert len(interim) > len(wobbly), "error_interim_rate=0.2 gave some scene rows one too"
    seen = answered & set(interim)
    assert seen, "the emulator never answered the first sweep task_error: the interims went unseen"
    for task_id, task in interim.items():
        row = by_task[task_id]
        assert row["task_ids"].split() == [str(task_id)], ("one task for a row through task_error", row)
        assert "task_error" not in row["error"], ("an interim is not a failure", row)
        if task.hang:
            assert row["status"] == "timed_out", row
        elif task.fail:
            assert row["status"] == "failed", row
            assert row["error"] in FAILURE_REASONS, ("the task's own failure, not the interim", row)
        else:
            assert row["status"] == "succeeded", ("recovered from task_error, so succeeded", row)
            assert row["output_sha256"], row


# 1. The fault matrix, in process.


def write_grid(path: Path, rows: list[tuple[str, str]]) -> Path:
    pd.DataFrame({"prompt": [p for p, _ in rows], "seed": [s for _, s in rows], "numFrames": 9}).to_csv(
        path, index=False
    )
    return path


def run_sweep(grid: Path, out: Path, **params: Any) -> Any:
    return asyncio.run(sweep(grid=[str(grid)], out=str(out), return_state=True, **params))  # type: ignore[arg-type]


@pytest.mark.both_modes
@pytest.mark.usefixtures("prefect_api")
def test_fault_matrix_every_row_accounted_for_one_task_each(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.engine.driver
    import flows.engine.matching
    from flows.grid import load_grid

    # The emulator's Task/List is consistent at once: the scans that prove a lost Run answer
    # created no task need not be spread over 20 s here (the rule, three scans, is unchanged).
    monkeypatch.setattr(flows.engine.matching, "FIND_RETRY_DELAYS", (0.2, 0.4))
    # About a fifth of Run requests are refused here (5xx, 429, drops), so a row refused five tries
    # in a row, and failed unpaid with "no task after 5 tries", came up in about one sweep in 60:
    # right, yet not what this test counts. Twelve tries make it about one in 10^7. The cap itself:
    # `test_sweep.py::test_a_row_refused_every_try_fails_unpaid_and_a_rerun_sweeps_it`.
    monkeypatch.setattr(flows.engine.driver, "MAX_SUBMIT_ATTEMPTS", 12)
    faults = Faults(
        error_5xx_rate=0.10,
        rate_429=0.05,
        retry_after=0.1,
        drop_rate=0.05,
        lost_run_rate=0.03,
        # The rates are dice; these make sure every kind of fault meets a Run request at least once.
        run_script=("lost", "503", "drop", "429", "lost", "500"),
    )
    emulator = make_emulator(
        queue_seconds=0.3,  # task_error interims show for the last 70% of the queue time
        task_seconds=0.2,
        preview=True,
        fail_rate=0.10,
        error_interim_rate=0.2,
        seed=5,
        faults=faults,
    )
    wiro_env(emulator)
    in_error = ErrorAnswers(emulator, monkeypatch)
    rows = [(f"scene {n}", str(seed)) for n in range(16 * SOAK) for seed in (1, 2, 3, 4)]
    rows += [(f"hung {n} [emulator:hang]", "7") for n in range(3)]
    rows += [(f"wobbly {n} [emulator:error]", "7") for n in range(3)]
    grid = write_grid(tmp_path / "grid.csv", rows)
    out = tmp_path / "out"
    expected = load_grid([grid])
    row_ids = set(expected["row_id"])
    assert len(row_ids) == len(rows)
    params: dict[str, Any] = {"max_concurrency": 8, "poll_interval": 0.05, "timeout": 3.0, "error_grace": 3.0}

    reader = ManifestReader(out, row_ids)
    reader.start()
    try:
        first_state = run_sweep(grid, out, **params)
        first = {r["row_id"]: r for r in records(read_manifest(out))}
        after_first = tasks_by_combination(emulator)
        retried_state = run_sweep(grid, out, retry_failed=True, **params)
    finally:
        reader.stop()

    # After the first sweep: every row final, exactly one Wiro task per row.
    assert first_state.is_failed(), "hung rows time out, so not every row succeeded"
    assert set(first) == row_ids
    statuses = Counter(r["status"] for r in first.values())
    assert set(statuses) <= set(FINAL_STATUSES), statuses
    doubled = {k: v for k, v in after_first.items() if len(v) != 1}
    assert not doubled, f"more than one Wiro task for a row: {doubled}"
    untasked = [(r["prompt"], r["seed"], r["status"], r["error"]) for r in first.values()
                if (r["prompt"], str(r["seed"])) not in after_first]  # fmt: skip
    assert len(after_first) == len(rows), f"every row got its one task; none for {untasked}"
    hung = [r for r in first.values() if "[emulator:hang]" in r["prompt"]]
    assert {r["status"] for r in hung} == {"timed_out"}
    assert all(r["cost_usd"] > 0 for r in hung), "a killed running task is billed"
    assert statuses["failed"] >= 1, f"10% failed tasks, yet none failed: {statuses}"
    # task_error interims happened, the sweep was told about them, and they were not final.
    assert_task_error_interims_were_survived(emulator, in_error.task_ids, first)
    retried = {k for k, r in first.items() if r["status"] in ("failed", "timed_out")}

    # After the retry: the failed and timed-out rows have exactly two tasks, the rest still one.
    assert retried_state.is_failed(), "the hung rows hang again"
    final = records(read_manifest(out))
    assert len(final) == len(rows)
    assert {r["row_id"] for r in final} == row_ids
    assert {r["status"] for r in final} <= set(FINAL_STATUSES)
    tasks = tasks_by_combination(emulator)
    with_two = set()
    for row in final:
        ids = tasks[(row["prompt"], row["seed"])]
        assert sorted(row["task_ids"].split()) == sorted(ids), ("the manifest knows every task of its row", row)
        if row["row_id"] in retried:
            assert len(ids) == 2, ("a retried row has its first task and one more", row)
            with_two.add(row["row_id"])
        else:
            assert len(ids) == 1, ("a row not retried kept its one task", row)
            assert row["task_id"] == first[row["row_id"]]["task_id"]
    assert len(with_two) == len(retried) > len(hung)
    assert sum(len(ids) for ids in tasks.values()) == len(rows) + len(retried)

    # Money and files.
    stats = emulator.account.stats()
    assert set(stats["statuses"]) <= {"task_postprocess_end", "task_cancel"}, stats["statuses"]
    hung_tasks = [t for t in emulator.account.intervals() if "[emulator:hang]" in t["prompt"]]
    assert len(hung_tasks) == 2 * len(hung)
    assert {t["status"] for t in hung_tasks} == {"task_cancel"}, "every hung task was stopped at the timeout"
    # A killed running task: Wiro bills it or not (`bill_kills`; its documents say not), and the sweep
    # counts it at its rate x its seconds either way, as a budget must.
    account = emulator.account
    killed = [t for t in account.tasks.values() if "[emulator:hang]" in str(t.parameters["prompt"])]
    unbilled = [account.elapsed(t, account.clock()) * emulator.config.cps for t in killed]
    assert sum((r["cost_usd"] for r in final), Decimal(0)) == Decimal(stats["billed"]) + (
        Decimal(0) if emulator.config.bill_kills else sum(unbilled, Decimal(0))
    )
    assert_outputs_match_the_manifest(out, final)
    assert stats["max_in_flight"] <= params["max_concurrency"]
    assert not leftovers(out)

    # The faults really happened.
    counters = stats["counters"]
    for kind in ("fault_503", "fault_500", "fault_429", "fault_drop", "fault_lost"):
        assert counters.get(kind, 0) > 0, (kind, counters)
    events = Counter(e["event"] for e in read_events(out / JOURNAL))
    assert events["adopted"] >= 2, "the tasks behind lost Run answers were found and adopted"
    assert events["unknown"] >= events["adopted"]

    reader.assert_readable_throughout(at_least=50)


def test_read_manifest_survives_a_concurrent_rewrite(tmp_path: Path) -> None:
    """`read_manifest` (what `wiro-sweep report OUT` and the CLI summary use) while a sweep
    rewrites the manifest: every read must give one whole version, as the manifest promises."""
    from flows.grid import load_grid
    from flows.store.manifest import build_manifest, write_manifest
    from flows.store.rowstate import RowState

    grid_path = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": [f"p{n}" for n in range(70)], "numFrames": 9}).to_csv(grid_path, index=False)
    grid = load_grid([grid_path])
    ids = list(grid["row_id"])
    out = tmp_path / "out"
    out.mkdir()
    write_manifest(out, build_manifest(grid, {}))
    done = threading.Event()
    writes = [0]
    crashed: list[BaseException] = []

    def rewrite() -> None:  # as a sweep does while rows finish, only faster
        try:
            while not done.is_set():
                n = writes[0] = writes[0] + 1
                states = {
                    k: RowState(k, phase="finished", status="failed", error="x" * (n % 40), task_id=str(n))
                    for k in ids[: n % len(ids)]
                }
                write_manifest(out, build_manifest(grid, states))
        except BaseException as exc:  # shown as itself, not as too few rewrites
            crashed.append(exc)

    writer = threading.Thread(target=rewrite, name="manifest-writer")
    writer.start()
    failures: list[str] = []
    reads = 0
    wanted = 150 * SOAK  # reads and rewrites each: counted, not timed, so a slow machine only takes longer
    deadline = time.monotonic() + 120.0 * SOAK
    try:
        while (reads + len(failures) < wanted or writes[0] < wanted) and not crashed:
            assert time.monotonic() < deadline, f"only {reads} reads and {writes[0]} rewrites in {120 * SOAK} s"
            try:
                frame = read_manifest(out)
            except Exception as exc:  # a torn read is the failure looked for
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            reads += 1
            assert len(frame) == len(ids)
    finally:
        done.set()
        writer.join()
    assert not crashed, f"the writer failed: {crashed[0]!r}"
    assert not failures, f"{len(failures)} of {reads + len(failures)} reads failed, e.g. {sorted(set(failures))[:3]}"


@pytest.mark.both_modes
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("offset", [-3600.0, -200.0, 3600.0])
def test_a_server_clock_an_hour_off_never_makes_a_row_pay_twice(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    offset: float,
) -> None:
    """Every Run answer lost, on a server whose clock is off: each row's task is found and adopted.
    Judged on the local clock, a server 200 s behind hid every task and each row was paid five times."""
    import flows.engine.matching

    monkeypatch.setattr(flows.engine.matching, "FIND_RETRY_DELAYS", (0.2, 0.4))
    emulator = make_emulator(preview=True, faults=Faults(clock_offset=offset, lost_run_rate=1.0))
    wiro_env(emulator)
    rows = [(f"skewed {n}", str(seed)) for n in range(4 * SOAK) for seed in (1, 2)]
    grid = write_grid(tmp_path / "grid.csv", rows)
    out = tmp_path / "out"
    state = run_sweep(grid, out, max_concurrency=4, poll_interval=0.05)
    assert state.is_completed(), state.message
    manifest = records(read_manifest(out))
    assert {r["status"] for r in manifest} == {"succeeded"}
    tasks = tasks_by_combination(emulator)
    assert len(tasks) == len(rows)
    assert all(len(ids) == 1 for ids in tasks.values()), f"paid twice on a clock {offset:+.0f} s off: {tasks}"
    events = Counter(e["event"] for e in read_events(out / JOURNAL))
    assert events["adopted"] == len(rows), "every row's task came from a lost answer's scan"
    assert emulator.account.stats()["counters"]["fault_lost"] == len(rows)
    assert sum((r["cost_usd"] for r in manifest), Decimal(0)) == Decimal(emulator.account.stats()["billed"])


def price_scenario(seed: int) -> dict[str, Any]:
    """A price, run times varying 10x, a prior 30x off the real price, and a budget a few tasks
    deep, drawn from `seed`: per second at cps (published or only in the tasks' own records), or
    fixed by a dynamicprice tier for some rows."""
    dice = random.Random(seed)
    cps = Decimal(dice.choice(["0.0007", "0.004", "0.03", "0.2"]))
    short = dice.uniform(0.15, 0.3)
    typical = cps * Decimal(str(short * 5.5))
    tiers: tuple[dict[str, Any], ...] = ()
    if dice.random() < 0.5:  # the 9-frame rows have a fixed price far from what their seconds cost
        price = float(round(typical * dice.choice([3, 8]), 6))
        tiers = ({"inputs": {"numFrames": "9"}, "price": price, "priceMethod": "cpr"},)
    return {
        "emulator": {
            "cps": cps,
            "task_seconds": short,
            "task_seconds_max": short * 10,
            "dynamic_price": tiers,
            "price_as_text": dice.random() < 0.5,
            "seed": seed,
        },
        # Room for at least one task of typical length and the time a Kill takes (else nothing may start).
        "budget": float(
            round(cps * Decimal(str(6.6 * short + 2.25 + dice.uniform(0.5, 6))) + typical * dice.randint(0, 3), 6)
        ),
        "estimate_usd": float(round(typical * dice.choice([Decimal(30), 1 / Decimal(30)]), 6)),
        "max_concurrency": dice.choice([3, 6]),
    }


@pytest.mark.both_modes
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("seed", [11 + n for n in range(3 * SOAK)])
def test_the_bill_never_passes_the_budget_whatever_the_price(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path, seed: int
) -> None:
    """Prices, run times and budgets drawn at random: what the emulator billed (kills of running
    tasks included) never passes the budget, and every paid task is in the manifest. Before, a
    first task 30x the prior billed $3.00 on a $1 budget, and bills varying past the 20% margin
    $1.08."""
    scenario = price_scenario(seed)
    emulator = make_emulator(queue_seconds=0.05, preview=True, **scenario["emulator"])
    wiro_env(emulator)
    frames = [9, 13]
    grid = tmp_path / "grid.csv"
    short = scenario["emulator"]["task_seconds"]
    # The first tasks are the shortest: what they bill says little of what the next ones will.
    prompts = [f"priced {n}" + (f" [emulator:seconds={short:.3f}]" if n < 2 else "") for n in range(16)]
    pd.DataFrame({"prompt": prompts, "numFrames": [frames[n % 2] for n in range(16)],
                  "seed": "1"}).to_csv(grid, index=False)  # fmt: skip
    out = tmp_path / "out"
    budget = Decimal(str(scenario["budget"]))
    state = run_sweep(grid, out, budget=scenario["budget"], estimate_usd=scenario["estimate_usd"],
                      max_concurrency=scenario["max_concurrency"], poll_interval=0.05)  # fmt: skip
    stats = emulator.account.stats()
    billed = Decimal(stats["billed"])
    assert billed <= budget, f"billed ${billed} on a ${budget} budget: {scenario}"
    assert set(stats["statuses"]) <= {"task_postprocess_end", "task_cancel"}, "no task left running"
    manifest = records(read_manifest(out))
    counted = sum((r["cost_usd"] for r in manifest), Decimal(0))
    if emulator.config.bill_kills:
        assert counted == billed, "every paid task is in the manifest"
    else:  # Wiro bills successes alone (pricing.md); the sweep counts a stopped task all the same
        assert sum((r["cost_usd"] for r in manifest if r["status"] == "succeeded"), Decimal(0)) == billed
        assert counted >= billed
    counts = Counter(r["status"] for r in manifest)
    assert counts["succeeded"] >= 1, (counts, scenario)
    assert set(counts) <= {"succeeded", "skipped"}, counts
    if counts["skipped"]:
        assert state.is_failed()
        skipped = [r for r in manifest if r["status"] == "skipped"]
        assert all(r["error"].startswith("budget:") for r in skipped), skipped


# 2. SIGKILL at random moments, through the command line.


def requests_seen(emulator: EmulatorServer) -> int:
    counters: dict[str, int] = emulator.account.stats()["counters"]
    return sum(counters.get(k, 0) for k in ("run", "detail", "list", "cancel", "kill"))


def runs_seen(emulator: EmulatorServer) -> int:
    runs: int = emulator.account.stats()["counters"].get("run", 0)
    return runs


def grown(count: Callable[[], int], start: int) -> Callable[[], bool]:
    """Whether `count()` has grown past `start`."""
    return lambda: count() > start


def test_random_sigkills_then_resume_lose_nothing_and_pay_once(
    make_emulator: EmulatorFactory,
    subprocess_env: Callable[[EmulatorServer], dict[str, str]],
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    from flows.grid import load_grid

    kills_wanted = 5 * SOAK
    emulator = make_emulator(
        queue_seconds=0.1,
        task_seconds=0.5,
        task_seconds_max=1.5,
        preview=True,
        seed=11,
        faults=Faults(
            lost_run_rate=0.10, drop_rate=0.02, rate_429=0.02, retry_after=0.1, run_script=("ok", "lost", "ok", "drop")
        ),
    )
    prompts = pd.DataFrame({"prompt": [f"take {n}" for n in range(12 * SOAK)], "numFrames": 9})
    grid = tmp_path / "grid.csv"
    prompts.to_csv(grid, index=False)
    out, log = tmp_path / "out", tmp_path / "log.txt"
    args = [str(grid), "--out", str(out), "--axis", "seed=1,2,3", "--max-concurrency", "4", "--poll-interval", "0.1"]
    row_ids = set(load_grid([grid], {"seed": ["1", "2", "3"]})["row_id"])
    env = subprocess_env(emulator)
    dice = random.Random(20240601 + SOAK)
    kills: list[str] = []

    reader = ManifestReader(out, row_ids)
    reader.start()
    try:
        while len(kills) < kills_wanted:
            process = start(args, env, log, FAST_SCANS)
            processes.append(process)
            before = requests_seen(emulator)
            runs_before = runs_seen(emulator)
            # Time starts when this run talks to Wiro: Prefect's start-up is not the interesting part.
            assert wait_for(grown(lambda: requests_seen(emulator), before), process, 60), log.read_text()[-3000:]
            if dice.random() < 0.35:
                moment = "right after a Run request arrived"
                wait_for(grown(lambda: runs_seen(emulator), runs_before), process, 10)
            else:
                delay = dice.uniform(0.3, 3.0)
                moment = f"{delay:.2f} s in"
                time.sleep(delay)
            if process.poll() is not None:
                raise AssertionError(f"the sweep finished before kill {len(kills) + 1}: make the grid bigger")
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            kills.append(moment)
            events = read_events(out / JOURNAL)  # readable after every kill
            lines = (out / JOURNAL).read_bytes().splitlines() if (out / JOURNAL).exists() else []
            assert len(events) == len(lines), f"a journal line did not parse after a kill {moment}"
        last = start(args, env, log, FAST_SCANS)
        processes.append(last)
        code = finish(last, log, 240)
    finally:
        reader.stop()

    assert len(kills) >= 5, kills
    assert code == 0, log.read_text()[-3000:]
    manifest = records(read_manifest(out))
    assert {r["row_id"] for r in manifest} == row_ids, "no row lost"
    assert len(manifest) == len(row_ids)
    assert {r["status"] for r in manifest} == {"succeeded"}, Counter(r["status"] for r in manifest)
    tasks = tasks_by_combination(emulator)
    doubled = {k: v for k, v in tasks.items() if len(v) != 1}
    assert not doubled, f"paid twice after kills {kills}: {doubled}"
    assert len(tasks) == len(row_ids)
    for row in manifest:
        assert row["task_ids"].split() == tasks[(row["prompt"], row["seed"])]
    stats = emulator.account.stats()
    assert sum((r["cost_usd"] for r in manifest), Decimal(0)) == Decimal(stats["billed"])
    assert_outputs_match_the_manifest(out, manifest)
    assert not leftovers(out), leftovers(out)
    events = read_events(out / JOURNAL)
    assert len(events) == len((out / JOURNAL).read_bytes().splitlines())
    assert Counter(e["event"] for e in events)["intent"] >= len(row_ids)
    assert stats["counters"].get("fault_lost", 0) > 0, "some Run answers were lost on the way"
    reader.assert_readable_throughout(at_least=20)


# 3. A disk that fills up in the middle of a sweep.


def test_a_full_disk_stops_submitting_then_a_rerun_pays_once(
    make_emulator: EmulatorFactory,
    subprocess_env: Callable[[EmulatorServer], dict[str, str]],
    processes: list[subprocess.Popen[bytes]],
    small_disk: Callable[[int], Path],
    tmp_path: Path,
) -> None:
    """OUT on a real 2 MiB tmpfs that another process fills up while the sweep runs: every Run
    request had its whole intent on disk, the sweep says why it stopped in one line, and once
    space is freed the same command finishes every row with exactly one Wiro task each."""
    from flows.grid import load_grid

    emulator = make_emulator(queue_seconds=0.05, task_seconds=0.2, task_seconds_max=0.6, preview=True, seed=3)
    rows = 40 * SOAK
    # Long prompts make intent lines of ~1.5 KB: a full disk tears them mid-line unless the writer refuses to.
    prompts = pd.DataFrame({"prompt": [f"take {n} " + "slow pan over a misty lake " * 55 for n in range(rows)],
                            "numFrames": 9})  # fmt: skip
    grid = tmp_path / "grid.csv"
    prompts.to_csv(grid, index=False)
    loaded = load_grid([grid])
    row_ids = set(loaded["row_id"])
    row_of = dict(zip(loaded["prompt"], loaded["row_id"], strict=True))
    out, log = small_disk(2 * 1024 * 1024) / "out", tmp_path / "log.txt"
    args = [str(grid), "--out", str(out), "--max-concurrency", "4", "--poll-interval", "0.05"]
    env = subprocess_env(emulator)

    first = start(args, env, log, FAST_SCANS)
    processes.append(first)

    def downloaded() -> int:
        events = read_events(out / JOURNAL) if (out / JOURNAL).exists() else []
        return sum(e["event"] == "downloaded" for e in events)

    assert wait_for(lambda: downloaded() >= 6, first, 120, every=0.05), log.read_text()[-3000:]  # reads the journal
    filler = out.parent / "filler"  # another program takes every byte that is left
    with contextlib.suppress(OSError), filler.open("wb") as handle:
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()
    code = finish(first, log, 180)
    output = log.read_text()

    assert code == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output[-3000:]
    assert str(out) in errors[0], errors
    assert "No space left on device" in errors[0], errors
    runs = runs_seen(emulator)
    assert runs < rows, "the sweep stopped submitting when its journal could not be written"
    tasks = tasks_by_combination(emulator)
    assert all(len(ids) == 1 for ids in tasks.values()), tasks
    lines = (out / JOURNAL).read_bytes().splitlines()
    assert len(read_events(out / JOURNAL)) == len(lines), "no torn line: every line of the journal parses"
    intents = {e["row_id"] for e in read_events(out / JOURNAL) if e["event"] == "intent"}
    assert {row_of[prompt] for prompt, _seed in tasks} <= intents, "every Run request had its intent on disk first"
    if (out / MANIFEST_PARQUET).exists():
        assert set(parquet_row_ids(out / MANIFEST_PARQUET)) == row_ids, "the manifest is whole, never torn"

    filler.unlink()
    resize_disk(out.parent, rows * 64 * 1024 + 4 * 1024 * 1024)  # and room for every row this time
    rerun = start(args, env, log, FAST_SCANS)
    processes.append(rerun)
    assert finish(rerun, log, 240) == 0, log.read_text()[-3000:]
    manifest = records(read_manifest(out))
    assert {r["row_id"] for r in manifest} == row_ids
    assert {r["status"] for r in manifest} == {"succeeded"}, Counter(r["status"] for r in manifest)
    tasks = tasks_by_combination(emulator)
    assert len(tasks) == rows, "every row has its task"
    assert all(len(ids) == 1 for ids in tasks.values()), "one task per row, no more"
    stats = emulator.account.stats()
    assert sum((r["cost_usd"] for r in manifest), Decimal(0)) == Decimal(stats["billed"])
    assert_outputs_match_the_manifest(out, manifest)
    assert not leftovers(out), leftovers(out)
