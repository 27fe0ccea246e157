"""The Prefect UI as a person uses it, in Chromium: a real `prefect server` (PostgreSQL) with its
UI, a process worker running deployments.yaml's `adhoc-sweep`, the emulator, and the report
server (`wiro-sweep serve`) the artifacts link to. One stack for the module; each test reads what
it checks back through Prefect's client too, and leaves a screenshot in the module's directory.
"""

from __future__ import annotations

import asyncio
import csv
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest

from flows.engine.rows import records, row_label
from flows.grid import load_grid
from flows.orchestrate.artifacts import artifact_scope
from flows.view.serve import REPORT_URL_ENV, ReportServer
from wiro_tasks.emulator import EmulatorConfig, EmulatorServer

from .conftest import API_KEY, API_SECRET
from .prefect_stack import PREFECT, Stack
from .test_report import CHROMIUM, CHROMIUM_ARGS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SCREENSHOTS = Path(os.environ.get("WIRO_SWEEP_SCREENSHOTS", "/tmp/wiro-sweep-ui-screens"))


@dataclass
class UI:
    stack: Stack
    url: str
    runs: Path
    emulator: EmulatorServer
    browser: Browser

    def sweep(self, grid: Path, out: str, **params: Any) -> UUID:
        """Start the `adhoc-sweep` deployment (as the UI's Run form does); the flow run's id."""
        from prefect.client.orchestration import get_client

        async def start() -> UUID:
            async with get_client() as client:
                deployment = await client.read_deployment_by_name("wiro-sweep/adhoc-sweep")
                run = await client.create_flow_run_from_deployment(
                    deployment.id, parameters={"grid": [str(grid)], "out": str(self.runs / out), **params}
                )
                return run.id

        started: UUID = self.run(start())
        return started

    def run(self, coroutine: Any) -> Any:
        """A Prefect client call, on this stack's API, off Playwright's event loop."""

        def call() -> Any:
            with self.api():
                return asyncio.run(coroutine)

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(call).result()

    def api(self) -> Any:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: self.stack.env["PREFECT_API_URL"]})

    def final_state(self, run_id: UUID, seconds: float = 120) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            state = self.read(run_id).state
            if state is not None and state.is_final():
                return state
            assert time.monotonic() < deadline, self.stack.log("worker")[-4000:]
            time.sleep(0.5)

    def read(self, run_id: UUID) -> Any:
        from prefect.client.orchestration import get_client

        async def read() -> Any:
            async with get_client() as client:
                return await client.read_flow_run(run_id)

        return self.run(read())

    def task_runs(self, run_id: UUID) -> dict[str, Any]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        async def read() -> dict[str, Any]:
            async with get_client() as client:
                found = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            return {r.name: r for r in found}

        return dict(self.run(read()))

    def artifacts(self, run_id: UUID) -> dict[str, Any]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        async def read() -> dict[str, Any]:
            async with get_client() as client:
                found = await client.read_artifacts(
                    artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
                )
            return {str(a.key or a.type): a for a in found}

        return dict(self.run(read()))

    def page(self, path: str) -> Page:
        page = self.browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(self.url + path)
        return page


@pytest.fixture(scope="module")
def ui(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    from playwright.sync_api import sync_playwright

    runs = tmp_path_factory.mktemp("runs")
    stack = Stack(tmp_path_factory.mktemp("prefect-ui-home"), database_url, PREFECT_UI_ENABLED="true")
    config = EmulatorConfig(api_key=API_KEY, api_secret=API_SECRET, queue_seconds=0.05, task_seconds=1.0)
    with EmulatorServer(config) as emulator, ReportServer([runs]) as reports, sync_playwright() as playwright:
        try:
            stack.serve()
            stack.deploy(account_limit=5)
            worker_env = {
                **stack.env,
                **emulator.env(),
                REPORT_URL_ENV: reports.url,
                "PREFECT_WORKER_QUERY_SECONDS": "1",
            }
            stack.start("worker", [PREFECT, "worker", "start", "--pool", "wiro-sweep", "--limit", "1"], worker_env)
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            yield UI(stack, stack.env["PREFECT_API_URL"].removesuffix("/api"), runs, emulator, browser)
            browser.close()
        finally:
            stack.stop()


def grid(tmp_path: Path, prompts: list[str]) -> Path:
    path = tmp_path / "grid.csv"
    path.write_text("prompt,numFrames\n" + "".join(f'"{p}",9\n' for p in prompts))
    return path


def test_the_run_page_shows_each_row_as_it_ended_and_its_artifact_opens_the_report_and_a_video_plays(
    ui: UI, tmp_path: Path
) -> None:
    prompts = ["a red fox", "a paper boat", "a lighthouse [emulator:fail]", "a hummingbird [emulator:hang]"]
    path = grid(tmp_path, prompts)
    run_id = ui.sweep(path, "demo-out", axes={"seed": ["1", "2"]}, timeout=3, poll_interval=0.2)
    state = ui.final_state(run_id)
    assert state.is_failed()
    assert state.message.startswith("4 of 8 rows succeeded; 2 failed, 2 timed_out")
    rows = {(r["prompt"], r["seed"]): r for r in records(load_grid([str(path)], {"seed": ["1", "2"]}))}
    label = {key: row_label(row) for key, row in rows.items()}
    runs = ui.task_runs(run_id)
    assert {n: r.state.name for n, r in runs.items() if not r.state.is_completed()} == {
        **{f"wait {label[(prompts[2], s)]}": "Failed" for s in ("1", "2")},
        **{f"wait {label[(prompts[3], s)]}": "TimedOut" for s in ("1", "2")},
    }, "read back through Prefect's client"
    assert ui.read(run_id).name == "demo-out · grid.csv · 8 rows"

    page = ui.page(f"/runs/flow-run/{run_id}")
    page.get_by_text("demo-out · grid.csv · 8 rows").first.wait_for()
    page.wait_for_timeout(1500)  # the timeline draws
    page.screenshot(path=str(SCREENSHOTS / "flow-run.png"))
    page.locator("li.p-tab#task-runs").click()
    page.get_by_text("16 Task runs").first.wait_for()
    states = page.locator(".state-name-select button").first
    states.focus()
    page.keyboard.press("ArrowDown")  # the UI's state filter
    page.locator(".p-select-option", has=page.get_by_text("Failed", exact=True)).first.click()
    page.keyboard.press("Escape")
    listed = page.locator(".state-list-item__name a")
    expected = sorted(f"wait {label[(prompts[2], s)]}" for s in ("1", "2"))
    page.wait_for_function("n => document.querySelectorAll('.state-list-item__name a').length === n", arg=2)
    assert sorted(listed.all_inner_texts()) == expected, "the state filter lists exactly the failed rows"
    page.screenshot(path=str(SCREENSHOTS / "task-runs-failed.png"))

    scope = artifact_scope(str(ui.runs / "demo-out"))
    page.locator("li.p-tab#artifacts").click()
    card = page.get_by_text(f"{scope}-summary", exact=True)
    card.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "artifacts.png"))
    assert set(ui.artifacts(run_id)) == {f"{scope}-summary", "progress"}, "one summary card, and the progress"
    assert ui.artifacts(run_id)[f"{scope}-summary"].description
    card.click()
    link = page.locator("a[href$='report.html']")
    link.wait_for()
    with page.context.expect_page() as opened:
        link.click()
    report = opened.value
    report.wait_for_load_state()
    assert report.url.endswith(f"{ui.runs / 'demo-out'}/report.html"), report.url
    assert report.locator("article.cell").count() == 8
    video = report.locator("video").first
    video.scroll_into_view_if_needed()
    video.evaluate("v => v.play()")
    report.wait_for_function("v => v.readyState >= 2 && v.currentTime > 0", arg=video.element_handle(), timeout=15_000)
    assert video.evaluate("v => v.currentSrc").startswith(report.url.rsplit("/", 1)[0] + "/videos/")
    report.evaluate("document.querySelectorAll('video').forEach(v => v.pause())")
    report.screenshot(path=str(SCREENSHOTS / "report.png"))
    page.close()
    report.close()

    # A second sweep into another OUT: both keep their latest summary in the Artifacts index.
    (tmp_path / "other").mkdir()
    other = ui.sweep(grid(tmp_path / "other", ["one more"]), "other-out", poll_interval=0.2)
    assert ui.final_state(other).is_completed()
    index = ui.page("/artifacts")
    for key in (f"{scope}-summary", f"{artifact_scope(str(ui.runs / 'other-out'))}-summary"):
        index.get_by_text(key, exact=True).wait_for()
    index.screenshot(path=str(SCREENSHOTS / "artifacts-index.png"))
    index.close()


def test_cancel_in_the_ui_leaves_the_manifest_report_and_summary_as_the_sweep_ended(ui: UI, tmp_path: Path) -> None:
    prompts = ["stop me [emulator:hang]", "stop me too [emulator:hang]", "quick"]
    before = ui.emulator.account.stats()["tasks"]  # the emulator serves the whole module
    run_id = ui.sweep(grid(tmp_path, prompts), "cancel-out", poll_interval=0.2)
    deadline = time.monotonic() + 120
    while not (ui.emulator.account.stats()["in_flight"] == 2 and ui.emulator.account.stats()["tasks"] == before + 3):
        assert time.monotonic() < deadline, ui.stack.log("worker")[-3000:]
        time.sleep(0.2)
    time.sleep(1.0)  # "quick" has ended and been saved
    page = ui.page(f"/runs/flow-run/{run_id}")
    page.get_by_role("button", name="Cancel").first.click()
    page.locator("[role=dialog]").get_by_role("button", name="Confirm").click()
    state = ui.final_state(run_id)
    assert state.is_cancelled(), state
    page.reload()
    page.locator("li.p-tab#artifacts").click()
    page.get_by_text("Cancelled").first.wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SCREENSHOTS / "cancelled-artifacts.png"))
    page.close()

    out = ui.runs / "cancel-out"
    with (out / "manifest.csv").open() as handle:
        manifest = {r["prompt"]: r for r in csv.DictReader(handle)}
    assert {p: r["status"] for p, r in manifest.items()} == dict(
        zip(prompts, ["cancelled", "cancelled", "succeeded"], strict=True)
    )
    assert all(float(manifest[p]["cost_usd"]) > 0 for p in prompts[:2]), "with what they cost"
    assert ui.emulator.account.stats()["in_flight"] == 0
    report = (out / "report.html").read_text()
    assert report.count('data-status="cancelled"') == 2
    found = ui.artifacts(run_id)
    scope = artifact_scope(str(out))
    assert "1 of 3 rows succeeded; 2 cancelled" in found[f"{scope}-summary"].data
    assert found["progress"].data == 100.0
    runs = ui.task_runs(run_id)
    assert sorted(r.state.name for n, r in runs.items() if n.startswith("wait ")) == [
        "Cancelled", "Cancelled", "Completed"], "no Crashed task runs: each as its row ended"  # fmt: skip
    log = ui.stack.log("worker")
    assert "TerminationSignal" not in log
    assert "Finished in state Running()" not in log
