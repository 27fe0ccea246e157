"""A real Prefect server (PostgreSQL-backed), a process work pool, two workers, deployments.yaml,
and a sharded sweep against the emulator: the production setup, on loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from flows.manifest import read_manifest
from flows.runner import records
from wiro_tasks.emulator import EmulatorServer

from .conftest import EmulatorFactory

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))
SHARED_LIMIT = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL database of this test's own; SQLite, said aloud, where no PostgreSQL answers."""
    import asyncpg

    name = f"wiro_sweep_it_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        message = f"NO POSTGRESQL on 127.0.0.1:5432 ({exc}); this server test runs on SQLite instead"
        if reporter is not None:
            reporter.write_line(message, yellow=True)
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('prefect-db') / 'prefect.db'}"
        return
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Stack:
    """The server and workers this module started, and how to run commands against them."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.home / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command, env=env or self.env, stdout=log, stderr=log, cwd=ROOT, start_new_session=True
            )
        self.processes.append(process)
        return process

    def run(self, command: list[str]) -> str:
        done = subprocess.run(command, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "WIRO_"))},
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    running = Stack(home, env)
    server = running.start("server", [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)])
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert server.poll() is None, running.log("server")
        assert time.monotonic() < deadline, running.log("server")
        time.sleep(0.3)
    try:
        running.run([PREFECT, "work-pool", "create", "wiro-sweep", "--type", "process"])
        running.run([PREFECT, "global-concurrency-limit", "create", "wiro-account", "--limit", str(SHARED_LIMIT)])
        deployed = running.run([PREFECT, "--no-prompt", "deploy", "--prefect-file", "deployments.yaml", "--all"])
        assert deployed.count("successfully created") == 3, deployed
        yield running
    finally:
        running.stop()


def test_sharded_sweep_on_two_workers_shares_one_account_limit(
    stack: Stack, make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    emulator: EmulatorServer = make_emulator(queue_seconds=0.1, task_seconds=1.0)
    env = {**stack.env, **emulator.env()}
    for name in ("worker-a", "worker-b"):
        stack.start(name, [PREFECT, "worker", "start", "--pool", "wiro-sweep", "--name", name, "--limit", "1"], env)
    prompts = [f"shared scene {n}" for n in range(12)]
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": prompts, "numFrames": 9}).to_csv(grid, index=False)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "flows", "run", str(grid), "--out", str(out), "--shards", "2",
               "--max-concurrency", "3", "--poll-interval", "0.2"]  # fmt: skip

    # The parent is killed once mid-sweep; its children go on; the rerun picks them up.
    first = stack.start("parent-1", command, env)
    wait_until(lambda: emulator.account.stats()["tasks"] >= 4, stack, "parent-1")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    second = stack.start("parent-2", command, env)
    assert second.wait(timeout=240) == 0, stack.log("parent-2") + stack.log("worker-a") + stack.log("worker-b")

    manifest = records(read_manifest(out))
    assert sorted(r["prompt"] for r in manifest) == sorted(prompts), "one merged manifest, every row"
    assert {r["status"] for r in manifest} == {"succeeded"}
    assert all((out / r["output_path"]).stat().st_size == r["output_bytes"] for r in manifest)
    per_prompt = Counter(t["prompt"] for t in emulator.account.intervals())
    assert per_prompt == Counter(dict.fromkeys(prompts, 1)), "every row exactly once, across shards and restarts"
    assert emulator.account.stats()["max_in_flight"] <= SHARED_LIMIT, "the shared account limit held"
    ran = {name: stack.log(name).count("submitting flow run") for name in ("worker-a", "worker-b")}
    assert all(n >= 1 for n in ran.values()), f"both workers took shards: {ran}"


def wait_until(check: Callable[[], bool], stack: Stack, log: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, stack.log(log)
        time.sleep(0.05)


def test_the_nightly_schedule_is_on_the_server(stack: Stack) -> None:
    shown = stack.run([PREFECT, "deployment", "inspect", "wiro-sweep/nightly-regression"])
    assert "0 2 * * *" in shown
    assert "'budget': 5.0" in shown
    assert shutil.which(PREFECT)
