"""The `wiro-sweep` command and the quickstart script, run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from flows.cli import COMMANDS, main
from wiro_tasks import TextToVideoInput, WiroClient

from .conftest import API_KEY, API_SECRET, free_port
from .mp4 import decode_mp4

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def emulator_command(*flags: str) -> Iterator[tuple[str, dict[str, str]]]:
    """`wiro-sweep emulator FLAGS` in a subprocess, credentials from its environment."""
    port = free_port()
    env = {**os.environ, "WIRO_API_KEY": API_KEY, "WIRO_API_SECRET": API_SECRET}
    command = [sys.executable, "-m", "flows", "emulator", "--port", str(port), *flags]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                httpx.get(f"{base}/_emulator/stats", headers={"x-api-key": API_KEY}).raise_for_status()
                break
            except httpx.ConnectError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(process.stdout.read().decode() if process.stdout else "") from None
                time.sleep(0.05)
        yield f"{base}/v1", {**env, "WIRO_BASE_URL": f"{base}/v1"}
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


@pytest.fixture
def emulator_process() -> Iterator[tuple[str, dict[str, str]]]:
    with emulator_command("--task-seconds", "0.3") as started:
        yield started


def test_quickstart_script_saves_a_playable_mp4(emulator_process: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    _, env = emulator_process
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "saved fox.mp4" in done.stdout
    assert API_SECRET not in done.stdout + done.stderr
    lumas, stream, complaints = decode_mp4((tmp_path / "fox.mp4").read_bytes())
    assert complaints == []
    assert len(lumas) == 121
    assert stream.width == 832


def test_emulator_refuses_other_credentials(emulator_process: tuple[str, dict[str, str]]) -> None:
    base_url, _ = emulator_process
    answer = httpx.post(f"{base_url}/Task/List", json={}, headers={"x-api-key": "someone-else"})
    assert answer.status_code == 401


def test_help_lists_the_emulator() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "emulator" in result.output


def test_version_names_the_installed_package() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"wiro-sweep {version('wiro-sweep')}\n"


def test_bad_emulator_option_exits_2() -> None:
    result = CliRunner().invoke(main, ["emulator", "--balance", "lots"])
    assert result.exit_code == 2
    assert "--balance" in result.output


def test_emulator_list_page_cap_flag() -> None:
    with (
        emulator_command("--list-page-cap", "2", "--queue-seconds", "60") as (base_url, _),
        WiroClient(API_KEY, API_SECRET, base_url=base_url) as client,
    ):
        for n in range(3):
            client.run(TextToVideoInput(prompt=f"p{n}", num_frames=5))
        page = client.list_page(limit=100)
    assert (len(page.tasks), page.total) == (2, 3)
    refused = CliRunner().invoke(main, ["emulator", "--list-page-cap", "0"])
    assert refused.exit_code == 2
    assert "--list-page-cap" in refused.output, refused.output


HEAVY = ("pandas", "av", "uvicorn", "prefect")


def test_help_imports_no_heavy_module() -> None:
    """`wiro-sweep --help` (and importing the command line) loads neither pandas, PyAV, uvicorn nor Prefect."""
    code = (
        "import sys, flows.cli\n"
        "flows.cli.main(['--help'], standalone_mode=False)\n"
        f"print('loaded:', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout, done.stdout
    for name, _, summary in COMMANDS:
        assert f"{name}" in done.stdout
        assert summary in done.stdout


def test_each_listed_command_loads_under_its_name() -> None:
    import click

    context = click.Context(main)
    assert main.list_commands(context) == sorted(name for name, _, _ in COMMANDS)
    for name, _, _ in COMMANDS:
        command = main.get_command(context, name)
        assert isinstance(command, click.Command)
        assert command.name == name
        assert command.help, f"{name} has its own --help text"
    assert main.get_command(context, "nothing") is None
    unknown = CliRunner().invoke(main, ["nothing"])
    assert unknown.exit_code == 2
    assert "No such command 'nothing'" in unknown.output


def test_top_level_help_names_both_models() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "text-to-video" in result.output, result.output
    assert "image-to-video" in result.output, result.output


def test_every_emulator_option_has_a_description() -> None:
    import click

    command = main.get_command(click.Context(main), "emulator")
    assert command is not None
    bare = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
    assert bare == [], f"options without a description in `wiro-sweep emulator --help`: {bare}"


def test_money_options_show_usd_and_no_option_shows_text() -> None:
    shown = {}
    for name, _, _ in COMMANDS:
        result = CliRunner().invoke(main, [name, "--help"], terminal_width=200)
        assert result.exit_code == 0
        for line in result.output.splitlines():
            words = line.split()
            if words and words[0].startswith("--") and len(words) > 1:
                shown[f"{name} {words[0]}"] = words[1]
    assert [flag for flag, metavar in shown.items() if metavar == "TEXT"] == [], "a value named for what it is"
    for flag in ("run --budget", "run --estimate-usd", "emulator --balance", "emulator --cps"):
        assert shown[flag] == "USD", (flag, shown[flag])
