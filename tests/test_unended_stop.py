"""A stopped task that shows no end within `STOP_GRACE` is recorded as it stands (`timed_out`,
counted at its rate x its seconds): adversarial pass on issue 18. When such a task goes on to
succeed (the Kill never landed), its video was paid for; a rerun must fetch it rather than leave
it unfetched (or, with --retry-failed, pay for the combination again)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flows.engine.rows import records
from flows.store.manifest import read_manifest
from wiro_tasks.emulator import EmulatorServer

from .conftest import EmulatorFactory
from .processes import wait_until
from .test_faults import run_sweep, write_grid

pytestmark = pytest.mark.usefixtures("prefect_api")


def timed_out_with_an_ignored_kill(
    prompt: str, emulator: EmulatorServer, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[EmulatorServer, Path, Path]:  # fmt: skip
    """A one-row sweep of `prompt` on `emulator` (which ignores Kills) whose task timed out, its
    stop never seen to land within `STOP_GRACE` (2 s here, 30 s in use: the rule is the same):
    the emulator, the grid and OUT."""
    import wiro_tasks.waiting

    monkeypatch.setattr(wiro_tasks.waiting, "STOP_GRACE", 2.0)
    wiro_env(emulator)
    grid = write_grid(tmp_path / "grid.csv", [(prompt, "1")])
    out = tmp_path / "out"
    run_sweep(grid, out, timeout=1, poll_interval=0.1)
    [row] = records(read_manifest(out))
    assert row["status"] == "timed_out", row
    return emulator, grid, out


def test_a_stopped_task_seen_to_succeed_later_is_fetched_on_rerun(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator, grid, out = timed_out_with_an_ignored_kill(
        "a kill that never lands", make_emulator(preview=True, task_seconds=8.0, ignore_kills=True), wiro_env,
        tmp_path, monkeypatch,
    )  # fmt: skip
    wait_until(lambda: emulator.account.intervals()[0]["status"] == "task_postprocess_end", seconds=60)
    for retry_failed in (False, True):
        run_sweep(grid, out, timeout=60, poll_interval=0.1, retry_failed=retry_failed)
        [row] = records(read_manifest(out))
        tasks = emulator.account.intervals()
        assert len(tasks) == 1, f"paid again for the combination (retry_failed={retry_failed}): {tasks}"
        assert row["status"] == "succeeded", ("its paid video is not fetched", row)
        assert (out / row["output_path"]).stat().st_size == row["output_bytes"] > 0, row


def test_a_task_never_seen_to_end_after_its_stop_is_still_stopped_by_a_later_cancel(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Such a task may still run and bill: Ctrl-C or Cancel on a later run stops it again, as it
    stops any task whose end was never seen (and the budget holds it, as it holds those)."""
    from flows.engine.stopping import kill_in_flight
    from wiro_tasks import Credentials

    emulator, _, out = timed_out_with_an_ignored_kill(
        "a kill that never lands [emulator:hang]", make_emulator(preview=True, ignore_kills=True), wiro_env,
        tmp_path, monkeypatch,
    )  # fmt: skip
    kills = emulator.account.stats()["counters"].get("kill", 0)
    assert kill_in_flight(out, Credentials.resolve) == 1, "its task is stopped again"
    assert emulator.account.stats()["counters"].get("kill", 0) > kills
