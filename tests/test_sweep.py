"""The sweep flow end to end: a real Prefect engine, the emulator over loopback, real MP4s."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname
from uuid import UUID, uuid4

import pandas as pd
import pytest

from flows.engine.rows import records, row_label
from flows.orchestrate.artifacts import artifact_scope
from flows.orchestrate.flow import sweep
from flows.store.manifest import FINAL_STATUSES, MANIFEST_CSV, MANIFEST_PARQUET, read_manifest
from flows.view.report import REPORT
from wiro_tasks.emulator import EmulatorServer

from .conftest import API_KEY, API_SECRET, EmulatorFactory

pytestmark = pytest.mark.usefixtures("prefect_api")


def grid_file(tmp_path: Path, prompts: list[str], name: str = "grid.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame({"prompt": prompts, "numFrames": 9}).to_csv(path, index=False)
    return path


def run_sweep(grid: Path, out: Path, **params: Any) -> Any:
    params.setdefault("poll_interval", 0.05)
    return asyncio.run(sweep(grid=[str(grid)], out=str(out), return_state=True, **params))  # type: ignore[arg-type]


def manifest_rows(out: Path) -> dict[str, dict[str, Any]]:
    """The manifest as plain dicts keyed by prompt."""
    return {r["prompt"]: r for r in records(read_manifest(out))}


def tasks_per_combination(emulator: EmulatorServer) -> Counter[tuple[str, str]]:
    return Counter((t["prompt"], t["seed"]) for t in emulator.account.intervals())


def flow_run_artifacts(flow_run_id: UUID | None, out: Path | None = None) -> dict[str, Any]:
    """A flow run's artifacts as the Prefect API has them, by key (by type when they have none);
    with `out`, every key must be scoped to that OUT, and is given without the scope. Each has a
    description, so its card in the run's Artifacts tab is not empty."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    assert flow_run_id is not None
    scope = artifact_scope(str(out)) + "-" if out is not None else ""

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )
        by_key: dict[str, Any] = {}
        for artifact in found:
            assert artifact.description, f"{artifact.key or artifact.type} has a description"
            assert artifact.key is None or artifact.key.startswith(scope), (artifact.key, scope)
            name = str(artifact.key.removeprefix(scope) if artifact.key else artifact.type)
            assert name not in by_key, f"two {name} artifacts"
            by_key[name] = artifact
        return by_key

    return asyncio.run(read())


def task_run_names(flow_run_id: UUID | None) -> list[str]:
    """The names of a flow run's task runs, as the Prefect UI lists them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    assert flow_run_id is not None

    async def read() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return [run.name for run in runs]

    return asyncio.run(read())


def linked_file(markdown: str, text: str) -> Path:
    """The local file the markdown link `[text](file:///...)` in an artifact points at."""
    match = re.search(re.escape(f"[{text}]") + r"\((file://[^)]+)\)", markdown)
    assert match, markdown
    return Path(url2pathname(urlparse(match.group(1)).path))


def report_cells(page: str) -> dict[str, str]:
    """The report's cells: each card's row id and the status it shows."""
    cells: dict[str, str] = {}
    for tag in re.findall(r"<article\b[^>]*>", page):
        row_id = re.search(r'data-row-id="([^"]*)"', tag)
        status = re.search(r'data-status="([^"]*)"', tag)
        assert row_id, tag
        assert status, tag
        assert row_id.group(1) not in cells, f"two cells for {row_id.group(1)}"
        cells[row_id.group(1)] = status.group(1)
    return cells


def test_a_clean_sweep(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator()
    wiro_env(emulator)
    grid = grid_file(tmp_path, ["a red fox", "a blue whale"])
    state = run_sweep(grid, tmp_path / "out", axes={"seed": ["1", "2"]})
    assert state.is_completed(), state.message
    manifest = read_manifest(tmp_path / "out")
    assert len(manifest) == 4
    assert set(manifest["status"]) == {"succeeded"}
    for row in records(manifest):
        video = tmp_path / "out" / row["output_path"]
        assert video.parent == tmp_path / "out" / "videos"
        assert hashlib.sha256(video.read_bytes()).hexdigest() == row["output_sha256"]
        assert video.stat().st_size == row["output_bytes"]
        poster = video.with_suffix(".jpg")
        assert poster.read_bytes()[:3] == b"\xff\xd8\xff", "a JPEG of its first frame beside each video"
        assert poster.stat().st_mtime_ns >= video.stat().st_mtime_ns, "made from the video as it was saved"
    assert sum(manifest["cost_usd"], Decimal(0)) == Decimal(emulator.account.stats()["billed"])
    assert set(tasks_per_combination(emulator).values()) == {1}
    found = flow_run_artifacts(state.state_details.flow_run_id, tmp_path / "out")
    assert set(found) == {"progress", "summary"}, "one summary card with its links"
    assert "4 of 4 rows succeeded" in found["summary"].data
    assert linked_file(found["summary"].data, "Open report.html") == (tmp_path / "out" / REPORT).resolve()
    assert report_cells((tmp_path / "out" / REPORT).read_text(encoding="utf-8")) == dict.fromkeys(
        manifest["row_id"], "succeeded"
    )


def test_faults_every_row_accounted_for_one_task_each(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.engine.matching

    monkeypatch.setattr(flows.engine.matching, "FIND_RETRY_DELAYS", (0.2, 0.4))  # dropped Runs are looked for quickly
    # The account would take 10 tasks at once: only the flow's own max_concurrency holds it to 4.
    emulator = make_emulator(concurrency_limit=10, task_seconds=0.5)
    emulator.account.faults = emulator.account.faults.updated(
        {
            "error_5xx_rate": 0.1,
            "rate_429": 0.05,
            "retry_after": 0,
            "lost_run_rate": 0.25,
            "drop_rate": 0.03,
            "run_script": ["ok", "lost"],
        }  # at least one lost answer, whatever the dice say
    )
    wiro_env(emulator)
    # The long-lived rows first (rows take slots in grid order): they overlap the short ones.
    prompts = [
        "never ends [emulator:hang]",
        "stuck [emulator:stuck]",
        *(f"scene {n}" for n in range(8)),
        "broken [emulator:fail]",
        "also broken [emulator:fail]",
        "wobbly [emulator:error]",
    ]
    grid = grid_file(tmp_path, prompts)
    state = run_sweep(grid, tmp_path / "out", max_concurrency=4, timeout=2.0, error_grace=0.5)
    assert state.is_failed()
    assert "8 of 13 rows succeeded" in state.message or "9 of 13 rows succeeded" in state.message
    rows = manifest_rows(tmp_path / "out")
    assert {r["status"] for r in rows.values()} <= set(FINAL_STATUSES)
    assert rows["broken [emulator:fail]"]["status"] == "failed"
    assert rows["broken [emulator:fail]"]["cost_usd"] == 0
    assert rows["never ends [emulator:hang]"]["status"] == "timed_out"
    assert rows["never ends [emulator:hang]"]["cost_usd"] > 0, "a killed running task is billed"
    assert rows["stuck [emulator:stuck]"]["status"] == "failed"
    assert "task_error" in rows["stuck [emulator:stuck]"]["error"]
    assert rows["wobbly [emulator:error]"]["status"] == "succeeded"
    assert all(rows[f"scene {n}"]["status"] == "succeeded" for n in range(8))
    per_combination = tasks_per_combination(emulator)
    assert len(per_combination) == 13
    assert set(per_combination.values()) == {1}, "exactly one Wiro task per row"
    stats = emulator.account.stats()
    assert stats["max_in_flight"] <= 4, "never more Wiro tasks in flight than max_concurrency"
    assert stats["max_in_flight"] == 4, "max_concurrency tasks did run at once: the rows were not serialised"
    counters = stats["counters"]
    assert counters.get("run_refused_96", 0) == 0, "the account limit was never what held the flow back"
    assert counters.get("fault_lost", 0) > 0, "some Run answers were lost and their tasks adopted"
    assert sum((r["cost_usd"] for r in rows.values()), Decimal(0)) == Decimal(stats["billed"])


def test_a_full_account_code_96_is_waited_out_and_each_row_submitted_again(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator(concurrency_limit=1, task_seconds=0.5)  # the account runs one task at a time
    wiro_env(emulator)
    state = run_sweep(grid_file(tmp_path, ["one", "two"]), tmp_path / "out", max_concurrency=2)
    assert state.is_completed(), state.message
    assert {r["status"] for r in manifest_rows(tmp_path / "out").values()} == {"succeeded"}
    stats = emulator.account.stats()
    assert stats["counters"].get("run_refused_96", 0) > 0, "the flow tried a second task and was told code 96"
    assert set(tasks_per_combination(emulator).values()) == {1}, "a code 96 created no task: one task per row"
    assert len(tasks_per_combination(emulator)) == 2


LONG = "a red fox trotting through fresh snow at first light"  # 52 characters


def test_artifacts_show_progress_summary_failures_the_manifest_and_the_report(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    wiro_env(make_emulator())
    out = tmp_path / "out"
    state = run_sweep(grid_file(tmp_path, ["ok", "bad [emulator:fail]", LONG]), out)
    assert state.is_failed()
    assert state.message.startswith("2 of 3 rows succeeded; 1 failed; $")
    rows = manifest_rows(out)
    flow_run_id = state.state_details.flow_run_id

    found = flow_run_artifacts(flow_run_id, out)
    assert set(found) == {"progress", "summary"}
    assert found["progress"].data == 100.0
    assert "2 of 3 rows succeeded" in found["summary"].data
    assert "| failed | 1 |" in found["summary"].data
    assert found["summary"].description.startswith("2 of 3 rows succeeded; 1 failed")
    bad = rows["bad [emulator:fail]"]
    assert bad["error"] != ""
    assert f"| failed | {bad['error']} | bad [emulator:fail] | 42 | `{bad['row_id']}` |" in found["summary"].data
    assert linked_file(found["summary"].data, "manifest.csv") == (out / MANIFEST_CSV).resolve()

    # The sweep ended by writing OUT/report.html, after the last manifest, and links to it.
    report = out / REPORT
    assert linked_file(found["summary"].data, "Open report.html") == report.resolve()
    assert report.stat().st_mtime_ns >= (out / MANIFEST_PARQUET).stat().st_mtime_ns
    cells = report_cells(report.read_text(encoding="utf-8"))
    assert cells == {r["row_id"]: r["status"] for r in rows.values()}, "one cell per row, at its final status"

    # Task runs are named after their rows: short row id, prompt (cut to 31 characters and "…"), seed.
    shown = {"ok": "ok", "bad [emulator:fail]": "bad [emulator:fail]", LONG: "a red fox trotting through fres…"}
    names = [f"{row['row_id'][:8]} · {shown[prompt]} · seed 42" for prompt, row in rows.items()]
    expected = sorted(f"{verb} {name}" for name in names for verb in ("submit", "wait"))
    assert {row["seed"] for row in rows.values()} == {"42"}, "the model page's default seed"
    assert sorted(task_run_names(flow_run_id)) == expected


def test_resume_keeps_finished_rows_and_retry_failed_resubmits_only_failures(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator()
    wiro_env(emulator)
    grid = grid_file(tmp_path, ["fine", "fails [emulator:fail]"])
    out = tmp_path / "out"
    assert run_sweep(grid, out).is_failed()
    first = manifest_rows(out)
    assert emulator.account.stats()["tasks"] == 2
    assert run_sweep(grid, out).is_failed()
    assert emulator.account.stats()["tasks"] == 2, "a plain rerun submits nothing new"
    assert run_sweep(grid, out, retry_failed=True).is_failed()
    again = manifest_rows(out)
    assert emulator.account.stats()["tasks"] == 3, "only the failed row went again"
    assert again["fine"]["task_id"] == first["fine"]["task_id"]
    assert again["fails [emulator:fail]"]["attempts"] == 2


def test_budget_skips_what_would_pass_it(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator(cps=Decimal("0.01"), task_seconds=0.2)
    wiro_env(emulator)
    grid = grid_file(tmp_path, [f"p{n}" for n in range(6)])
    # Each task bills 0.2 s x $0.01 = $0.002, and holds $0.01 for each second it may run, 2.25 s more
    # than its typical time (what a Kill may take to land): one at a time, and not all six fit.
    state = run_sweep(grid, tmp_path / "out", budget=0.034, estimate_usd=0.002, max_concurrency=3)
    assert state.is_failed()
    manifest = read_manifest(tmp_path / "out")
    counts = Counter(manifest["status"])
    assert counts["succeeded"] >= 2
    assert counts["skipped"] == 6 - counts["succeeded"]
    assert sum(manifest["cost_usd"], Decimal(0)) <= Decimal("0.034")
    assert manifest.loc[manifest["status"] == "skipped", "error"].str.contains("budget").all()
    assert emulator.account.stats()["tasks"] == counts["succeeded"]


def test_insufficient_balance_stops_submitting(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator(balance=Decimal("0.001"), cps=Decimal("0.01"), concurrency_limit=1)
    wiro_env(emulator)
    grid = grid_file(tmp_path, [f"p{n}" for n in range(4)])
    state = run_sweep(grid, tmp_path / "out", max_concurrency=1)
    assert state.is_failed()
    manifest = read_manifest(tmp_path / "out")
    assert manifest["status"].tolist().count("succeeded") == 1
    assert manifest["status"].tolist().count("skipped") == 3
    assert manifest.loc[manifest["status"] == "skipped", "error"].str.contains("nsufficient balance").all()


def test_nothing_secret_is_written(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    import logging

    from prefect.client.orchestration import get_client

    caplog.set_level(logging.DEBUG)
    emulator = make_emulator()
    wiro_env(emulator)
    state = run_sweep(grid_file(tmp_path, ["p [emulator:fail]", "q"]), tmp_path / "out")
    written = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())

    async def from_prefect() -> str:
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
            artifacts = await client.read_artifacts()
            return repr(run.parameters) + repr([a.data for a in artifacts]) + repr(run.state)

    recorded = asyncio.run(from_prefect())
    for secret in (API_SECRET, API_KEY):
        assert secret.encode() not in written
        assert secret not in caplog.text
        assert secret not in recorded
    assert (tmp_path / "out" / MANIFEST_CSV).exists()


def test_cancelling_the_flow_run_stops_its_wiro_tasks(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Cancelled

    from flows.orchestrate.hooks import kill_on_cancel
    from flows.store.journal import Journal, read_events
    from wiro_tasks import TextToVideoInput, WiroClient

    emulator = make_emulator()
    wiro_env(emulator)
    out = tmp_path / "out"
    journal = Journal(out)
    with WiroClient() as client:
        for n in range(2):
            submitted = client.run(TextToVideoInput(prompt=f"running {n} [emulator:hang]"))
            journal.append("intent", f"row{n}")
            journal.append("submitted", f"row{n}", task_id=submitted.task_id)
        # A Run sent just before the cancel, its answer never read: its task is found and stopped.
        journal.append("intent", "unanswered", inputs={"prompt": "unanswered [emulator:hang]"})
        lost = client.run(TextToVideoInput(prompt="unanswered [emulator:hang]")).task_id
        # Two tasks match this one (another sweep sent the same inputs): neither is ours to kill.
        journal.append("intent", "ambiguous", inputs={"prompt": "twice [emulator:hang]"})
        twins = [client.run(TextToVideoInput(prompt="twice [emulator:hang]")).task_id for _ in range(2)]
    journal.close()
    run = FlowRun(flow_id=uuid4(), name="cancelled-run", parameters={"grid": [], "out": str(out)})
    kill_on_cancel(sweep, run, Cancelled())
    statuses = {t["id"]: t["status"] for t in emulator.account.intervals()}
    assert statuses[lost] == "task_cancel"
    assert "task_cancel" not in [statuses[t] for t in twins], "an ambiguous match is left running"
    assert Counter(statuses.values())["task_cancel"] == 3
    events = read_events(out / "journal.jsonl")
    assert [e["row_id"] for e in events if e["event"] == "adopted"] == ["unanswered"]
    finished = [e for e in events if e["event"] == "finished"]
    assert [e["status"] for e in finished] == ["cancelled"] * 3


def test_prefect_retries_the_wait_after_the_client_gives_up(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    import threading

    emulator = make_emulator(queue_seconds=0.3, task_seconds=0.5)
    wiro_env(emulator)

    def break_polling() -> None:
        while emulator.account.stats()["tasks"] == 0:
            time.sleep(0.01)
        # Six 503s in a row outlast the client's own retries (five attempts): only Prefect's
        # retry of the wait task can bring the row home.
        emulator.account.faults = emulator.account.faults.updated({"script": ["503"] * 6})

    watcher = threading.Thread(target=break_polling)
    watcher.start()
    state = run_sweep(grid_file(tmp_path, ["flaky polls"]), tmp_path / "out", poll_interval=0.05)
    watcher.join()
    assert state.is_completed(), state.message
    assert emulator.account.stats()["counters"]["fault_503"] == 6
    assert emulator.account.stats()["tasks"] == 1


def test_a_lost_run_answer_with_no_task_behind_it_is_submitted_again_once(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.engine.matching

    monkeypatch.setattr(flows.engine.matching, "FIND_RETRY_DELAYS", (0.1, 0.1))
    emulator = make_emulator()
    emulator.account.faults = emulator.account.faults.updated({"run_script": ["drop"]})  # dropped before creating
    wiro_env(emulator)
    state = run_sweep(grid_file(tmp_path, ["dropped once"]), tmp_path / "out")
    assert state.is_completed(), state.message
    stats = emulator.account.stats()
    assert (stats["counters"]["run"], stats["tasks"]) == (2, 1)
    assert stats["counters"]["list"] >= 3, "three scans found nothing before the second Run"


def test_a_row_refused_every_try_fails_unpaid_and_a_rerun_sweeps_it(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.engine.matching
    from flows.engine.driver import MAX_SUBMIT_ATTEMPTS

    monkeypatch.setattr(flows.engine.matching, "FIND_RETRY_DELAYS", (0.1, 0.1))  # a 5xx may hide a task: scans
    emulator = make_emulator()
    refusals = ["503"] * MAX_SUBMIT_ATTEMPTS
    emulator.account.faults = emulator.account.faults.updated({"run_script": refusals})
    wiro_env(emulator)
    grid, out = grid_file(tmp_path, ["refused"]), tmp_path / "out"
    state = run_sweep(grid, out)
    assert state.is_failed()
    row = manifest_rows(out)["refused"]
    assert (row["status"], row["error"], row["cost_usd"]) == ("failed", f"no task after {MAX_SUBMIT_ATTEMPTS} tries", 0)
    assert emulator.account.stats()["tasks"] == 0, "a refused Run creates nothing"
    assert run_sweep(grid, out, retry_failed=True).is_completed()
    assert manifest_rows(out)["refused"]["status"] == "succeeded"
    assert emulator.account.stats()["tasks"] == 1


def test_resume_puts_live_rows_first_within_concurrency_and_budget(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    from flows.grid import load_grid
    from flows.store.journal import Journal
    from wiro_tasks import TextToVideoInput, WiroClient

    emulator = make_emulator(queue_seconds=0.05, task_seconds=0.8, cps=Decimal("0.01"))
    wiro_env(emulator)
    new = ["new one [emulator:seconds=2]", "new two [emulator:seconds=2]"]
    grid = grid_file(tmp_path, [*new, "running a", "running b"])
    rows = {r["prompt"]: r for r in records(load_grid([grid]))}
    out = tmp_path / "out"
    journal = Journal(out)
    with WiroClient() as client:  # a previous run submitted these two, then died
        for prompt in ("running a", "running b"):
            task = client.run(TextToVideoInput(prompt=prompt, num_frames=9))
            journal.append("intent", rows[prompt]["row_id"])
            if prompt == "running a":
                journal.append("submitted", rows[prompt]["row_id"], task_id=task.task_id)
    journal.close()
    # A task holds $0.01 for each second it may run: its typical time (0.8 s, then the longest seen
    # + 20%) and the 2.25 s a Kill may take. The two running ones (0.8 s, $0.008) are held first and
    # fit in $0.07 however far along they are; then a new row (2 s, $0.02) fits, and after it the
    # last, now planned at 2.4 s, does not.
    state = run_sweep(grid, out, max_concurrency=2, budget=0.07, estimate_usd=0.008)
    manifest = manifest_rows(out)
    assert manifest["running a"]["status"] == manifest["running b"]["status"] == "succeeded"
    assert emulator.account.stats()["max_in_flight"] <= 2, "resumed tasks held their slots first"
    assert {manifest[new[0]]["status"], manifest[new[1]]["status"]} == {"succeeded", "skipped"}
    assert sum((r["cost_usd"] for r in manifest.values()), Decimal(0)) <= Decimal("0.07")
    assert state.is_failed()
    assert Counter(t["prompt"] for t in emulator.account.intervals())["running b"] == 1, "adopted, not resubmitted"


def test_cancel_in_the_prefect_ui_stops_a_run_started_from_the_command_line(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    import threading

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    emulator = make_emulator()
    wiro_env(emulator)
    grid = grid_file(tmp_path, ["forever a [emulator:hang]", "forever b [emulator:hang]"])
    finished: list[Any] = []
    runner = threading.Thread(target=lambda: finished.append(run_sweep(grid, tmp_path / "out", timeout=600)))
    runner.start()
    deadline = time.monotonic() + 60
    while emulator.account.stats()["in_flight"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    async def cancel() -> None:
        async with get_client() as client:
            from prefect.client.schemas.sorting import FlowRunSort

            # The session's server holds every test's runs: this one is among the newest.
            runs = await client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=20)
            [run] = [r for r in runs if r.parameters.get("out") == str(tmp_path / "out")]
            await client.set_flow_run_state(run.id, Cancelling(message="stopped from the UI"), force=True)

    asyncio.run(cancel())
    runner.join(timeout=60)
    assert not runner.is_alive()
    assert finished[0].is_cancelled(), finished[0]
    assert emulator.account.stats()["statuses"] == {"task_cancel": 2}
    rows = manifest_rows(tmp_path / "out")
    assert {r["status"] for r in rows.values()} == {"cancelled"}


def test_after_cancel_no_row_waiting_for_a_slot_submits(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """The account is full (code 96) and rows wait for a slot when the run is cancelled: stopping
    the running task frees the account's slot, and none of the waiting rows may take it."""
    import threading

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Cancelling

    emulator = make_emulator(concurrency_limit=1)
    wiro_env(emulator)
    grid = grid_file(tmp_path, [f"forever {n} [emulator:hang]" for n in range(3)])
    out = tmp_path / "out"
    finished: list[Any] = []
    runner = threading.Thread(target=lambda: finished.append(run_sweep(grid, out, max_concurrency=3, timeout=600)))
    runner.start()
    deadline = time.monotonic() + 60
    while emulator.account.stats()["counters"].get("run_refused_96", 0) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    async def cancel() -> None:
        async with get_client() as client:
            runs = await client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=20)
            [run] = [r for r in runs if r.parameters.get("out") == str(out)]
            await client.set_flow_run_state(run.id, Cancelling(message="stopped from the UI"), force=True)

    asyncio.run(cancel())
    runner.join(timeout=60)
    assert not runner.is_alive()
    assert finished[0].is_cancelled(), finished[0]
    refusals = emulator.account.stats()["counters"].get("run_refused_96", 0)
    time.sleep(1.2 * min(10, refusals + 1) + 0.5)  # longer than the next code-96 retry would wait
    assert emulator.account.stats()["tasks"] == 1, "only the task that ran before the cancel"
    assert emulator.account.stats()["statuses"] == {"task_cancel": 1}


@pytest.mark.parametrize("socket", ["pushed", "documented", "dropped"])
def test_the_task_socket_pushes_the_end_and_a_broken_one_falls_back_to_polls(
    socket: str, make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    from datetime import datetime

    from flows.store.journal import read_events

    frames = "documented" if socket == "documented" else "emulator"  # websocket.md's frames, or the emulator's
    emulator = make_emulator(queue_seconds=0.05, task_seconds=3.0, socket_frames=frames)
    wiro_env(emulator)
    if socket == "dropped":
        emulator.account.faults = emulator.account.faults.updated({"socket_drop_rate": 1.0})
    grid = grid_file(tmp_path, [f"socket {n}" for n in range(3)])
    # Pushed: the first poll (1 s in) finds the task running and opens the socket; the end is
    # pushed and confirmed by one more. Polling alone would poll at 1, 2.5 and 4.75 s and notice
    # the end (3.05 s) 1.7 s late. Dropped: fast polls, so the fallback's schedule shows in 3 s.
    state = run_sweep(grid, tmp_path / "out", poll_interval=0.05 if socket == "dropped" else 1.0)
    assert state.is_completed(), state.message
    ended = {t["prompt"]: t["ended_wall"] for t in emulator.account.intervals()}
    prompts = {r["row_id"]: r["prompt"] for r in manifest_rows(tmp_path / "out").values()}
    noticed = {
        prompts[e["row_id"]]: datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp()
        for e in read_events(tmp_path / "out" / "journal.jsonl")
        if e["event"] == "finished"
    }
    lags = [noticed[p] - ended[p] for p in ended]
    polls = emulator.account.stats()["counters"]["detail"] / 3
    if socket != "dropped":
        assert max(lags) < 0.8, lags
        assert polls <= 2, ("with events pushed, a poll opens the socket and one confirms the end", polls)
    else:
        assert emulator.account.stats()["counters"]["fault_socket_drop"] >= 3
        assert polls >= 8, "without events the schedule polls on"


def test_a_task_error_pushed_over_a_live_socket_keeps_its_grace(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """The socket is live, so polls are far apart (guards, 4 s, then 8 s); the task falls into
    task_error 6 s in and stays. The pushed task_error must be polled at the usual pace, so the
    task is stopped about --error-grace (1 s) later, not at the next guard poll (12 s and on)."""
    emulator = make_emulator(queue_seconds=20.0)  # [emulator:stuck]: task_error from 0.3 x queue
    wiro_env(emulator)
    grid = grid_file(tmp_path, ["stuck late [emulator:stuck]"])
    state = run_sweep(grid, tmp_path / "out", poll_interval=0.05, poll_cap=4.0, error_grace=1.0)
    assert state.is_failed()
    [row] = manifest_rows(tmp_path / "out").values()
    assert row["status"] == "failed"
    assert "stuck in task_error for 1 s" in row["error"]
    [task] = emulator.account.intervals()
    assert task["status"] == "task_cancel"
    error_at = 0.3 * 20.0
    # Waiting for the next guard poll instead would stop it 11.8 s in at the earliest (guards at
    # about 4 s and 12 s, jitter 10%, then the grace).
    assert task["ended"] - task["created"] < error_at + 1.0 + 4.0, "stopped within the grace, plus a poll or two"
    assert emulator.account.stats()["counters"]["detail"] <= 12, "and the guard polls stayed few"


def test_a_deleted_video_is_fetched_again_without_a_new_task(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator()
    wiro_env(emulator)
    grid, out = grid_file(tmp_path, ["keep me"]), tmp_path / "out"
    assert run_sweep(grid, out).is_completed()
    [row] = manifest_rows(out).values()
    (out / row["output_path"]).unlink()
    assert run_sweep(grid, out).is_completed()
    assert (out / row["output_path"]).stat().st_size == row["output_bytes"]
    assert emulator.account.stats()["tasks"] == 1
    assert emulator.account.stats()["counters"]["download"] == 2


async def _task_runs(flow_run_id: UUID, state_name: str | None = None) -> dict[str, Any]:
    """A flow run's task runs by name, as the Prefect UI lists them (optionally filtered by state
    name, as its state filter does)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateName,
    )

    named = (
        TaskRunFilter(state=TaskRunFilterState(name=TaskRunFilterStateName(any_=[state_name]))) if state_name else None
    )
    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), task_run_filter=named
        )
    return {run.name: run for run in runs}


def task_runs(flow_run_id: UUID | None, state_name: str | None = None) -> dict[str, Any]:
    assert flow_run_id is not None
    return asyncio.run(_task_runs(flow_run_id, state_name))


def flow_run_name(flow_run_id: UUID | None) -> str:
    from prefect.client.orchestration import get_client

    async def read() -> str:
        async with get_client() as client:
            return str((await client.read_flow_run(flow_run_id)).name)  # type: ignore[arg-type]

    return asyncio.run(read())


def test_rows_that_did_not_succeed_end_their_task_runs_in_states_the_ui_filters_find(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """A run that ends Failed must not show all its task runs Completed: the state filter of the
    UI lists exactly the failed rows under Failed and the timed-out ones under TimedOut. A row's
    failure is not a transient error: its task run ran once, not retried."""
    emulator = make_emulator()
    wiro_env(emulator)
    out = tmp_path / "demo-out"
    state = run_sweep(grid_file(tmp_path, ["fine", "breaks [emulator:fail]", "stalls [emulator:hang]"]), out,
                      timeout=1.5)  # fmt: skip
    assert state.is_failed()
    rows = manifest_rows(out)
    assert {p: r["status"] for p, r in rows.items()} == {
        "fine": "succeeded", "breaks [emulator:fail]": "failed", "stalls [emulator:hang]": "timed_out"}  # fmt: skip
    run_id = state.state_details.flow_run_id
    label = {p: row_label(r) for p, r in rows.items()}
    runs = task_runs(run_id)
    shown = {name: (run.state.type.value, run.state.name) for name, run in runs.items()}
    assert shown == {
        f"submit {label['fine']}": ("COMPLETED", "Completed"),
        f"wait {label['fine']}": ("COMPLETED", "Completed"),
        f"submit {label['breaks [emulator:fail]']}": ("COMPLETED", "Completed"),
        f"wait {label['breaks [emulator:fail]']}": ("FAILED", "Failed"),
        f"submit {label['stalls [emulator:hang]']}": ("COMPLETED", "Completed"),
        f"wait {label['stalls [emulator:hang]']}": ("FAILED", "TimedOut"),
    }
    failed = runs[f"wait {label['breaks [emulator:fail]']}"]
    assert rows["breaks [emulator:fail]"]["error"] in failed.state.message
    assert failed.run_count == 1, "a failed row is not a transient error: never retried"
    assert emulator.account.stats()["tasks"] == 3
    assert list(task_runs(run_id, "Failed")) == [f"wait {label['breaks [emulator:fail]']}"]
    assert list(task_runs(run_id, "TimedOut")) == [f"wait {label['stalls [emulator:hang]']}"]
    assert flow_run_name(run_id) == "demo-out · grid.csv · 3 rows", "named after what it sweeps"


def test_skipped_rows_and_failures_from_an_earlier_run_show_as_task_runs_named_after_them(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator(cps=Decimal("0.01"), task_seconds=0.2)
    wiro_env(emulator)
    grid = grid_file(tmp_path, ["broken [emulator:fail]", *(f"p{n}" for n in range(4))])
    out = tmp_path / "out"
    # Each task bills $0.002 and is held at $0.01 for each second it may run (2.25 s more than its
    # typical 0.2 s): two fit in $0.03 besides the failed one, the rest are skipped.
    first = run_sweep(grid, out, budget=0.03, estimate_usd=0.002, max_concurrency=1)
    rows = manifest_rows(out)
    skipped = {p for p, r in rows.items() if r["status"] == "skipped"}
    assert skipped, rows
    run_id = first.state_details.flow_run_id
    cancelled = task_runs(run_id, "Cancelled")
    assert set(cancelled) == {f"skipped {row_label(rows[p])}" for p in skipped}
    assert all(r.state.message.startswith("skipped: budget") for r in cancelled.values())

    second = run_sweep(grid, out, budget=0.03, estimate_usd=0.002, max_concurrency=1)
    assert manifest_rows(out)["broken [emulator:fail]"]["status"] == "failed"
    failed = task_runs(second.state_details.flow_run_id, "Failed")
    assert list(failed) == [f"failed {row_label(rows['broken [emulator:fail]'])}"], (
        "a failure carried over from the first run, not retried, still shows in the second"
    )
    assert Counter(t["prompt"] for t in emulator.account.intervals())["broken [emulator:fail]"] == 1


def test_two_sweeps_into_two_outs_both_keep_their_latest_summary_in_the_artifacts_index(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    wiro_env(make_emulator())
    grid = grid_file(tmp_path, ["one"])
    first_a = run_sweep(grid, tmp_path / "a" / "out")
    run_sweep(grid, tmp_path / "b" / "out")
    again_a = run_sweep(grid, tmp_path / "a" / "out")
    keys = [f"{artifact_scope(str(tmp_path / d / 'out'))}-summary" for d in ("a", "b")]
    assert keys[0] != keys[1], "same folder name, different OUTs"

    async def latest() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=keys))
            )
        return {str(a.key): a for a in found}

    index = asyncio.run(latest())
    assert set(index) == set(keys), "each OUT keeps its own latest summary"
    assert index[keys[0]].flow_run_id == again_a.state_details.flow_run_id != first_a.state_details.flow_run_id


def test_the_cancellation_hook_records_each_task_as_it_ended_and_writes_the_final_truth(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """A worker's cancel whose flow process could not finish (killed past the grace): the hook,
    in a process of its own, stops the tasks, records each with what it cost (a task that had
    ended on its own as it ended), then writes the manifest, the report, the summary artifacts
    and the progress the run's page shows."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.states import Cancelling

    from flows.grid import load_grid
    from flows.orchestrate.hooks import kill_on_cancel
    from flows.store.journal import Journal, read_events
    from wiro_tasks import TextToVideoInput, WiroClient

    emulator = make_emulator(task_seconds=0.3)
    wiro_env(emulator)
    grid = grid_file(tmp_path, ["hangs a [emulator:hang]", "hangs b [emulator:hang]", "quick"])
    out = tmp_path / "demo-out"
    journal = Journal(out)
    with WiroClient() as client:
        for row in records(load_grid([str(grid)])):
            inputs = {k: row[k] for k in ("prompt", "numFrames")}
            journal.append("intent", row["row_id"], inputs=inputs)
            task_id = client.run(TextToVideoInput(prompt=row["prompt"], num_frames=9)).task_id
            journal.append("submitted", row["row_id"], task_id=task_id)
    journal.close()
    while emulator.account.stats()["in_flight"] > 2:  # "quick" ends on its own; nobody waits for it
        time.sleep(0.05)

    async def a_run() -> Any:
        async with get_client() as client:
            run = await client.create_flow_run(sweep, parameters={"grid": [str(grid)], "out": str(out)})
            await client.set_flow_run_state(run.id, Cancelling(), force=True)
            await client.create_artifact(ArtifactCreate(type="progress", data=25.0, flow_run_id=run.id,
                                                        description="as the killed process left it"))  # fmt: skip
            return await client.read_flow_run(run.id)

    run = asyncio.run(a_run())
    kill_on_cancel(sweep, run, Cancelling())

    assert emulator.account.stats()["in_flight"] == 0
    ended = {e["row_id"]: e for e in read_events(out / "journal.jsonl") if e["event"] == "finished"}
    rows = manifest_rows(out)
    quick = ended[rows["quick"]["row_id"]]
    assert (quick["status"], Decimal(quick["cost"]) > 0, quick["output_url"] != "") == ("succeeded", True, True), (
        "it had ended: paid, its output there to fetch"
    )
    for prompt in ("hangs a [emulator:hang]", "hangs b [emulator:hang]"):
        assert rows[prompt]["status"] == "cancelled"
        assert rows[prompt]["cost_usd"] > 0, "killed while running: billed, and the manifest says so"
    assert rows["quick"]["cost_usd"] > 0
    assert report_cells((out / REPORT).read_text(encoding="utf-8"))[rows["hangs a [emulator:hang]"]["row_id"]] == (
        "cancelled"
    )
    found = flow_run_artifacts(run.id, out)
    assert set(found) == {"progress", "summary"}
    assert found["progress"].data == 100.0
    assert "2 cancelled" in found["summary"].data
