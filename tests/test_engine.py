"""The engine's pieces on fakes, in milliseconds: no emulator, no Prefect server. The Wiro API is
an `httpx.MockTransport`; the journal is a real one in a temporary OUT."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from flows.engine.guard import BudgetGuard
from flows.engine.ledger import Halt, Ledger
from flows.engine.matching import TaskMatcher
from flows.engine.rows import records
from flows.engine.settings import Settings
from flows.grid import load_grid
from flows.store.claims import Claims
from flows.store.journal import Journal
from wiro_tasks import AsyncWiroClient, Quote, RetryPolicy
from wiro_tasks.prefect_tasks import wiro_session
from wiro_tasks.waiting import WaitOutcome

Handler = Callable[[httpx.Request], httpx.Response]


def task(task_id: str, status: str) -> dict[str, Any]:
    return {"id": task_id, "status": status, "cps": "0.01", "totalcost": "0", "elapsedseconds": "0"}


def answer(*tasks: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"result": True, "errors": [], "tasklist": list(tasks)})


def refusal(message: str) -> httpx.Response:
    return httpx.Response(200, json={"result": False, "errors": [{"code": 1, "message": message}]})


def grid(directory: Path) -> pd.DataFrame:
    """Three rows of a real grid, their ids renamed r0..r2 for the tests to name them."""
    path = directory / "grid.csv"
    pd.DataFrame({"prompt": ["p0", "p1", "p2"], "numFrames": 81}).to_csv(path, index=False)
    frame = load_grid([path])
    frame["row_id"] = [f"r{n}" for n in range(len(frame))]
    return frame


def ledger_in(out: Path) -> Ledger:
    frame = grid(out)
    return Ledger(frame, list(frame["row_id"]), out, Journal(out), Halt())


def guard_with(ledger: Ledger, budget: str | None = "1") -> BudgetGuard:
    settings = Settings(budget=Decimal(budget) if budget else None)
    return BudgetGuard(ledger, records(grid(ledger.out)), settings, rates={})


def run_with(handler: Handler, body: Callable[[], Any]) -> list[str]:
    """Run `body()` in a Wiro session on a mock API; the endpoints it called, in order."""
    calls: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path.removeprefix("/v1"))
        return handler(request)

    async def main() -> None:
        client = AsyncWiroClient("key", None, base_url="https://wiro.test/v1", transport=httpx.MockTransport(record),
                                 retry=RetryPolicy(max_retries=0, backoff=0.0))  # fmt: skip
        async with wiro_session(client=client):
            await body()

    asyncio.run(main())
    return calls


def test_the_guard_sends_the_kill_first(tmp_path: Path) -> None:
    """Every second until a Kill lands is billed, and the guard counts a Kill's time from its
    decision: no Task/Detail (nor a Cancel) goes before it."""
    guard = guard_with(ledger_in(tmp_path))
    calls = run_with(lambda r: answer(task("7", "task_cancel")), lambda: guard.stop("r0", "7"))
    assert calls == ["/Task/Kill", "/Task/Detail"]  # the stop, then the read that confirms it


def test_a_queued_task_is_cancelled_when_the_kill_is_refused(tmp_path: Path) -> None:
    guard = guard_with(ledger_in(tmp_path))

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Task/Kill"):
            return refusal("task is not running")
        return answer(task("7", "task_cancel"))

    assert run_with(api, lambda: guard.stop("r0", "7")) == ["/Task/Kill", "/Task/Cancel", "/Task/Detail"]


def test_a_stop_wiro_never_heard_counts_the_task_as_running_again(tmp_path: Path) -> None:
    guard = guard_with(ledger_in(tmp_path))
    assert guard.budget.reserve("r0", Decimal(1), Quote(None, Decimal("0.01"), Decimal("0.05"), "test")) == "ok"
    guard.launch("r0")
    guard.budget.flights["r0"].stopping_at = 0.0  # chosen by `to_stop`

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    run_with(down, lambda: guard.stop("r0", "7"))
    assert guard.budget.flights["r0"].stopping_at is None  # the guard may choose it again


def test_a_stop_wiro_took_keeps_the_task_counted_as_being_stopped(tmp_path: Path) -> None:
    guard = guard_with(ledger_in(tmp_path))
    assert guard.budget.reserve("r0", Decimal(1), Quote(None, Decimal("0.01"), Decimal("0.05"), "test")) == "ok"
    guard.launch("r0")
    guard.budget.flights["r0"].stopping_at = 0.0
    run_with(lambda r: answer(task("7", "task_cancel")), lambda: guard.stop("r0", "7"))
    assert guard.budget.flights["r0"].stopping_at == 0.0  # its exposure stays frozen at the Kill


def test_a_zero_bill_is_counted_at_the_quoted_rate(tmp_path: Path) -> None:
    guard = guard_with(ledger_in(tmp_path))
    guard.quotes["r0"] = Quote(None, Decimal("0.002"), Decimal("0.01"), "test")
    outcome = WaitOutcome("succeeded", "7", cost=Decimal(0), elapsed=Decimal(5))
    cost, note = guard.bill("r0", outcome)
    assert cost == Decimal("0.010")
    assert "Wiro's record says $0" in note


def test_an_unreadable_bill_is_estimated_never_zero(tmp_path: Path) -> None:
    guard = guard_with(ledger_in(tmp_path))
    guard.quotes["r0"] = Quote(Decimal("0.25"), None, Decimal("0.25"), "test")
    cost, note = guard.bill("r0", WaitOutcome("succeeded", "7", cost=None))
    assert (cost, note) == (Decimal("0.25"), "counted as $0.250000 (an estimate)")


def test_admission_skips_a_row_the_budget_cannot_cover(tmp_path: Path) -> None:
    ledger = ledger_in(tmp_path)
    guard = guard_with(ledger, budget="0.01")
    guard.quotes["r0"] = Quote(Decimal("0.05"), None, Decimal("0.05"), "test")
    assert asyncio.run(guard.admit("r0")) is False
    assert ledger.state("r0").phase == "skipped"
    assert "budget" in ledger.state("r0").error


def test_no_row_is_admitted_once_submitting_has_stopped(tmp_path: Path) -> None:
    ledger = ledger_in(tmp_path)
    ledger.halt.reason = "not submitted: the key was refused"
    assert asyncio.run(guard_with(ledger).admit("r1")) is False
    assert ledger.state("r1").error == "not submitted: the key was refused"


def test_the_ledger_journals_before_it_counts(tmp_path: Path) -> None:
    ledger = ledger_in(tmp_path)
    ledger.record("intent", "r0", inputs={"prompt": "p0"}, model="m", account="a")
    ledger.record("submitted", "r0", task_id="42")
    ledger.flush_or_stop()
    events = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["intent", "submitted"]
    assert ledger.state("r0").task_id == "42"
    assert ledger.progress(Decimal(0)).by_status == {"running": 1, "pending": 2}


def test_a_final_manifest_that_cannot_be_written_stops_submitting(tmp_path: Path) -> None:
    ledger = ledger_in(tmp_path)
    (tmp_path / "manifest.parquet").mkdir()  # the manifest's path is taken: every write fails
    manifest = ledger.final_manifest()
    assert len(manifest) == 3
    assert ledger.halt.out_error is not None
    assert ledger.halt.reason.startswith("not submitted")


def test_a_task_another_row_holds_is_never_claimed(tmp_path: Path) -> None:
    ledger = ledger_in(tmp_path)
    ledger.record("intent", "r0", inputs={"prompt": "p0"}, model="m", account="acct")
    ledger.record("submitted", "r0", task_id="42")
    matcher = TaskMatcher(ledger, Claims(tmp_path, "acct", root=tmp_path / "claims"), "acct")
    assert matcher.take("42", "r1") is False
    assert matcher.take("43", "r1") is True


@pytest.mark.parametrize("rows", [2, 3])
def test_progress_counts_every_row_once(tmp_path: Path, rows: int) -> None:
    ledger = ledger_in(tmp_path)
    for n in range(rows):
        ledger.record("finished", f"r{n}", status="succeeded", task_id=str(n), cost="0.01")
    progress = ledger.progress(Decimal("0.02"))
    assert progress.done == rows
    assert progress.total == 3


def test_a_tier_priced_task_is_counted_at_its_price_not_its_seconds(tmp_path: Path) -> None:
    guard = guard_with(ledger_in(tmp_path))
    guard.quotes["r0"] = Quote(Decimal("0.05"), None, Decimal("0.05"), "test")
    outcome = WaitOutcome("succeeded", "7", cost=Decimal("0.05"), elapsed=Decimal(10), cps=Decimal("0.01"))
    assert guard.bill("r0", outcome) == (Decimal("0.05"), "")


def test_a_ledger_clears_every_whole_file_write_a_killed_process_left(tmp_path: Path) -> None:
    """A SIGKILL mid-write leaves `.<name>.<pid>.<thread>.tmp` beside the manifests, summary.json
    or the report (the random-SIGKILL test once found a summary.json one after its resume); the
    next run's ledger removes them, and keeps what is not its temporary."""
    left = [tmp_path / f".{name}.31212.1402.tmp" for name in ("manifest.parquet", "summary.json", "report.html")]
    for path in left:
        path.write_text("half")
    (tmp_path / "keep.tmp").write_text("not ours")
    ledger_in(tmp_path)
    assert [p for p in left if p.exists()] == []
    assert (tmp_path / "keep.tmp").exists()


def test_a_ledger_clears_the_half_written_files_a_killed_process_left(tmp_path: Path) -> None:
    """Partial downloads and atomic writes cut short are deleted when a run takes the OUT; saved
    videos, posters and files that only look alike stay."""
    videos, strays = tmp_path / "videos", tmp_path / "strays"
    videos.mkdir()
    strays.mkdir()
    left = [videos / "fox-seed1.mp4.123.part", videos / ".fox-seed2.mp4.9.part", strays / "77.mp4.5.part",
            tmp_path / ".manifest.csv.42.tmp"]  # fmt: skip
    kept = [videos / "fox-seed1.mp4", videos / "fox-seed1.jpg", videos / "part", tmp_path / "notes.tmp"]
    for path in [*left, *kept]:
        path.write_bytes(b"x")
    (videos / "a.part").mkdir()  # a folder is not a download
    ledger_in(tmp_path)
    assert [p for p in left if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []
    assert (videos / "a.part").is_dir()
