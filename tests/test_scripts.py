"""The shell scripts a new user runs first: what they say while they set things up."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

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
