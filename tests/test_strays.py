"""A stray: a task this sweep paid for that no row adopted. It is never lost: journaled with its
row and cost, counted in the bill and the budget, its video saved under OUT/strays, named in the
summary, and left alone (kept, never fetched again) by a rerun.

The test runs the real `sweep` flow on the Prefect test harness against the emulator over
loopback; the emulator's own bill and records are the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from flows.engine.rows import records
from flows.store.journal import JOURNAL, read_events
from flows.store.manifest import read_manifest
from wiro_tasks import check_mp4
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.config import Faults

from .conftest import EmulatorFactory
from .test_faults import run_sweep, tasks_by_combination, write_grid
from .test_sweep import flow_run_artifacts

pytestmark = pytest.mark.usefixtures("prefect_api", "quick_scans")


@pytest.fixture
def wiro_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request the process sends, as its URL and body."""
    sent: list[str] = []
    send = httpx.AsyncClient.send

    async def recorded(self: httpx.AsyncClient, request: httpx.Request, *a: Any, **k: Any) -> httpx.Response:
        sent.append(f"{request.url} {request.content.decode(errors='replace')}")
        return await send(self, request, *a, **k)

    monkeypatch.setattr(httpx.AsyncClient, "send", recorded)
    return sent


def summary_text(state: Any, out: Path) -> str:
    return str(flow_run_artifacts(state.state_details.flow_run_id, out)["summary"].data)


SCRIPTS = {
    "found once the row is done": ("unlisted",),  # the second Run is answered: one more scan finds it
    "found by the next lost answer's scan": ("unlisted", "lost"),  # that scan lists both tasks
}


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_a_paid_task_no_row_adopted_is_saved_counted_and_kept(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    wiro_requests: list[str],
    script: tuple[Any, ...],
) -> None:
    """The fox's first Run answer is lost while Task/List lags behind (its task is listed only
    once the next Run comes), so three scans find nothing and the fox is submitted again: two
    paid tasks for one row. The one the row did not adopt is this sweep's own: its bill is in the
    OUT's total, its video is saved, the summary names it, and a rerun asks nothing about it.
    Before, it was billed and in no total, no file and no summary."""
    emulator = make_emulator(preview=True, faults=Faults(run_script=script))
    wiro_env(emulator)
    grid = write_grid(tmp_path / "grid.csv", [("a stray fox", "1"), ("a plain owl", "1")])
    out = tmp_path / "out"
    state = run_sweep(grid, out, max_concurrency=1, poll_interval=0.05)
    assert state.is_completed(), state.message

    tasks = tasks_by_combination(emulator)
    rows = {r["prompt"]: r for r in records(read_manifest(out))}
    assert {r["status"] for r in rows.values()} == {"succeeded"}
    assert len(tasks[("a stray fox", "1")]) == 2, tasks
    (stray,) = set(tasks[("a stray fox", "1")]) - {rows["a stray fox"]["task_id"]}
    billed = Decimal(emulator.account.stats()["billed"])
    total = sum((r["cost_usd"] for r in rows.values()), Decimal(0))
    assert total == billed, f"the OUT counts ${total}, the emulator billed ${billed}"

    video = out / "strays" / f"{stray}.mp4"
    assert video.is_file(), "the stray's video is saved"
    check_mp4(video)
    with av.open(str(video)) as container:
        assert next(container.decode(video=0)).width > 0, "a real video"
    events = read_events(out / JOURNAL)
    (found,) = [e for e in events if e["event"] == "stray"]
    sought = any(e["event"] == "strays_sought" for e in events)
    assert sought == (script == ("unlisted",)), "found by the scan meant to find it"
    assert (found["task_id"], found["row_id"]) == (stray, rows["a stray fox"]["row_id"])
    assert f"task {stray}" in summary_text(state, out)
    saved = video.read_bytes()

    wiro_requests.clear()
    again = run_sweep(grid, out, max_concurrency=1, poll_interval=0.05)
    assert again.is_completed(), again.message
    host = httpx.URL(emulator.base_url).netloc.decode()
    asked = [r for r in wiro_requests if host in r.split(" ", 1)[0] and "/Tool/Detail" not in r]
    assert not asked, f"a rerun of a finished OUT asked Wiro (the stray included): {asked}"
    assert video.read_bytes() == saved, "kept as it was"
    assert f"task {stray}" in summary_text(again, out)
    assert sum((r["cost_usd"] for r in records(read_manifest(out))), Decimal(0)) == billed
    assert len(emulator.account.intervals()) == 3, "nothing more paid"
