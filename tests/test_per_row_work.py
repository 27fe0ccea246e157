"""What one row costs in work that does not depend on the machine's speed, at two sizes.

Per-row overhead once doubled unnoticed: timings live in `python -m bench.run`, too noisy on a
shared machine to fail a test. These counts are exact. A row's marginal work, (count at 60 rows
- count at 15 rows) / 45, must stay within what a row needs:

- Wiro requests: a Run, a Task/Detail (instant tasks end by the first poll) and the download;
- Prefect task runs: two (submit, wait), each Pending -> Running -> Completed, sent as events;
  none of its own past `row_task_runs_max` rows (one task run per 1,000 rows shows them);
- log lines to Prefect's API: none for a row that succeeds (its task runs' "Finished in state
  Completed()" lines are dropped); a row that fails still logs why;
- requests to the Prefect API: none of a row's own (artifacts, renames and the cancel watch
  are per run or per second, not per row), the slots of the account's limit a shard's rows
  share included (taken once, handed from row to row);
- journal writes: the intent is written (and fsynced) on its own, before its Run; the other
  events of a row ride in the batches written every tenth of a second;
- manifest rewrites: at most one a second, whatever the number of rows;
- memory: Prefect's links from task results to their states (`run_results`) and the rows'
  coroutines alive at once stay bounded (each was kilobytes a row, gigabytes at 100,000 rows).

A change that adds a request, a task run, a state or a write per row fails here.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import flows.engine.runner
import flows.store.journal
import flows.store.manifest
from flows.engine.driver import RowDriver
from flows.engine.ledger import Ledger
from flows.engine.window import window_size
from flows.orchestrate.flow import sweep
from flows.store.manifest import read_manifest
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.prefect_tasks import forget_old_result_links

from .conftest import EmulatorFactory

SIZES = (15, 60)
_ID = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|(?<=/)\d+(?=/|$)")


class Counts:
    """Counts what the process sends and writes while a sweep runs."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.seen: Counter[str] = Counter()
        self.logs: list[dict[str, Any]] = []

    def request(self, request: httpx.Request) -> None:
        api = self.api
        path = _ID.sub("{id}", request.url.path)
        where = "prefect" if api and str(request.url).startswith(api) else "wiro"
        self.seen[f"{where} {request.method} {path}"] += 1

    def total(self, prefix: str) -> int:
        return sum(n for k, n in self.seen.items() if k.startswith(prefix))


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> Callable[[], Counts]:
    """Each call starts fresh counts of requests, events, journal writes and manifest rewrites."""
    from prefect.context import FlowRunContext
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    current = [Counts(prefect_api)]
    send_async, send_sync, enqueue = httpx.AsyncClient.send, httpx.Client.send, EventsWorker.send
    send_log = APILogWorker.send
    write_whole, atomic = flows.store.journal._write_whole, flows.store.manifest.atomic_write
    final_manifest = Ledger.final_manifest

    async def counted_async(self: httpx.AsyncClient, request: httpx.Request, *a: Any, **k: Any) -> httpx.Response:
        current[0].request(request)
        return await send_async(self, request, *a, **k)

    def counted_sync(self: httpx.Client, request: httpx.Request, *a: Any, **k: Any) -> httpx.Response:
        current[0].request(request)
        return send_sync(self, request, *a, **k)

    def counted_event(self: Any, event: Any) -> None:
        current[0].seen[f"event {event.event}"] += 1
        enqueue(self, event)

    def counted_log(self: Any, log: Any) -> None:
        if isinstance(log, dict) and log.get("task_run_id"):  # a task run's line (not the flow's)
            current[0].seen["api log"] += 1
            current[0].logs.append(log)
        send_log(self, log)

    def counted_write(fd: int, data: bytes) -> None:
        current[0].seen["journal write"] += 1
        write_whole(fd, data)

    def counted_manifest(path: Path, write: Callable[[str], None]) -> None:
        current[0].seen[f"file {Path(path).name}"] += 1
        atomic(path, write)

    def counted_links(self: Ledger) -> pd.DataFrame:
        context = FlowRunContext.get()
        assert context is not None
        current[0].seen["result links"] = len(context.run_results)  # as the last rows end
        return final_manifest(self)

    async def forgetting_at_once() -> None:  # links forgotten as soon as made, not after a minute
        await forget_old_result_links(keep_seconds=0.0, every=0.05)

    monkeypatch.setattr(Ledger, "final_manifest", counted_links)
    monkeypatch.setattr(flows.engine.runner, "forget_old_result_links", forgetting_at_once, raising=False)
    monkeypatch.setattr(httpx.AsyncClient, "send", counted_async)
    monkeypatch.setattr(httpx.Client, "send", counted_sync)
    monkeypatch.setattr(EventsWorker, "send", counted_event)
    monkeypatch.setattr(APILogWorker, "send", counted_log)
    monkeypatch.setattr(flows.store.journal, "_write_whole", counted_write)
    monkeypatch.setattr(flows.store.manifest, "atomic_write", counted_manifest)

    def fresh() -> Counts:
        current[0] = Counts(prefect_api)
        return current[0]

    return fresh


def sweep_rows(tmp_path: Path, rows: int, counts: Callable[[], Counts], **params: Any) -> Counts:
    grid = tmp_path / f"grid-{rows}.csv"
    pd.DataFrame({"prompt": [f"row {n}" for n in range(rows)], "numFrames": 9}).to_csv(grid, index=False)
    counted = counts()
    state: Any = asyncio.run(sweep(grid=[str(grid)], out=str(tmp_path / f"out-{rows}"), max_concurrency=8,  # type: ignore[arg-type]
                              poll_interval=0.01, return_state=True, **params))  # fmt: skip
    assert state.is_completed(), state.message
    assert (read_manifest(tmp_path / f"out-{rows}")["status"] == "succeeded").all()
    return counted  # events are counted as they are handed to Prefect's events worker


@pytest.mark.parametrize(("params", "task_run_events"), [
    ({}, 6), ({"row_task_runs_max": 0}, 0), ({"row_task_runs_max": 0, "concurrency_limit_name": "per-row-account"}, 0)
], ids=["a task run per step", "past row_task_runs_max", "a shard's, under the account's limit"])  # fmt: skip
def test_a_row_costs_the_same_work_at_any_size(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path,
    counting: Callable[[], Counts], params: dict[str, Any], task_run_events: int,
) -> None:  # fmt: skip
    emulator = make_emulator(queue_seconds=0.0, task_seconds=0.0, preview=True, concurrency_limit=1000)
    wiro_env(emulator)
    small, large = (sweep_rows(tmp_path, n, counting, **params) for n in SIZES)
    extra = SIZES[1] - SIZES[0]

    def per_row(key: str) -> float:
        return (large.total(key) - small.total(key)) / extra

    shown = f"small: {dict(small.seen)}\nlarge: {dict(large.seen)}"
    assert per_row("wiro POST /v1/Run/") == 1, shown
    assert per_row("wiro POST /v1/Task/Detail") <= 1.1, shown  # instant tasks: one look, a rare second
    assert per_row("wiro GET ") == 1, shown  # the video
    assert per_row("event prefect.task-run.") == task_run_events, shown  # two task runs, three states each
    assert per_row("api log") == 0, shown  # a succeeded row's task runs log nothing
    assert per_row("prefect ") <= 0.25, shown  # per run and per second, never per row
    assert per_row("event prefect.concurrency-limit.") == 0, shown  # the account's slots are held across rows
    assert per_row("journal write") <= 1.5, shown  # the intent alone, the rest in batches
    assert per_row("file manifest.parquet") <= 0.25, shown
    assert per_row("result links") <= 1, shown  # about ten a row if kept for the run's life


def test_a_row_that_fails_still_logs_why_to_prefect(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path,
    counting: Callable[[], Counts],
) -> None:  # fmt: skip
    """Only a success's line is dropped: the UI still shows, in the failed row's `wait` task run,
    the engine's ERROR line with the reason."""
    wiro_env(make_emulator(queue_seconds=0.0, task_seconds=0.0, preview=True, concurrency_limit=1000))
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": ["fine", "broken [emulator:fail]"], "numFrames": 9}).to_csv(grid, index=False)
    counted = counting()
    asyncio.run(sweep(grid=[str(grid)], out=str(tmp_path / "out"), poll_interval=0.01, return_state=True))  # type: ignore[arg-type]
    assert sorted(read_manifest(tmp_path / "out")["status"]) == ["failed", "succeeded"]
    finished = [log for log in counted.logs if log["message"].startswith("Finished in state")]
    assert [(log["level"], log["message"].split("(")[0]) for log in finished] == [(40, "Finished in state Failed")]
    assert "failed:" in finished[0]["message"], finished


def test_only_a_window_of_rows_is_alive_at_once(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A row's coroutine is made as room frees, not all up front, and is dropped when it ends."""
    wiro_env(make_emulator(queue_seconds=0.0, task_seconds=0.0, preview=True, concurrency_limit=1000))
    process, alive, peak = RowDriver.process, [0], [0]

    def counted(self: RowDriver, row: dict[str, Any]) -> Any:
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])

        async def body() -> None:
            try:
                await process(self, row)
            finally:
                alive[0] -= 1

        return body()

    monkeypatch.setattr(RowDriver, "process", counted)
    rows, concurrency = 3 * window_size(2), 2
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": [f"row {n}" for n in range(rows)], "numFrames": 9}).to_csv(grid, index=False)
    state: Any = asyncio.run(sweep(grid=[str(grid)], out=str(tmp_path / "out"), max_concurrency=concurrency,  # type: ignore[arg-type]
                              poll_interval=0.01, return_state=True))  # fmt: skip
    assert state.is_completed(), state.message
    assert (read_manifest(tmp_path / "out")["status"] == "succeeded").sum() == rows
    assert alive[0] == 0
    assert concurrency < peak[0] <= window_size(concurrency), f"{peak[0]} of {rows} rows alive at once"


def test_the_rows_state_is_let_go_before_the_report_is_built(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The report holds every row at once (about 10 KiB a row while it is built): at 100,000 rows the
    sweep's own state (every row's journal state, inputs, grid) beside it made the run's peak."""
    import gc

    import flows.orchestrate.flow
    from flows.engine.runner import SweepRunner
    from flows.view.report import write_report

    wiro_env(make_emulator(queue_seconds=0.0, task_seconds=0.0, preview=True))
    alive: list[int] = []

    def counting(out: Path, **options: Any) -> Path:
        gc.collect()
        alive.append(sum(isinstance(o, Ledger | SweepRunner) for o in gc.get_objects()))
        return write_report(out, **options)

    monkeypatch.setattr(flows.orchestrate.flow, "write_report", counting)
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": ["a", "b", "c"], "numFrames": 9}).to_csv(grid, index=False)
    state: Any = asyncio.run(sweep(grid=[str(grid)], out=str(tmp_path / "out"), poll_interval=0.01,  # type: ignore[arg-type]
                              return_state=True))  # fmt: skip
    assert state.is_completed(), state.message
    assert alive == [0], "the ledger and runner outlived the rows into the report"
