"""The shell scripts a new user runs first: what they say while they set things up."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
FAKE_PYTHON = """#!/usr/bin/env bash
# stands in for python3 and pip: `-m venv DIR` makes DIR/bin/python (this script); the rest succeeds
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; fi
echo "$@" >> "$(dirname "$0")/../calls.log"
"""


def bootstrap(checkout: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": str(checkout / "fakepy")}
    command = ["bash", "-c", "source scripts/bootstrap.sh && echo sourced"]
    return subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, timeout=60, check=True)


def test_the_first_run_says_it_is_building_the_venv_and_how_long_it_takes(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "fakepy").write_text(FAKE_PYTHON)
    (tmp_path / "fakepy").chmod(0o755)

    first = bootstrap(tmp_path)
    assert first.stderr.splitlines()[0].startswith("Setting up .venv: installing wiro-sweep")
    assert "about 2 minutes" in first.stderr.splitlines()[0]
    assert first.stderr.splitlines()[-1].startswith(".venv is ready (")
    assert "-m pip install --quiet -e .[dev]" in (tmp_path / ".venv" / "calls.log").read_text()
    assert first.stdout == "sourced\n"

    again = bootstrap(tmp_path)
    assert again.stderr == "", "an up-to-date .venv is used silently"

    with (tmp_path / "pyproject.toml").open("a") as handle:
        handle.write("\n# changed\n")
    updated = bootstrap(tmp_path)
    assert updated.stderr.splitlines()[0] == "pyproject.toml changed: updating .venv (under a minute)..."


FAKE_COMMAND = """#!/usr/bin/env bash
# stands in for `{name}`: notes how it was started, and with which report URL and Wiro API
echo "{name} $* | report=${{WIRO_SWEEP_REPORT_URL:-}} base=${{WIRO_BASE_URL:-}}" >> "$CALLS"
[ "$1" = "-" ] && exit 1   # python - (the PostgreSQL probe): no PostgreSQL here
if [ "{name} $1" = "wiro-sweep serve" ]; then   # listens until the stack has seen it answer, unless told to die
    [ -n "${{SERVE_DIES:-}}" ] && {{ echo "OSError: [Errno 98] address already in use"; exit 1; }}
    exec {python} -c "{listen}" "$4"
fi
exit 0
"""
LISTEN_ONCE = ("import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
               "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); s.accept()")  # fmt: skip


def stack_checkout(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """prefect-stack.sh run in a copy of the checkout where every program it starts is a stand-in,
    on free ports (`PORT`, `REPORT_PORT`, `EMULATOR_PORT` in `settings` unless given)."""
    for name in ("PORT", "REPORT_PORT", "EMULATOR_PORT"):
        settings.setdefault(name, str(free_port()))
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "prefect", "wiro-sweep"):
        (bin_dir / name).write_text(FAKE_COMMAND.format(name=name, python=sys.executable, listen=LISTEN_ONCE))
        (bin_dir / name).chmod(0o755)
    stamp = subprocess.run(["sha256sum", "pyproject.toml"], cwd=tmp_path, capture_output=True, text=True, check=True)
    (tmp_path / ".venv" / f".installed-{stamp.stdout[:16]}").touch()
    env = {**os.environ, "CALLS": str(tmp_path / "calls.log"), "EMULATOR": "1", "WORKERS": "2", **settings}
    return subprocess.run(["bash", "scripts/prefect-stack.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_the_stack_script_starts_the_report_server_beside_the_ui_and_points_the_workers_at_it(
    tmp_path: Path,
) -> None:
    """prefect-stack.sh's wiring, with every program it starts replaced by a stand-in."""
    port, reports, emulator = free_port(), free_port(), free_port()
    done = stack_checkout(tmp_path, PORT=str(port), REPORT_PORT=str(reports), EMULATOR_PORT=str(emulator))
    calls = tmp_path / "calls.log"
    assert done.returncode == 0, done.stdout + done.stderr
    started = calls.read_text().splitlines()
    report = f"report=http://127.0.0.1:{reports}"
    assert any(s.startswith(f"wiro-sweep serve runs --port {reports} |") for s in started), started
    assert (tmp_path / "runs").is_dir(), "the folder the deployments sweep into, served from the start"
    assert f"wiro-sweep emulator --port {emulator} | report= base=http://127.0.0.1:{emulator}/v1" in started
    assert any(s.startswith(f"prefect server start --host 127.0.0.1 --port {port} |") for s in started)
    workers = [s for s in started if s.startswith("prefect worker start")]
    assert len(workers) == 2
    assert all(f"| {report} base=http://127.0.0.1:{emulator}/v1" in w for w in workers), "their links open the reports"
    assert f"Reports: http://127.0.0.1:{reports}/ serves runs/" in done.stdout
    assert f"Try: cd {tmp_path} && source prefect-stack.env && .venv/bin/wiro-sweep run " in done.stdout
    assert not (tmp_path / "prefect-stack.env").exists(), "gone with the stack it describes"


def test_the_stack_refuses_a_report_port_already_taken_before_starting_anything(tmp_path: Path) -> None:
    """The README's own `wiro-sweep serve` holds 4201: the stack's report server could not start,
    and every artifact link would open the other server's pages."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = stack_checkout(tmp_path, REPORT_PORT=port)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: port {port} is already in use (PORT=" in done.stderr
    assert f"REPORT_PORT={port}" in done.stderr
    assert "Reports:" not in done.stdout
    assert "prefect server start" not in (tmp_path / "calls.log").read_text(), "nothing started"


def test_the_stack_fails_loudly_when_its_report_server_does_not_start(tmp_path: Path) -> None:
    done = stack_checkout(tmp_path, SERVE_DIES="1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: the report server did not start; the end of report-server.log:" in done.stderr
    assert "address already in use" in done.stderr
    assert "Reports:" not in done.stdout
