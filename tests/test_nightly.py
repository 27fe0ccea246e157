"""The nightly deployment's flow on a real Prefect engine: tonight against the night before.

Two emulated nights (model version 1, then 2: one prompt rendered with pixel noise, one redrawn,
one failing, one three times slower), swept by the real flow over loopback; the artifact and the
`wiro-sweep.regression` event are read back through Prefect's API.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
import pytest

from flows.orchestrate.artifacts import artifact_scope
from flows.orchestrate.nightly import EVENT, find_previous
from flows.view.compare import COMPARE_HTML, COMPARE_PARQUET
from wiro_tasks.emulator.config import Faults
from wiro_tasks.emulator.versions import drift
from wiro_tasks.inputs import TEXT_TO_VIDEO, model_spec

from .conftest import EmulatorFactory
from .test_sweep import flow_run_artifacts, run_sweep

pytestmark = pytest.mark.usefixtures("prefect_api")
KINDS = ("same", "noise", "redraw", "fail", "slow")


def prompts_changed_by(version: str) -> dict[str, str]:
    """A prompt for each thing version `version` may do to a task, found by the emulator's own rule."""
    found: dict[str, str] = {}
    n = 0
    while len(found) < len(KINDS):
        prompt = f"a nightly regression prompt, number {n}"
        inputs = model_spec(TEXT_TO_VIDEO).validate({"prompt": prompt, "seed": "1", "numFrames": 9},
                                                     allow_unknown=True)  # fmt: skip
        found.setdefault(drift(Faults(model_version=version), TEXT_TO_VIDEO, inputs).kind, prompt)
        n += 1
    return found


def grid(tmp_path: Path, prompts: list[str]) -> Path:
    path = tmp_path / "nightly.csv"
    pd.DataFrame({"prompt": prompts, "numFrames": 9, "seed": "1"}).to_csv(path, index=False)
    return path


def events_about(pattern: Path, timeout: float = 20.0) -> list[Any]:
    """`wiro-sweep.regression` events for the OUT `pattern`, as the Prefect API has them (they arrive
    asynchronously). Their resource reads as the OUT's artifact keys do: `wiro-sweep.out.runs-nightly`."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    about = EventResourceFilter(id=[f"wiro-sweep.out.{artifact_scope(str(pattern))}"])
    wanted = EventFilter(event=EventNameFilter(name=[EVENT]), resource=about)

    async def read() -> list[Any]:
        async with get_client() as client:
            page = await client.read_events(filter=wanted, limit=50)  # its default (100) is over the server's cap
        return list(page.events)

    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(read())
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def flow_run(flow_run_id: UUID | None) -> Any:
    from prefect.client.orchestration import get_client

    assert flow_run_id is not None

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_flow_run(flow_run_id)

    return asyncio.run(read())


def test_the_nightly_flow_compares_with_the_night_before_publishes_it_and_emits_the_event(
    make_emulator: EmulatorFactory, wiro_env: Any, tmp_path: Path
) -> None:
    emulator = make_emulator()
    wiro_env(emulator)
    prompts = prompts_changed_by("2")
    nightly = grid(tmp_path, [prompts[k] for k in KINDS])
    runs = tmp_path / "runs"
    before = run_sweep(nightly, runs / "nightly-2000-01-02")
    assert before.is_completed(), before.message
    shutil.copytree(runs / "nightly-2000-01-02", runs / "nightly-2000-01-01")
    shutil.copytree(runs / "nightly-2000-01-02", runs / "nightly-2999-12-31")  # a later night is no baseline
    (runs / "nightly-2000-01-03").mkdir()  # a night whose sweep never started: no manifest

    emulator.account.faults = emulator.account.faults.updated({"model_version": "2"})
    state = run_sweep(nightly, runs / "nightly-{date}", baseline="previous")
    tonight = find_previous(str(runs / "nightly-{date}"), runs / "nightly-2999-12-31")
    assert tonight is not None
    assert tonight.name not in ("nightly-2000-01-02", "nightly-2999-12-31"), "tonight's own OUT, today's date"

    assert state.is_failed()
    expected = "2 of 5 rows regressed, 0 fixed, 1 changed, 2 unchanged (against nightly-2000-01-02)"
    assert state.message.startswith(expected), state.message
    assert "4 of 5 rows succeeded; 1 failed" in state.message, "the sweep's own counts follow"
    assert flow_run(state.state_details.flow_run_id).state.message == state.message, "as the API has it"

    rows = {r["prompt"]: r for r in pd.read_parquet(tonight / COMPARE_PARQUET).to_dict("records")}
    kinds = {kind: rows[prompts[kind]] for kind in KINDS}
    assert kinds["same"]["change"] == "identical"
    assert kinds["noise"]["change"] == "similar"
    assert kinds["noise"]["psnr_db"] > 35
    assert kinds["redraw"]["change"] == "changed"
    assert kinds["redraw"]["psnr_db"] < 20
    assert (kinds["fail"]["change"], kinds["fail"]["status_current"]) == ("regressed", "failed")
    assert kinds["slow"]["change"] == "regressed"
    assert "elapsed 0.2 s -> 0.6 s (x3.0, over x2)" in kinds["slow"]["note"]

    artifacts = flow_run_artifacts(state.state_details.flow_run_id)
    text = artifacts["compare-nightly"].data
    assert text.startswith(f"# Nightly compare: {tonight.name} against nightly-2000-01-02")
    assert f"**{expected.removesuffix(' (against nightly-2000-01-02)')}.**" in text
    assert f"[compare.html]({(tonight / COMPARE_HTML).as_uri()})" in text
    table = [line for line in text.splitlines() if line.startswith("| regressed") or line.startswith("| changed")]
    assert len(table) == 3
    assert any(prompts["fail"] in line and "succeeded → failed" in line for line in table)
    assert any(prompts["redraw"] in line for line in table)
    header = next(line for line in text.splitlines() if line.startswith("| change |"))
    assert header.startswith("| change | what | status |"), "what changed comes first, on screen"
    slow = next(line for line in table if prompts["slow"] in line)
    assert slow.startswith("| regressed | elapsed 0.2 s -&gt; 0.6 s"), slow

    [event] = events_about(runs / "nightly-{date}")
    assert event.resource.id == "wiro-sweep.out.runs-nightly", "readable, no absolute path"
    assert event.resource.name == tonight.name
    assert event.payload["regressed"] == 2
    assert (event.payload["changed"], event.payload["identical"], event.payload["similar"]) == (1, 1, 1)
    assert event.payload["baseline"] == str(runs / "nightly-2000-01-02")
    assert event.payload["compare_html"] == (tonight / COMPARE_HTML).as_uri()
    assert f"prefect.flow-run.{state.state_details.flow_run_id}" in {r.id for r in event.related}


def test_the_first_night_says_so_and_a_quiet_night_passes(
    make_emulator: EmulatorFactory, wiro_env: Any, tmp_path: Path
) -> None:
    wiro_env(make_emulator())
    nightly = grid(tmp_path, ["a quiet lake at dawn", "a windmill turning slowly"])
    pattern = tmp_path / "runs" / "quiet-{date}"
    first = run_sweep(nightly, pattern, baseline="previous")
    assert first.is_completed(), first.message
    [tonight] = (tmp_path / "runs").iterdir()
    said = flow_run_artifacts(first.state_details.flow_run_id)["compare-quiet"].data
    assert "nothing to compare on this first night" in said
    assert not (tonight / COMPARE_HTML).exists()

    again = run_sweep(nightly, tmp_path / "runs" / "quiet-copy", baseline=str(tonight))
    assert again.is_completed(), again.message
    result = again.result()
    assert result["compare"]["identical"] == 2
    assert result["compare"]["regressed"] == 0
    said = flow_run_artifacts(again.state_details.flow_run_id)["compare-quiet-copy"].data
    assert "**0 of 2 rows regressed, 0 fixed, 0 changed, 2 unchanged.**" in said
    assert events_about(tmp_path / "runs" / "quiet-copy", timeout=3.0) == []

    missing = run_sweep(nightly, tmp_path / "runs" / "quiet-copy", baseline=str(tmp_path / "nowhere"))
    assert missing.is_failed()
    nowhere = tmp_path / "nowhere"
    assert missing.message == f"compare with {nowhere} failed: BASELINE {nowhere}: no such folder"


def test_the_nightly_deployment_compares_with_the_previous_night() -> None:
    import yaml

    from .test_deployments import ROOT

    [nightly] = [d for d in yaml.safe_load((ROOT / "deployments.yaml").read_text())["deployments"]
                 if d["name"] == "nightly-regression"]  # fmt: skip
    assert nightly["parameters"]["baseline"] == "previous"
    assert "{date}" in nightly["parameters"]["out"], "so the previous night can be found"


def test_a_night_killed_mid_sweep_is_no_baseline(tmp_path: Path) -> None:
    """A night whose worker died leaves rows pending or running: the night before it is the baseline,
    else every later night would fail its compare."""
    from flows.store.manifest import MANIFEST_PARQUET, read_manifest, write_manifest

    from .nights import Row, night

    runs = tmp_path / "runs"
    night(runs / "nightly-2000-01-01", [Row("a fox"), Row("a boat")])
    manifest = night(runs / "nightly-2000-01-02", [Row("a fox"), Row("a boat")])
    pattern = str(runs / "nightly-{date}")
    assert find_previous(pattern, runs / "nightly-2000-01-03") == (runs / "nightly-2000-01-02").resolve()
    write_manifest(runs / "nightly-2000-01-02", manifest.assign(status=["succeeded", "running"]))
    assert set(read_manifest(runs / "nightly-2000-01-02")["status"]) == {"succeeded", "running"}
    assert find_previous(pattern, runs / "nightly-2000-01-03") == (runs / "nightly-2000-01-01").resolve()
    (runs / "nightly-2000-01-01" / MANIFEST_PARQUET).write_bytes(b"not parquet")
    assert find_previous(pattern, runs / "nightly-2000-01-03") is None


def test_a_night_whose_every_row_was_cancelled_or_skipped_is_no_baseline(tmp_path: Path) -> None:
    """A night cancelled before any row ran compares as every row 'fixed' tonight: the last night
    with at least one row that ran (succeeded, failed or timed out) is the baseline."""
    from .nights import Row, night

    runs = tmp_path / "runs"
    night(runs / "nightly-2000-01-01", [Row("a fox"), Row("a boat", status="failed")])
    night(runs / "nightly-2000-01-02", [Row("a fox", status="cancelled"), Row("a boat", status="skipped")])
    night(runs / "nightly-2000-01-03", [Row("a fox", status="cancelled"), Row("a boat", status="cancelled")])
    pattern = str(runs / "nightly-{date}")
    assert find_previous(pattern, runs / "nightly-2000-01-04") == (runs / "nightly-2000-01-01").resolve()
    night(runs / "nightly-2000-01-02", [Row("a fox", status="cancelled"), Row("a boat", status="timed_out")])
    assert find_previous(pattern, runs / "nightly-2000-01-04") == (runs / "nightly-2000-01-02").resolve()


def test_an_out_per_run_finds_the_previous_night_too(tmp_path: Path) -> None:
    """`runs/adhoc-{date}-{run}` (one OUT per flow run) still has a previous night: `{run}` matches
    any run's id, where it used to be looked for as a folder literally named `{run}`."""
    from .nights import Row, night

    runs = tmp_path / "runs"
    night(runs / "adhoc-2000-01-01-1a2b3c4d", [Row("a fox"), Row("a boat")])
    night(runs / "adhoc-2000-01-02-5e6f7a8b", [Row("a fox"), Row("a boat", status="cancelled")])
    pattern = str(runs / "adhoc-{date}-{run}")
    tonight = runs / "adhoc-2000-01-03-0c0d0e0f"
    assert find_previous(pattern, tonight) == (runs / "adhoc-2000-01-02-5e6f7a8b").resolve()
