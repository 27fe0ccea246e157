"""What every benchmark scenario needs: an emulator in its own process, a Prefect API, timings.

The emulator runs as `wiro-sweep emulator` in a separate process, so its work (timelines,
video rendering) is not billed to the process being measured. The Prefect API is the one in
`PREFECT_API_URL` if set, else a `prefect server start` of the benchmark's own, backed by
PostgreSQL when one answers on 127.0.0.1:5432 (as in production), else SQLite.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

CLI = [sys.executable, "-m", "flows"]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    url: str, process: subprocess.Popen[bytes], seconds: float = 180, headers: dict[str, str] | None = None
) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.2)


@dataclass
class Emulator:
    """A `wiro-sweep emulator` process and the environment that points clients at it."""

    process: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def key(self) -> dict[str, str]:
        """The header the emulator's test endpoints ask for: its API key."""
        return {"x-api-key": self.env["WIRO_API_KEY"]}

    def stats(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.root}/_emulator/stats", timeout=30, headers=self.key)
        stats: dict[str, Any] = answer.raise_for_status().json()
        return stats

    def tasks(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.root}/_emulator/tasks", timeout=120, headers=self.key)
        tasks: list[dict[str, Any]] = answer.raise_for_status().json()
        return tasks


@contextmanager
def emulator(*options: str, apart: bool = False) -> Iterator[Emulator]:
    """An emulator process with fresh credentials; `options` are `wiro-sweep emulator` flags.

    `apart`: as if on another machine, as Wiro is, where the Prefect server's latency is
    measured: in a session of its own at the lowest CPU priority (nice 19, for its session and
    its threads), so that it takes only the CPU that the server, its database and the probe
    leave. (Linux shares CPU between sessions first; at nice 0, the emulator's 40% of a core was
    counted as the server's latency.) It then shares with the sweep's shards, which run at nice
    19 too, so a sweep's rows take longer than with Wiro elsewhere."""
    port = free_port()
    env = {
        "WIRO_API_KEY": f"bench-{secrets.token_hex(6)}",
        "WIRO_API_SECRET": secrets.token_hex(16),
        "WIRO_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "WIRO_SOCKET_URL": f"ws://127.0.0.1:{port}/socket/v1",
    }
    with open(os.devnull, "wb") as quiet:
        process = subprocess.Popen(
            [*(LAST_IN_LINE if apart else []), *CLI, "emulator", "--port", str(port), *options],
            env={**os.environ, **env}, stdout=quiet, stderr=quiet, start_new_session=apart,
        )  # fmt: skip
    if apart:
        last_in_line(process.pid)
    try:
        wait_for(f"http://127.0.0.1:{port}/_emulator/stats", process, 60, {"x-api-key": env["WIRO_API_KEY"]})
        yield Emulator(process, port, env)
    finally:
        process.terminate()
        process.wait(timeout=30)


LAST_IN_LINE = ["nice", "-n", "19"]  # the process and every thread it starts


def last_in_line(pid: int) -> None:
    """Lower the session that `pid` leads to the lowest CPU priority (Linux autogroups); where
    the kernel has none, its nice value alone counts."""
    with suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text("19")


@contextmanager
def pointed_at(env: dict[str, str]) -> Iterator[None]:
    """This process's environment, for the duration, says what `env` says."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def prefect_api(ui: bool = False) -> Iterator[str]:
    """The Prefect API to run flows against (see the module docstring); yields a note on it."""
    if os.environ.get("PREFECT_API_URL"):
        yield f"the given Prefect API ({os.environ['PREFECT_API_URL']})"
        return
    home = Path(tempfile.mkdtemp(prefix="wiro-bench-prefect-"))
    port = free_port()
    database, note = new_database(home)
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_API_DATABASE_CONNECTION_URL": database,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true" if ui else "false",  # bench.server_load opens it
    }
    with (home / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **env},
            stdout=log,
            stderr=log,
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/api/health", server)
        with pointed_at(env):
            yield f"a `prefect server` of its own on {note}"
    finally:
        server.terminate()
        server.wait(timeout=60)


def new_database(home: Path) -> tuple[str, str]:
    """A fresh database for a Prefect server (PostgreSQL if one answers, else SQLite in `home`), and a note on it."""
    import asyncpg

    name = f"wiro_sweep_bench_{secrets.token_hex(4)}"

    async def create() -> None:
        connection = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres", timeout=3)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return f"sqlite+aiosqlite:///{home / 'prefect.db'}", "SQLite (no PostgreSQL answered)"
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", "PostgreSQL"


def in_flight_profile(tasks: list[dict[str, Any]], limit: int) -> dict[str, float]:
    """From the emulator's task intervals, over the steady state (from the first moment the
    account is full to the last submission; the ramp and the tail cannot be full): the share of
    time exactly at the limit, the share at 90% of it or more, and the mean in flight."""
    created = sorted(t["created"] for t in tasks)
    events = sorted([(t["created"], 1) for t in tasks] + [(t["ended"], -1) for t in tasks if t["ended"]])
    level, full_at = 0, None
    for at, step in events:
        level += step
        if level >= limit and full_at is None:
            full_at = at
    if full_at is None or not created or created[-1] <= full_at:
        return {"at_limit": 0.0, "near_limit": 0.0, "mean_in_flight": 0.0}
    start, end = full_at, created[-1]
    level, last, at_limit, near, area = 0, start, 0.0, 0.0, 0.0
    for at, step in events:
        if at > start:
            span = min(at, end) - last
            if span > 0:
                area += level * span
                at_limit += span if level >= limit else 0.0
                near += span if level >= 0.9 * limit else 0.0
                last = min(at, end)
        level += step
    steady = end - start
    return {"at_limit": at_limit / steady, "near_limit": near / steady, "mean_in_flight": area / steady}


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """A right-aligned Markdown table of `rows`: each column a heading, the row's key and a format spec."""
    lines = ["| " + " | ".join(heading for heading, _, _ in columns) + " |", "| ---: " * len(columns) + "|"]
    lines += ["| " + " | ".join(format(row[key], spec) for _, key, spec in columns) + " |" for row in rows]
    return "\n".join(lines)
