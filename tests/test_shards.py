"""Sharded sweeps without a whole server: one OUT keeps one mode, cancels reach the children,
and a child whose worker died is started again.

The child runs here are real flow runs of a `sweep-shard` deployment on the session's test
server, but no worker takes them: each test plays the worker, moving their states by hand and
holding their shard locks (`OUT/shards/<k>/.lock`) where a live child would.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
import pytest
from click.testing import CliRunner
from prefect import flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelled, Cancelling, Completed, Crashed, Pending, Running

import flows.orchestrate.children as children
from flows.cli import main
from flows.orchestrate.children import run_children
from flows.orchestrate.flow import sweep
from flows.orchestrate.hooks import kill_on_cancel
from flows.store.journal import Journal, read_events
from flows.store.locks import LOCK
from flows.store.manifest import read_manifest
from flows.store.shards import SHARDS_FILE, ShardBook, check_out_mode, shard_dir
from wiro_tasks import WiroClient
from wiro_tasks.emulator import EmulatorServer

from .conftest import API_KEY, API_SECRET, EmulatorFactory
from .processes import start, wait_until

pytestmark = pytest.mark.usefixtures("prefect_api")

PROMPTS = [f"sharded scene {n}" for n in range(6)]


def grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": PROMPTS, "numFrames": 9}).to_csv(path, index=False)
    return path


def run_sweep(grid: Path, out: Path, **params: Any) -> Any:
    params.setdefault("poll_interval", 0.05)
    return asyncio.run(sweep(grid=[str(grid)], out=str(out), return_state=True, **params))  # type: ignore[arg-type]


def run_requests(emulator: EmulatorServer) -> int:
    return int(emulator.account.stats()["counters"].get("run", 0))


def refusal(state: Any) -> str:
    assert state.is_failed(), state
    error = state.result(raise_on_failure=False)
    assert getattr(error, "exit_code", None) == 2, repr(error)
    return str(error)


# 1. One OUT, one mode.


def test_an_out_swept_in_shards_is_never_swept_unsharded(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator()
    wiro_env(emulator)
    grid, out = grid_file(tmp_path), tmp_path / "out"
    for index in (0, 1):  # the children of a 2-shard sweep, started by hand as the reviewer did
        assert run_sweep(grid, out, shards=2, shard=index).is_completed()
    assert run_requests(emulator) == len(PROMPTS)
    assert json.loads((out / SHARDS_FILE).read_text())["count"] == 2, "a child records the shard count"
    dry = CliRunner().invoke(main, ["run", str(grid), "--out", str(out), "--dry-run"])
    assert f"{len(PROMPTS)} combinations; {len(PROMPTS)} already done in {out}, 0 to submit." in dry.output, dry.output

    message = refusal(run_sweep(grid, out))
    assert str(out) in message
    assert "--shards 2" in message
    result = CliRunner().invoke(main, ["run", str(grid), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert str(out) in result.output
    assert "--shards 2" in result.output
    message = refusal(run_sweep(grid, out, shards=3, shard=0))
    assert "was swept in 2 shards" in message
    assert "--shards 2" in message

    (out / SHARDS_FILE).unlink()  # an OUT from before shards.json was written by children
    message = refusal(run_sweep(grid, out))
    assert "journals of shards 0, 1" in message
    assert run_requests(emulator) == len(PROMPTS), "no refused sweep sent a Run request"
    assert not (out / "journal.jsonl").exists()


def test_an_out_swept_unsharded_is_never_swept_in_shards(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    prefect_api: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator = make_emulator()
    wiro_env(emulator)
    grid, out = grid_file(tmp_path), tmp_path / "out"
    assert run_sweep(grid, out).is_completed()
    assert run_requests(emulator) == len(PROMPTS)

    message = refusal(run_sweep(grid, out, shards=2))  # a parent: refused before any child starts
    assert str(out) in message
    assert "without --shards" in message
    message = refusal(run_sweep(grid, out, shards=2, shard=1))  # a child
    assert "without --shards" in message
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    result = CliRunner().invoke(main, ["run", str(grid), "--out", str(out), "--shards", "2"])
    assert result.exit_code == 2, result.output
    assert str(out) in result.output
    assert "without --shards" in result.output
    assert run_requests(emulator) == len(PROMPTS), "no refused sweep sent a Run request"
    assert not (out / SHARDS_FILE).exists()
    assert not (out / "shards").exists()


def test_a_fresh_or_matching_out_is_accepted(tmp_path: Path) -> None:
    check_out_mode(tmp_path / "new", 1, None)
    check_out_mode(tmp_path / "new", 3, None)
    assert not (tmp_path / "new").exists(), "checking writes nothing; only a child claims a count"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "journal.jsonl").touch()  # created, nothing written: still fresh
    check_out_mode(tmp_path / "empty", 2, None)
    check_out_mode(tmp_path / "claimed", 2, 1)
    check_out_mode(tmp_path / "claimed", 2, 0)
    check_out_mode(tmp_path / "claimed", 2, None)
    assert json.loads((tmp_path / "claimed" / SHARDS_FILE).read_text())["count"] == 2


# Children on the test server, with the test as their worker.


@flow(name="wiro-sweep-test-parent", persist_result=False)
def fake_parent() -> None:
    """Only its runs are used: a parent whose state the test sets."""


@pytest.fixture
def deployment(prefect_api: str) -> None:
    """The `sweep-shard` deployment the parent starts children of; no worker ever takes them."""

    async def create() -> None:
        async with get_client() as client:
            flow_id = await client.create_flow_from_name("wiro-sweep")
            await client.create_deployment(flow_id, "sweep-shard", enforce_parameter_schema=False)

    asyncio.run(create())


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(children, "STALE_LOCK_SECONDS", 0.3)
    monkeypatch.setattr(children, "LOCK_SETTLE_SECONDS", 0.2)
    monkeypatch.setattr(children, "STOP_WAIT_SECONDS", 20.0)


@contextmanager
def holding(directory: Path) -> Iterator[None]:
    """Hold a shard's lock as its live child run would."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def state_type(client: PrefectClient, run_id: str) -> StateType | None:
    run = await client.read_flow_run(UUID(run_id))
    return run.state.type if run.state else None


def child_id(book: ShardBook, index: int) -> str | None:
    entry = book.runs.get(str(index))
    return entry["flow_run_id"] if entry else None


async def children_started(book: ShardBook) -> None:
    async def started() -> bool:
        return all(child_id(book, k) for k in range(book.count))

    await until(started)


class Parent:
    """A parent run's loop over `book`'s children (polling every 0.05 s), counting its polls."""

    def __init__(self, book: ShardBook, parent_run_id: UUID | None = None) -> None:
        self.book = book
        self.polls = 0
        self.task = asyncio.create_task(
            run_children(book, {}, "test", poll=0.05, parent_run_id=parent_run_id, on_poll=self._polled)
        )

    async def _polled(self) -> None:
        self.polls += 1

    async def children(self) -> list[str]:
        """The ids of the children it started, once all are."""
        await children_started(self.book)
        return [str(child_id(self.book, k)) for k in range(self.book.count)]

    async def looked_long_enough(self) -> None:
        """Long enough for the stale-lock rule to have acted: past the settle time and the grace
        by polls counted (a loaded machine polls slower), not by the clock alone."""
        start, wanted = self.polls, round((children.LOCK_SETTLE_SECONDS + children.STALE_LOCK_SECONDS) / 0.05)
        wanted += children.STALE_LOCK_POLLS + 2

        async def enough() -> bool:
            return self.polls - start >= wanted

        await until(enough)
        await asyncio.sleep(0.5)


@pytest.mark.usefixtures("deployment", "fast")
def test_a_cancelled_child_stays_cancelled_and_a_crashed_one_runs_again(tmp_path: Path) -> None:
    book = ShardBook.open(tmp_path / "out", 2, "cancel-vs-crash")

    async def scenario() -> children.ShardOutcome:
        async with get_client() as client:
            parent = Parent(book)
            first = await parent.children()
            await client.set_flow_run_state(first[0], Cancelled(message="cancelled in the UI"), force=True)
            await client.set_flow_run_state(first[1], Crashed(message="worker died"), force=True)

            async def relaunched() -> bool:
                return child_id(book, 1) not in (None, first[1])

            await until(relaunched)
            await client.set_flow_run_state(str(child_id(book, 1)), Completed(), force=True)
            outcome = await parent.task
            assert child_id(book, 0) == first[0], "the cancelled child was not started again"
            assert book.runs["0"]["launch"] == 1
            assert book.runs["1"]["launch"] == 2
            return outcome

    outcome = asyncio.run(scenario())
    assert outcome.states == {0: "Cancelled", 1: "Completed"}
    assert not outcome.cancelled

    # A new parent run (the user reruns the sweep) resumes the cancelled shard.
    book.restart()

    async def rerun() -> children.ShardOutcome:
        async with get_client() as client:
            parent = Parent(book)

            async def both_new() -> bool:
                return book.runs["0"]["launch"] == 2 and book.runs["1"]["launch"] == 3 and bool(child_id(book, 0))

            await until(both_new)
            await children_started(book)
            for index in (0, 1):
                await client.set_flow_run_state(str(child_id(book, index)), Completed(), force=True)
            return await parent.task

    assert asyncio.run(rerun()).states == {0: "Completed", 1: "Completed"}


@pytest.mark.usefixtures("deployment", "fast")
def test_a_cancelled_parent_cancels_its_children_and_starts_none_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    book = ShardBook.open(out, 2, "parent-cancel")

    async def scenario() -> children.ShardOutcome:
        async with get_client() as client:
            parent_run = await client.create_flow_run(fake_parent, state=Running())
            parent = Parent(book, parent_run.id)
            running, scheduled = await parent.children()
            with holding(shard_dir(out, 0)):  # child 0 runs on a worker; child 1 waits for one
                await client.set_flow_run_state(running, Running(), force=True)
                await client.set_flow_run_state(parent_run.id, Cancelling(message="cancelled in the UI"))

                async def asked_to_stop() -> bool:
                    # Never picked up by a worker: cancelled at once; running: asked to stop.
                    stopping = [await state_type(client, run_id) for run_id in (running, scheduled)]
                    return stopping == [StateType.CANCELLING, StateType.CANCELLED]

                await until(asked_to_stop)
                polls = parent.polls

                async def polled_on() -> bool:
                    return parent.polls >= polls + 3

                await until(polled_on)
                assert not parent.task.done(), "the parent waits for its children to stop"
                # The worker kills child 0, which stops its Wiro tasks and ends Cancelled.
                await client.set_flow_run_state(running, Cancelled(), force=True)
            outcome = await parent.task
            assert [book.runs[k]["launch"] for k in ("0", "1")] == [1, 1], "nothing started again"
            return outcome

    outcome = asyncio.run(scenario())
    assert outcome.cancelled == "cancelled in the UI"
    assert outcome.stopped == [0, 1]
    assert outcome.states == {0: "Cancelled", 1: "Cancelled"}


@pytest.mark.usefixtures("deployment", "fast")
def test_a_parent_whose_children_end_cancelled_before_it_sees_its_own_cancel_ends_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect cancels a cancelled parent's children itself: they may read Cancelled at a poll
    whose look at the parent came a moment too early. The parent still ends cancelled, with why."""
    book = ShardBook.open(tmp_path / "out", 2, "children-first")
    real = children.look
    lagged: list[Any] = []

    async def scenario() -> children.ShardOutcome:
        armed, go = asyncio.Event(), asyncio.Event()

        async def a_moment_late(client: PrefectClient, run_id: Any, *rest: Any) -> tuple[str, dict[str, Any]]:
            if armed.is_set() and not lagged and run_id is not None:
                await go.wait()
                lagged.append(run_id)
                return "", (await real(client, run_id, *rest))[1]  # the parent as it was before the cancel
            return await real(client, run_id, *rest)

        monkeypatch.setattr(children, "look", a_moment_late)
        async with get_client() as client:
            parent_run = await client.create_flow_run(fake_parent, state=Running())
            parent = Parent(book, parent_run.id)
            started = await parent.children()
            armed.set()
            await client.set_flow_run_state(parent_run.id, Cancelling(message="cancelled in the UI"))
            for child in started:
                await client.set_flow_run_state(child, Cancelled(message="cancelled with its parent"), force=True)
            go.set()
            return await parent.task

    outcome = asyncio.run(scenario())
    assert lagged, "the race was played"
    assert outcome.states == {0: "Cancelled", 1: "Cancelled"}
    assert outcome.cancelled == "cancelled in the UI"


@pytest.mark.usefixtures("deployment", "fast")
def test_a_parent_reads_itself_and_all_its_children_in_one_request_a_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four shards used to cost five flow-run reads every 2 s (each child, and the parent for a
    cancel); the Prefect server answers a person's browser too."""
    book = ShardBook.open(tmp_path / "out", 4, "one-read")
    reads: Counter[str] = Counter()
    for name in ("read_flow_run", "read_flow_runs"):
        real = getattr(PrefectClient, name)

        async def counted(self: PrefectClient, *args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            reads[_name] += 1
            return await _real(self, *args, **kwargs)

        monkeypatch.setattr(PrefectClient, name, counted)

    async def scenario() -> children.ShardOutcome:
        async with get_client() as client:
            parent_run = await client.create_flow_run(fake_parent, state=Running())
            parent = Parent(book, parent_run.id)
            started = await parent.children()
            polls, before = parent.polls, reads.copy()

            async def looked() -> bool:
                return parent.polls >= polls + 10

            await until(looked)
            looks, read = parent.polls - polls, reads - before
            assert read["read_flow_run"] == 0, "no run is read alone"
            assert looks <= read["read_flow_runs"] <= looks + 1, "one read a look (one may be under way)"
            for child in started:
                await client.set_flow_run_state(child, Completed(), force=True)
            return await parent.task

    outcome = asyncio.run(scenario())
    assert outcome.states == dict.fromkeys(range(4), "Completed")
    assert not outcome.cancelled


@pytest.mark.usefixtures("deployment", "fast")
def test_a_running_child_whose_lock_is_free_is_crashed_and_started_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    book = ShardBook.open(out, 2, "stale-lock")

    async def scenario() -> children.ShardOutcome:
        async with get_client() as client:
            parent = Parent(book)
            alive, dead = await parent.children()
            with holding(shard_dir(out, 0)):
                for run_id in (alive, dead):  # both RUNNING; only child 0 holds its lock
                    await client.set_flow_run_state(run_id, Running(), force=True)
                # Child 1 has not made its shard's directory yet: slow to start, not dead (yet).
                await parent.looked_long_enough()
                assert child_id(book, 1) == dead, "a child that never took its lock gets a long grace"
                shard_dir(out, 1).mkdir(parents=True)  # it had swept, and its lock is free: it died

                async def relaunched() -> bool:
                    return child_id(book, 1) not in (None, dead)

                await until(relaunched)
                crashed = await client.read_flow_run(UUID(dead))
                assert crashed.state is not None
                assert crashed.state.type == StateType.CRASHED
                assert "lock was free" in str(crashed.state.message)
                assert await state_type(client, alive) == StateType.RUNNING, "a child holding its lock is left alone"

                # A child a worker has not started yet holds no lock, legitimately.
                waiting = str(child_id(book, 1))
                await client.set_flow_run_state(waiting, Pending(), force=True)
                await parent.looked_long_enough()
                assert child_id(book, 1) == waiting
                assert await state_type(client, waiting) == StateType.PENDING
                for run_id in (alive, waiting):
                    await client.set_flow_run_state(run_id, Completed(), force=True)
            return await parent.task

    outcome = asyncio.run(scenario())
    assert outcome.crashed == [1]
    assert outcome.states == {0: "Completed", 1: "Completed"}


# 2. A parent cancelled in the Prefect UI.


def live_task(emulator: EmulatorServer, directory: Path, row_id: str) -> str:
    """A Wiro task in flight, journaled in `directory` as a shard's row: its id."""
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url) as wiro:
        task_id = wiro.run({"prompt": f"long scene {row_id}", "numFrames": 9}).task_id
    journal = Journal(directory)
    journal.append("intent", row_id)
    journal.append("submitted", row_id, task_id=task_id)
    journal.close()
    return task_id


@pytest.mark.usefixtures("deployment")
def test_a_parent_started_from_the_command_line_notices_cancel_and_stops_its_children(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator(task_seconds=60.0)
    wiro_env(emulator)
    grid, out = grid_file(tmp_path), tmp_path / "out"
    orphan: list[str] = []

    async def scenario() -> Any:
        run: Any = sweep(grid=[str(grid)], out=str(out), shards=2, return_state=True)
        parent: asyncio.Task[Any] = asyncio.create_task(run)
        async with get_client() as client:

            async def children() -> bool:  # both started: entries appear one by one, id-less at first
                if not (out / SHARDS_FILE).exists():
                    return False
                runs = json.loads((out / SHARDS_FILE).read_text())["runs"]
                return len(runs) == 2 and all(e.get("flow_run_id") for e in runs.values())

            await until(children)
            # Shard 1's process is gone (lock free) but its Wiro task still runs: the parent stops it.
            orphan.append(await asyncio.to_thread(live_task, emulator, shard_dir(out, 1), "row1"))
            runs = json.loads((out / SHARDS_FILE).read_text())["runs"]
            child = await client.read_flow_run(UUID(runs["0"]["flow_run_id"]))
            assert child.parent_task_run_id is not None
            parent_run_id = (await client.read_task_run(child.parent_task_run_id)).flow_run_id
            assert parent_run_id is not None
            await client.set_flow_run_state(parent_run_id, Cancelling(message="cancelled in the UI"))
            state = await parent
            for entry in runs.values():
                assert await state_type(client, entry["flow_run_id"]) == StateType.CANCELLED
            return state

    state = asyncio.run(scenario())
    assert state.is_cancelled(), state
    assert "cancelled in the UI" in str(state.message)
    assert "cancelled shard run(s) 0, 1" in str(state.message)
    assert "stopped 1 Wiro task(s)" in str(state.message)
    assert {t["id"]: t["status"] for t in emulator.account.intervals()} == {orphan[0]: "task_cancel"}
    assert len(read_manifest(out)) == len(PROMPTS), "the merged manifest is written"
    assert run_requests(emulator) == 1, "only the test's own task"


@pytest.mark.usefixtures("deployment")
def test_ctrl_c_on_a_sharded_run_from_the_command_line_ends_it_cancelled_with_its_children(
    make_emulator: EmulatorFactory, subprocess_env: Callable[[EmulatorServer], dict[str, str]], tmp_path: Path
) -> None:
    """Ctrl-C on `wiro-sweep run --shards 2` stops it as Cancel in the UI does: the parent run
    ends Cancelled (not Crashed), and so do its children. The test plays their worker."""
    emulator = make_emulator()
    grid, out, log = grid_file(tmp_path), (tmp_path / "out").resolve(), tmp_path / "log.txt"
    process = start([str(grid), "--out", str(out), "--shards", "2"], subprocess_env(emulator), log)

    def children_started() -> bool:  # entries appear one by one, id-less at first
        if not (out / SHARDS_FILE).exists():
            return False
        runs = json.loads((out / SHARDS_FILE).read_text())["runs"]
        return len(runs) == 2 and all(e.get("flow_run_id") for e in runs.values())

    wait_until(children_started, seconds=120)
    ids = [UUID(e["flow_run_id"]) for e in json.loads((out / SHARDS_FILE).read_text())["runs"].values()]
    os.killpg(process.pid, signal.SIGINT)

    async def play_the_worker() -> tuple[Any, list[StateType | None]]:
        async with get_client() as client:
            while process.poll() is None:  # a worker ends each child its parent cancels
                for child in ids:
                    if await state_type(client, str(child)) == StateType.CANCELLING:
                        await client.set_flow_run_state(child, Cancelled(message="worker stopped it"), force=True)
                await asyncio.sleep(0.2)
            first = await client.read_flow_run(ids[0])
            assert first.parent_task_run_id is not None
            parent = await client.read_task_run(first.parent_task_run_id)
            assert parent.flow_run_id is not None
            return await client.read_flow_run(parent.flow_run_id), [await state_type(client, str(c)) for c in ids]

    parent, states = asyncio.run(asyncio.wait_for(play_the_worker(), 120))
    said = log.read_text()
    assert process.returncode == 130, said[-3000:]
    assert parent.state.is_cancelled(), parent.state
    assert "stopped by Ctrl-C" in str(parent.state.message)
    assert states == [StateType.CANCELLED, StateType.CANCELLED]
    assert "Traceback" not in said, said[-3000:]
    assert "KeyboardInterrupt" not in said, said[-3000:]
    assert said.rstrip().splitlines()[-1].startswith("Interrupted: cancelled shard run(s) 0, 1"), said[-1000:]
    assert run_requests(emulator) == 0, "no worker swept a shard"


def test_cancelling_a_parent_on_a_worker_cancels_its_children_and_stops_unattended_shards(
    deployment: None,
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
) -> None:
    emulator = make_emulator(task_seconds=60.0)
    wiro_env(emulator)
    out = tmp_path / "out"
    tasks = [live_task(emulator, shard_dir(out, index), f"row{index}") for index in (0, 1)]

    async def scenario() -> list[StateType | None]:
        async with get_client() as client:
            runs: dict[str, dict[str, Any]] = {}
            for index in (0, 1):
                child = await client.create_flow_run(fake_parent, state=Running())
                runs[str(index)] = {"launch": 1, "flow_run_id": str(child.id)}
            (out / SHARDS_FILE).write_text(json.dumps({"count": 2, "key": "k", "runs": runs}))
            parent_run = await client.create_flow_run(sweep, parameters={"grid": [], "out": str(out), "shards": 2})
            with holding(shard_dir(out, 0)):  # child 0's process is alive: it stops its own tasks
                await asyncio.to_thread(kill_on_cancel, sweep, parent_run, Cancelling())
            return [await state_type(client, e["flow_run_id"]) for e in runs.values()]

    assert asyncio.run(scenario()) == [StateType.CANCELLING, StateType.CANCELLING]
    statuses = {t["id"]: t["status"] for t in emulator.account.intervals()}
    finished = {e["row_id"]: e for e in read_events(shard_dir(out, 1) / "journal.jsonl") if e["event"] == "finished"}
    assert finished["row1"]["status"] == "cancelled", "the unattended shard's task was stopped"
    assert statuses[tasks[1]] == "task_cancel"
    assert statuses[tasks[0]] != "task_cancel", "a shard whose run is alive is left to that run"
    assert not [e for e in read_events(shard_dir(out, 0) / "journal.jsonl") if e["event"] == "finished"]
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url) as wiro:
        wiro.kill(tasks[0])


def test_a_damaged_shard_book_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A truncated OUT/shards.json (a crash while it was written, a hand edit) names itself."""
    from click.testing import CliRunner

    from flows.cli import main

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "shards.json").write_text("{bad")
    grid = tmp_path / "grid.csv"
    grid.write_text("prompt\na fox\n")
    result = CliRunner().invoke(main, ["run", str(grid), "--out", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "shards.json: unreadable shard book" in result.output
    assert "Traceback" not in result.output
