"""Shared fixtures: no real credentials ever, and emulators on loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wiro_tasks import PollSchedule, RetryPolicy, WiroClient
from wiro_tasks.emulator import EmulatorConfig, EmulatorServer
from wiro_tasks.emulator.config import DOCUMENTED

# The modules that take longest, run first: test.sh hands whole modules to workers in this order
# (`--no-loadscope-reorder`; xdist's own order is by test count, which put test_ui, test_server and
# test_bench, 1-4 tests each, last). The rest keep their file order. Seconds are each module alone
# (`pytest -n 0 --durations`, wall / CPU with its subprocesses) on a 2-core machine shared with
# other work: only their order matters here.
LONGEST_FIRST = (
    "test_server.py",  # ~300 s / 120 CPU-s: a Prefect server, two workers per test, sharded sweeps
    "test_faults.py",  # ~290 s / 120 CPU-s: fault matrix, SIGKILLs, a full disk, budgets, clocks (+~80 s: both_modes)
    "test_cli_run.py",  # ~250 s / 65 CPU-s: `wiro-sweep run` killed and resumed
    "test_sweep.py",  # ~210 s / 50 CPU-s
    "test_secrets.py",  # ~180 s / 35 CPU-s
    "test_bench.py",  # ~170 s / 55 CPU-s in one test
    "test_i2v_sweep.py",  # ~165 s / 40 CPU-s: image sweeps, two SIGKILLs
    "test_ui.py",  # ~155 s / 60 CPU-s: a Prefect server with its UI, a worker, Chromium
    "test_hostile.py",  # ~130 s / 35 CPU-s
    "test_shards.py",  # ~110 s / 30 CPU-s
    "test_downloads.py",  # ~95 s / 25 CPU-s
    "test_bad_inputs.py",  # ~90 s / 25 CPU-s
    "test_nightly.py",  # ~90 s / 25 CPU-s
    "test_emulator.py",  # ~80 s / 15 CPU-s
    "test_report.py",  # ~60 s / 10 CPU-s
)

API_KEY = "test-key-0001"
API_SECRET = "test-secret-do-not-leak-7f3a9c"
FAST_POLL = PollSchedule(first=0.02, factor=1.5, cap=0.1)
NO_WAIT = RetryPolicy(max_retries=4, backoff=0.0)
# WIRO_EMULATOR_MODE=documented: every test's emulator answers as Wiro's documents at their strictest
EMULATOR_MODE = DOCUMENTED if os.environ.get("WIRO_EMULATOR_MODE") == "documented" else {}
# A test marked `both_modes` (the fault and money tests) runs once in each: today's defaults, and
# the strictest documented mode (bare stop answers, kills unbilled, no undocumented Task/List fields).
EMULATOR_MODES: dict[str, dict[str, Any]] = {"today": {}, "documented": DOCUMENTED}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Runs each `both_modes` test that starts emulators once per mode of `EMULATOR_MODES`."""
    if metafunc.definition.get_closest_marker("both_modes") and "make_emulator" in metafunc.fixturenames:
        metafunc.parametrize("emulator_mode", list(EMULATOR_MODES), indirect=True)


@pytest.fixture
def emulator_mode(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings a test's emulators start with: its `both_modes` mode, else WIRO_EMULATOR_MODE's."""
    name = getattr(request, "param", None)
    return EMULATOR_MODES[name] if name is not None else EMULATOR_MODE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest modules first (see LONGEST_FIRST); the rest keep their order."""
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the credentials of whoever runs them."""
    for name in ("WIRO_API_KEY", "WIRO_API_SECRET", "WIRO_BASE_URL", "WIRO_SOCKET_URL"):
        monkeypatch.delenv(name, raising=False)


EmulatorFactory = Callable[..., EmulatorServer]


def free_port() -> int:
    """A loopback port nothing listens on (as the probe is closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def make_emulator(emulator_mode: dict[str, Any]) -> Iterator[EmulatorFactory]:
    """Start emulators with fast defaults (in the test's mode); every one is stopped after the test."""
    started: list[EmulatorServer] = []

    def make(**overrides: Any) -> EmulatorServer:
        settings: dict[str, Any] = {
            "api_key": API_KEY,
            "api_secret": API_SECRET,
            "queue_seconds": 0.05,
            "task_seconds": 0.2,
            **emulator_mode,
        }
        settings.update(overrides)
        server = EmulatorServer(EmulatorConfig(**settings)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def emulator(make_emulator: EmulatorFactory) -> EmulatorServer:
    return make_emulator()


@pytest.fixture
def client(emulator: EmulatorServer) -> Iterator[WiroClient]:
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT) as wiro:
        yield wiro


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One Prefect test server for the whole session (it takes ~15 s to start)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL database of this module's own (for a real `prefect server`: tests/prefect_stack.py);
    SQLite, said aloud, where no PostgreSQL answers."""
    import asyncio
    import uuid

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
        message = f"NO POSTGRESQL on 127.0.0.1:5432 ({exc}); this module's Prefect server runs on SQLite instead"
        if reporter is not None:
            reporter.write_line(message, yellow=True)
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('prefect-db') / 'prefect.db'}"
        return
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def subprocess_env(prefect_api: str) -> Callable[[EmulatorServer], dict[str, str]]:
    """The environment of a `wiro-sweep` subprocess pointed at an emulator and the test Prefect API."""

    def env(emulator: EmulatorServer) -> dict[str, str]:
        return {**os.environ, **emulator.env(), "PREFECT_API_URL": prefect_api, "PREFECT_LOGGING_LEVEL": "WARNING"}

    return env


@pytest.fixture
def wiro_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[EmulatorServer], None]:
    """Point this process's client (as a flow run reads it) at an emulator."""

    def point(server: EmulatorServer) -> None:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)

    return point


@pytest.fixture(scope="session", autouse=True)
def _prefect_result_storage_lookup_closes_its_client() -> Iterator[None]:
    """Prefect 3.9.1 opens a sync API client to read the server's default result storage and
    never closes it, so every flow run leaks a socket (a ResourceWarning, an error under
    `filterwarnings = error`). Same lookup, client closed; everything else stays Prefect's."""
    import httpx
    import prefect.results as results
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    original = results._read_server_default_result_storage_block_id

    def read_and_close() -> Any:
        try:
            with get_client(sync_client=True) as client:
                return client.read_server_default_result_storage().default_result_storage_block_id
        except (PrefectHTTPStatusError, httpx.HTTPError, RuntimeError, ValueError):
            return None

    results._read_server_default_result_storage_block_id = read_and_close
    yield
    results._read_server_default_result_storage_block_id = original


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Mount a real tmpfs of a given size (bytes) that fills up like any full disk.

    Needs root (CI runs as root); elsewhere the test that asks for it says so and stops.
    Every mount is unmounted after the test, whatever happened."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if done.returncode:
            pytest.skip(f"a small tmpfs cannot be mounted here (needs root): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def resize_disk(point: Path, size: int) -> None:
    """Give a `small_disk` mount more (or less) room, as freeing space on a full disk would."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(point)], check=True)


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's sweeps claim Wiro tasks in a registry of their own, never the user's."""
    monkeypatch.setenv("WIRO_SWEEP_STATE", str(tmp_path_factory.mktemp("wiro-sweep-state")))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Subprocesses of a test; any still running at its end are killed (by their own group)."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def quick_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator's Task/List is consistent at once: the three scans that prove no task was made
    need not be spread over 20 s (the rule, three complete scans, is unchanged)."""
    import flows.engine.matching

    monkeypatch.setattr(flows.engine.matching, "FIND_RETRY_DELAYS", (0.2, 0.4))
