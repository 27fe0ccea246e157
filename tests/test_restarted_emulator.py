"""An emulator restarted on the same port is the same account at the same API: its task ids must
not start again where the last one's did, or the claims and journals of earlier sweeps hold
the new tasks' ids, and every row pays twice (issue 18, "Smaller"; issue 17's `--emulator`).

Each emulator is `wiro-sweep emulator` in a process of its own, one after the other on one
port, with the sweeps' claims in one registry (the `WIRO_SWEEP_STATE` of the test); the bill is
the emulator's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import wiro_tasks.emulator.state
from flows.store.journal import read_events
from flows.store.manifest import read_manifest
from wiro_tasks.emulator import EmulatorServer

from .conftest import API_KEY, API_SECRET, EmulatorFactory, free_port
from .processes import wait_until
from .test_sweep import run_sweep

pytestmark = pytest.mark.usefixtures("prefect_api")
KEY = {"x-api-key": API_KEY}  # the emulator's own endpoints want its key


@contextmanager
def emulator_process(port: int, log: Path) -> Iterator[str]:
    """`wiro-sweep emulator --port PORT` until the block ends; yields its root URL."""
    env = {**os.environ, "WIRO_API_KEY": API_KEY, "WIRO_API_SECRET": API_SECRET}
    command = [sys.executable, "-m", "flows", "emulator", "--port", str(port), "--queue-seconds", "0.05",
               "--task-seconds", "0.2", "--preview"]  # fmt: skip
    with log.open("ab") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=handle, start_new_session=True)
    root = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{root}/_emulator/stats", headers=KEY, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, seconds=60)
        yield root
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def tasks_of(root: str) -> list[dict[str, Any]]:
    """Every task this emulator made (its bill: one line per task)."""
    tasks: list[dict[str, Any]] = httpx.get(f"{root}/_emulator/tasks", headers=KEY, timeout=10).json()
    return tasks


def grid(path: Path, count: int) -> Path:
    pd.DataFrame({"prompt": [f"a restarted scene {n}" for n in range(count)], "numFrames": 9}).to_csv(path, index=False)
    return path


def test_a_restarted_emulator_never_gives_an_id_twice_and_each_row_pays_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, log = free_port(), tmp_path / "emulators.log"
    for name, value in {"WIRO_API_KEY": API_KEY, "WIRO_API_SECRET": API_SECRET,
                        "WIRO_BASE_URL": f"http://127.0.0.1:{port}/v1",
                        "WIRO_SOCKET_URL": f"ws://127.0.0.1:{port}/socket/v1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    four = grid(tmp_path / "four.csv", 4)

    with emulator_process(port, log) as first:
        assert run_sweep(four, tmp_path / "a").is_completed()
        first_ids = {t["id"] for t in tasks_of(first)}
    assert len(first_ids) == 4

    with emulator_process(port, log) as second:  # the same port: the same account, the same claims
        b = run_sweep(four, tmp_path / "b")
        second_tasks = tasks_of(second)
    assert b.is_completed(), b.message
    assert len(second_tasks) == 4, f"one task per row, not {len(second_tasks)}: {second_tasks}"
    assert not first_ids & {t["id"] for t in second_tasks}, "no id given twice"
    assert all(t["id"].isdigit() for t in second_tasks), "numeric strings, as Wiro's"

    # Issue 17: OUT a resumed, two rows more, on a fresh emulator (as `--emulator` starts one).
    with emulator_process(port, log) as third:
        resumed = run_sweep(grid(tmp_path / "six.csv", 6), tmp_path / "a")
        third_tasks = tasks_of(third)
    assert resumed.is_completed(), resumed.message
    assert len(third_tasks) == 2, f"the two new rows, once each: {third_tasks}"
    assert (read_manifest(tmp_path / "a")["status"] == "succeeded").all()
    said = [str(e.get("error", "")) for e in read_events(tmp_path / "a" / "journal.jsonl")]
    assert not [s for s in said if "another row holds" in s], said


def test_a_claim_on_a_reused_id_does_not_block_the_task_that_has_it_now(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that does start its ids again (as this emulator did): OUT a's claims name ids that
    OUT b's new tasks now have. A claim records which task it was for (its socket token, hashed),
    so one whose id names another task now no longer blocks: each row still pays once."""
    # Ids one more per task from 1 in every emulator (as before they followed the clock).
    monkeypatch.setattr(wiro_tasks.emulator.state, "next_task_id", lambda last: last + 1)
    four = grid(tmp_path / "four.csv", 4)
    first = make_emulator()
    wiro_env(first)
    assert run_sweep(four, tmp_path / "a").is_completed()
    first_ids = {t["id"] for t in first.account.intervals()}
    first.stop()

    second = EmulatorServer(first.config, port=first.port)  # the same API and key: the same account and claims
    with second:
        wiro_env(second)
        b = run_sweep(four, tmp_path / "b")
        second_tasks = second.account.intervals()
    assert b.is_completed(), b.message
    assert {t["id"] for t in second_tasks} == first_ids, "the ids were given again"
    assert len(second_tasks) == 4, f"one task per row, not {len(second_tasks)}"
    assert (read_manifest(tmp_path / "b")["status"] == "succeeded").all()
    notes = [str(e.get("error", "")) for e in read_events(tmp_path / "b" / "journal.jsonl") if e["event"] == "note"]
    assert len([n for n in notes if "that claim was taken over" in n]) == 4, notes
