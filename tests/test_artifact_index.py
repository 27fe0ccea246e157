"""What the Prefect Artifacts index and a run's Artifacts tab show, read back through Prefect's
client from the session's real server: one rich summary per sweep that describes its latest run,
no card left over from an earlier night, and shards folded into their parent's."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from flows.orchestrate.artifacts import artifact_scope
from flows.store.manifest import MANIFEST_CSV
from flows.view.report import REPORT
from wiro_tasks.emulator import EmulatorServer

from .conftest import EmulatorFactory
from .test_sweep import grid_file, run_sweep

pytestmark = pytest.mark.usefixtures("prefect_api")


def latest_under(scope: str) -> dict[str, Any]:
    """The Artifacts index's cards of an OUT's keys (every key a sweep ever published under it):
    each key's latest artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    keys = [f"{scope}-{kind}" for kind in ("summary", "failures", "report", "manifest")]

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=keys))
            )
        return {str(a.key): a for a in found}

    return asyncio.run(read())


def run_artifacts(flow_run_id: UUID | None) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    assert flow_run_id is not None

    async def read() -> list[Any]:
        async with get_client() as client:
            return list(
                await client.read_artifacts(
                    artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
                )
            )

    return asyncio.run(read())


def test_after_a_clean_night_the_index_shows_only_what_the_clean_night_published(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """A failing night, then a clean one under the same `{date}` OUT: every card the index shows
    for that OUT is the clean night's, and none speaks of a row that did not succeed."""
    wiro_env(make_emulator())
    runs = tmp_path / "index-runs"  # a folder no other test's OUT is in: keys are the OUT's folder names
    pattern = runs / "nightly-{date}"
    failing = run_sweep(grid_file(tmp_path, ["a fox", "a boat [emulator:fail]"]), pattern)
    assert failing.is_failed()
    [night] = runs.iterdir()
    shutil.move(night, runs / "nightly-2000-01-01")  # it was the night before
    (tmp_path / "clean").mkdir()
    clean = run_sweep(grid_file(tmp_path / "clean", ["a fox", "a kite"]), pattern)
    assert clean.is_completed(), clean.message

    index = latest_under(artifact_scope(str(pattern)))
    assert index, "the OUT has cards in the index"
    stale = {k: a.data for k, a in index.items() if a.flow_run_id != clean.state_details.flow_run_id}
    assert stale == {}, "every card describes the latest run"
    assert all("did not succeed" not in str(a.data) + str(a.description) for a in index.values())


def test_a_sweep_shows_one_summary_with_its_links_counts_cost_and_failures(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator()
    wiro_env(emulator)
    out = tmp_path / "demo-out"
    state = run_sweep(grid_file(tmp_path, ["ok", "bad [emulator:fail]"]), out)
    assert state.is_failed()
    found = run_artifacts(state.state_details.flow_run_id)
    assert sorted(a.type for a in found) == ["markdown", "progress"], "one summary, and the live progress"
    [summary] = [a for a in found if a.type == "markdown"]
    text = str(summary.data)
    assert text.startswith("# demo-out: 1 of 2 rows succeeded"), "headed by the OUT and how it went"
    assert f"]({(out / REPORT).resolve().as_uri()})" in text, "a link to the report"
    assert f"]({(out / MANIFEST_CSV).resolve().as_uri()})" in text, "a link to the manifest"
    assert "| failed | 1 |" in text
    billed = Decimal(emulator.account.stats()["billed"])
    assert billed > 0
    assert f"Billed: **${billed:.6f}**" in text, "what it cost, as the API billed it"
    assert "bad [emulator:fail]" in text.split("## Rows that did not succeed")[1], "the failure, with its row"


def test_a_shard_run_publishes_no_summary_of_its_own(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """A child run's rows are in its parent's summary: it adds no card to the index."""
    wiro_env(make_emulator())
    out = tmp_path / "sharded"
    state = run_sweep(grid_file(tmp_path, [f"scene {n}" for n in range(4)]), out, shards=2, shard=0)
    assert state.is_completed(), state.message
    assert [(a.type, a.key) for a in run_artifacts(state.state_details.flow_run_id)] == []


def test_a_task_the_budget_stopped_says_so_in_prefect_as_the_manifest_does(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """Tasks quoted at 1 s run 20 s at $0.01/s: the guard stops them before the bill passes $0.10.
    Their `wait` task runs end Cancelled, and say what their rows say: the budget stopped them."""
    from .test_guard_alone import BUDGET, long_tasks, write_rows
    from .test_sweep import manifest_rows, task_runs

    wiro_env(long_tasks(make_emulator))
    out = tmp_path / "out"
    state = run_sweep(write_rows(tmp_path / "grid.csv", 3), out, budget=float(BUDGET), max_concurrency=3, timeout=600)
    rows = manifest_rows(out)
    assert {r["status"] for r in rows.values()} == {"skipped"}, rows
    cancelled = task_runs(state.state_details.flow_run_id, "Cancelled")
    waits = {name: run.state.message for name, run in cancelled.items() if name.startswith("wait ")}
    assert len(waits) == 3, cancelled
    for message in waits.values():
        assert message.startswith("skipped: budget: stopped while running"), message
        assert "task_cancel" not in message
