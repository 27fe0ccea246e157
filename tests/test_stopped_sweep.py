"""A sweep stopped part-way tells the truth: Ctrl-C on `wiro-sweep run` against a Prefect server
ends the flow run Cancelled (not Crashed) with its report and summary, and the rows it never
started are `not_started` everywhere a person looks, never `failed`."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flows.store.manifest import read_manifest
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.config import Faults

from .conftest import EmulatorFactory
from .processes import finish, start, wait_until

ROWS, SLOTS = 5, 2


async def flow_run_of(out: Path) -> tuple[Any, list[Any], dict[str, Any], list[Any]]:
    """The flow run that swept into `out`, its task runs, its artifacts (by key or type) and logs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        runs = [r for r in await client.read_flow_runs() if r.parameters.get("out") == str(out)]
        assert len(runs) == 1, [r.name for r in runs]
        run = runs[0]
        tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    return run, tasks, {str(a.key or a.type): a for a in found}, logs


def interrupted(emulator: EmulatorServer, env: dict[str, str], tmp_path: Path, prompts: list[str],
                settle: float = 0.0, *options: str) -> tuple[Path, str]:  # fmt: skip
    """`wiro-sweep run` of `prompts` (each task hangs), SLOTS at a time, Ctrl-C'd `settle` s after
    its SLOTS tasks exist: it exits 130; OUT, and what it said."""
    grid = tmp_path / "grid.csv"
    grid.write_text("prompt,numFrames\n" + "".join(f'"{p} [emulator:hang]",9\n' for p in prompts))
    out, log = (tmp_path / "out").resolve(), tmp_path / "log.txt"
    args = [str(grid), "--out", str(out), "--max-concurrency", str(SLOTS), "--poll-interval", "5", *options]
    process = start(args, env, log)
    try:
        wait_until(lambda: emulator.account.stats()["tasks"] == SLOTS, seconds=120)
        time.sleep(settle)
        os.killpg(process.pid, signal.SIGINT)
        assert finish(process, log, 90) == 130, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return out, log.read_text()


@pytest.mark.parametrize("options", [(), ("--row-task-runs-max", "0")], ids=["task runs per step", "chunks"])
def test_ctrl_c_against_a_prefect_server_ends_cancelled_and_rows_never_started_are_not_failed(
    make_emulator: EmulatorFactory, subprocess_env: Callable[[EmulatorServer], dict[str, str]], tmp_path: Path,
    options: tuple[str, ...],
) -> None:  # fmt: skip
    emulator = make_emulator(queue_seconds=0.05)
    prompts = [f"hang {n}" for n in range(ROWS)]
    out, said = interrupted(emulator, subprocess_env(emulator), tmp_path, prompts, 0.5, *options)
    assert emulator.account.stats()["statuses"] == {"task_cancel": SLOTS}, "no task runs on"

    manifest = read_manifest(out)
    assert Counter(manifest["status"]) == {"cancelled": SLOTS, "not_started": ROWS - SLOTS}, said
    report = (out / "report.html").read_text()
    assert report.count('data-status="not_started"') == ROWS - SLOTS
    assert 'data-status="failed"' not in report
    message = f"0 of {ROWS} rows succeeded; {SLOTS} cancelled, {ROWS - SLOTS} not_started"
    assert message in said, said[-2000:]
    last = said.rstrip().splitlines()[-1]
    assert last == f"Interrupted: stopped {SLOTS} running Wiro task(s). Rerun the same command to resume."

    run, tasks, artifacts, logs = asyncio.run(flow_run_of(out))
    crashes = [log.message for log in logs if "Crash detected" in log.message]
    assert not crashes, crashes  # each task run ended as its row did, none interrupted
    assert run.state is not None
    assert run.state.is_cancelled(), run.state
    assert "cancelled by the runtime environment" not in str(run.state.message)
    states = Counter(t.state.name for t in tasks if t.state is not None)
    assert not {"Crashed", "Failed"} & set(states), states
    summary = [a for key, a in artifacts.items() if key.endswith("-summary")]
    assert summary, sorted(artifacts)
    assert message in summary[0].data
    assert "failed" not in summary[0].data.lower()
    chunks = [t for t in tasks if t.name.startswith("rows ")]
    if options:  # the chunk's task run ended with its rows, none of them counted failed
        assert [(t.name, t.state.name) for t in chunks] == [(f"rows 1-{ROWS} of {ROWS}", "Completed")]
        assert "failed" not in str(chunks[0].state.message), chunks[0].state.message
    else:
        assert not chunks


def test_ctrl_c_while_runs_await_their_answers_records_their_tasks_stopped_not_failed(
    make_emulator: EmulatorFactory, subprocess_env: Callable[[EmulatorServer], dict[str, str]], tmp_path: Path
) -> None:
    """Ctrl-C as every Run's answer is late (its task made, billing): the rows stop at once, and
    their Runs' tasks are found (Task/List), stopped, and recorded cancelled with what each cost,
    never failed."""
    emulator = make_emulator(queue_seconds=0.05, faults=Faults(run_latency=2.0))
    out, _ = interrupted(emulator, subprocess_env(emulator), tmp_path, [f"late {n}" for n in range(SLOTS)])
    assert emulator.account.stats()["statuses"] == {"task_cancel": SLOTS}, "no task runs on"
    manifest = read_manifest(out)
    why = list(zip(manifest["status"], manifest["error"], strict=True))
    assert Counter(manifest["status"]) == {"cancelled": SLOTS}, why
    assert all(cost > 0 for cost in manifest["cost_usd"]), "what each stopped task cost is kept"
    _, tasks, _, _ = asyncio.run(flow_run_of(out))
    states = Counter(t.state.name for t in tasks if t.state is not None)
    assert not {"Crashed", "Failed"} & set(states), states
