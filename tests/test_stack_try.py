"""`EMULATOR=1 ./scripts/prefect-stack.sh` for real, in a copy of the checkout: the command its
"Try:" line prints, pasted into a fresh shell as printed, sweeps in shards on the stack's workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import free_port
from .prefect_stack import ROOT
from .processes import wait_for

COPIED = ("scripts", "flows", "wiro_tasks", "prompts", "deployments.yaml", "pyproject.toml")


def postgres(sql: str) -> bool:
    """Run `sql` as the local PostgreSQL's admin; False when none answers."""
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres",
                                           timeout=3)  # fmt: skip
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    try:
        asyncio.run(run())
    except (OSError, asyncpg.PostgresError):
        return False
    return True


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The project's files the stack and its workers use, with this checkout's .venv."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, copy / name)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    stamp = subprocess.run(["sha256sum", "pyproject.toml"], cwd=ROOT, capture_output=True, text=True, check=True)
    (ROOT / ".venv" / f".installed-{stamp.stdout[:16]}").touch()  # bootstrap.sh: this .venv is up to date
    return copy


@pytest.fixture
def stack(checkout: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    database = f"wiro_sweep_stack_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "WIRO_"))}
    env.update(EMULATOR="1", WORKERS="2", PORT=str(free_port()), REPORT_PORT=str(free_port()),
               EMULATOR_PORT=str(free_port()), DATABASE=database, PREFECT_HOME=str(tmp_path / "home"))  # fmt: skip
    log = tmp_path / "stack.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(["bash", "scripts/prefect-stack.sh"], cwd=checkout, env=env, stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        yield process, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # whatever outlived the stack's own Ctrl-C (a worker)
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        postgres(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_the_try_command_the_stack_prints_works_as_printed(stack: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, log = stack
    assert wait_for(lambda: "Try: " in log.read_text(), process, 300, every=0.5), log.read_text()[-3000:]
    found = re.search(r"^Try: (.+)$", log.read_text(), re.MULTILINE)
    assert found is not None, log.read_text()[-3000:]
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "WIRO_"))}  # a fresh terminal
    done = subprocess.run(["bash", "-c", found.group(1)], env=shell, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr + log.read_text()[-2000:]
    assert "4 of 4 rows succeeded" in done.stderr + done.stdout, done.stderr[-2000:]


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (its children, theirs, ...), as /proc has them now."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> dict[int, str]:
    """Those of `pids` still running (a zombie has ended), with their command lines."""
    running = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                running[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    return running


def test_ctrl_c_stops_the_whole_stack_within_seconds_and_leaves_no_process(
    stack: tuple[subprocess.Popen[bytes], Path],
) -> None:
    """A terminal's Ctrl-C sends SIGINT to its whole foreground group: the script, its servers and
    its workers. Every process the stack started is gone within a few seconds."""
    process, log = stack
    assert wait_for(lambda: "Try: " in log.read_text(), process, 300, every=0.5), log.read_text()[-3000:]
    time.sleep(3)  # the workers have polled their pool
    started = descendants(process.pid) | {process.pid}
    assert len(alive(started)) >= 6, alive(started)  # the script, emulator, report server, server, two workers
    os.killpg(process.pid, signal.SIGINT)
    stopped_by = time.monotonic() + 10
    while alive(started) and time.monotonic() < stopped_by:
        time.sleep(0.2)
    assert alive(started) == {}, log.read_text()[-2000:]
