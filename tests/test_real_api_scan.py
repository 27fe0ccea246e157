"""The lost-Run scan when Task/List gives neither `createtime` nor `parameters` (no document
promises them there): it reads the candidates with Task/Detail, newest first and bounded, and
when even that cannot tell, it says so, and a sweep stops submitting rather than guess."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.engine.rows import records
from flows.orchestrate.flow import sweep
from flows.store.manifest import read_manifest
from wiro_tasks import TEXT_TO_VIDEO, AsyncWiroClient, TextToVideoInput
from wiro_tasks.emulator import EmulatorServer, Faults
from wiro_tasks.scan import FindOutcome, scan_for_task

from .conftest import API_KEY, API_SECRET, NO_WAIT, EmulatorFactory

pytestmark = pytest.mark.both_modes  # each test that starts an emulator, in today's mode and the documented one
HIDDEN = "[emulator:field parameters=-]"  # Task/Detail then leaves out the task's parameters too


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def submit_and_scan(emulator: EmulatorServer, prompts: list[str], lost: int, **options: Any) -> FindOutcome:
    """Run one task per prompt, then scan for the inputs of the `lost`-th as if its answer was lost."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    async with AsyncWiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT) as client:
        for prompt in prompts:
            await client.run(TextToVideoInput(prompt=prompt))
        inputs = TextToVideoInput(prompt=prompts[lost]).to_wire()
        return await scan_for_task(client, TEXT_TO_VIDEO, dict(inputs), since, [], **options)


def created_ids(emulator: EmulatorServer) -> list[str]:
    return [row["id"] for row in emulator.account.intervals()]


@pytest.mark.anyio
async def test_a_task_list_without_parameters_is_read_with_task_detail(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(list_fields=False, task_seconds=30.0)
    outcome = await submit_and_scan(emulator, [f"row {n}" for n in range(5)], lost=2)
    assert outcome.task_ids == (created_ids(emulator)[2],)
    assert outcome.complete
    assert not outcome.blind
    # All five were made after the Run and Task/List gives no time to tell: each is read once, no more.
    assert emulator.account.counters["detail"] == 5


@pytest.mark.anyio
async def test_an_old_task_read_whole_ends_the_scan_without_reading_the_rest(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(list_fields=False, task_seconds=30.0)
    later = datetime.now(UTC) + timedelta(minutes=5)  # every task was made before the Run looked for
    outcome = await submit_and_scan(emulator, [f"row {n}" for n in range(6)], lost=0, since_server=later)
    assert outcome == FindOutcome((), complete=True)
    assert emulator.account.counters["detail"] == 1, "the newest task is older than the bound: so are the rest"


@pytest.mark.anyio
async def test_tasks_whose_inputs_no_answer_gives_make_the_scan_blind(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(list_fields=False, task_seconds=30.0)
    outcome = await submit_and_scan(emulator, [f"row {n} {HIDDEN}" for n in range(3)], lost=1)
    assert outcome.task_ids == ()
    assert not outcome.complete, "a task that may be the one was never judged: no proof that none exists"
    assert "do not give the inputs of 3 task(s)" in outcome.blind


@pytest.mark.anyio
async def test_task_detail_reads_are_bounded(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(list_fields=False, task_seconds=30.0)
    outcome = await submit_and_scan(emulator, [f"row {n}" for n in range(8)], lost=0, max_details=3)
    assert not outcome.complete
    assert "3 Task/Detail reads spent" in outcome.blind
    assert emulator.account.counters["detail"] == 3


@pytest.mark.usefixtures("prefect_api")
def test_a_sweep_whose_lost_answer_cannot_be_traced_stops_submitting_and_says_why(
    make_emulator: EmulatorFactory, wiro_env: Any, tmp_path: Path
) -> None:
    emulator = make_emulator(list_fields=False, faults=Faults(run_script=("lost",)))
    wiro_env(emulator)
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": [f"row {n} {HIDDEN}" for n in range(3)], "numFrames": 9}).to_csv(grid, index=False)
    out = tmp_path / "out"
    asyncio.run(sweep(grid=[str(grid)], out=str(out), max_concurrency=1, poll_interval=0.05, return_state=True))  # type: ignore[arg-type]
    rows = records(read_manifest(out))
    assert emulator.account.counters["run"] == 1, "nothing was submitted after the lost answer"
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert len(skipped) == 2
    assert all("a lost Run answer cannot be traced" in r["error"] for r in skipped)


@pytest.mark.anyio
async def test_a_blip_while_reading_a_candidate_is_raised_not_taken_as_blind() -> None:
    """Task/List without parameters, and Task/Detail down for a moment: the scan raises (its task
    retries it) instead of declaring it cannot judge, which would stop the whole sweep."""
    import httpx

    from wiro_tasks import RetryPolicy, WiroError

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Task/List"):
            listed = (
                [{"id": "9", "status": "task_start"}]
                if b'"start": 0' in request.content or b'"start":0' in request.content
                else []
            )
            return httpx.Response(200, json={"result": True, "errors": [], "tasklist": listed})
        return httpx.Response(503, json={"result": False, "errors": [{"code": 0, "message": "busy"}]})

    client = AsyncWiroClient("k", None, base_url="https://wiro.test/v1", transport=httpx.MockTransport(api),
                             retry=RetryPolicy(max_retries=0, backoff=0.0))  # fmt: skip
    async with client:
        with pytest.raises(WiroError) as raised:
            await scan_for_task(client, TEXT_TO_VIDEO, {"prompt": "p"}, datetime.now(UTC), [])
    assert raised.value.retryable
