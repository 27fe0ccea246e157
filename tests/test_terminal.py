"""`wiro-sweep run` in a terminal, as a person sees it: a clean live bar with rate and time left,
and one closing block, without Prefect's engine lines, whatever way the sweep ends."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from prefect._internal.analytics.ci_detection import CI_ENV_VARS

from wiro_tasks.emulator import EmulatorServer

from .conftest import EmulatorFactory
from .terminal import run_in_terminal

QUIET_PREFECT = (*CI_ENV_VARS, "DO_NOT_TRACK")  # any of these set turns Prefect's telemetry notice off
NOISE = ("Crash detected", "Finished in state", "Error logging to API", "Traceback", "EventsWorker")
SIZE = ("COLUMNS", "LINES")  # the pty sets the size; a COLUMNS left in the environment would override it


def test_a_failed_run_shows_a_clean_bar_with_rate_and_time_left_then_one_closing_block(
    prefect_api: str, make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    emulator: EmulatorServer = make_emulator(queue_seconds=0.05, task_seconds=1.0)
    grid = tmp_path / "grid.csv"
    prompts = ["breaks [emulator:fail]", *(f"scene {n}" for n in range(11))]
    grid.write_text("prompt,numFrames\n" + "".join(f"{p},9\n" for p in prompts))
    # A new PREFECT_HOME, and no CI variable or DO_NOT_TRACK (Prefect stays quiet under those): Prefect
    # prints its first-run telemetry notice in an interactive terminal, as on a user's machine.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k not in QUIET_PREFECT + SIZE}
    env.update(emulator.env(), PREFECT_API_URL=prefect_api, PREFECT_HOME=str(tmp_path / "home"), TERM="xterm")
    command = [sys.executable, "-m", "flows", "run", str(grid), "--out", str(tmp_path / "out"),
               "--max-concurrency", "2", "--poll-interval", "0.1"]  # fmt: skip
    screen = run_in_terminal(command, env, tmp_path)
    assert screen.code == 1, screen.raw[-3000:]
    lines = screen.lines
    for noise in NOISE:
        assert not any(noise in line for line in lines), (noise, lines)
    notice = [n for n, line in enumerate(lines) if "Prefect collects anonymous usage data" in line]
    bars = [n for n, line in enumerate(lines) if line.startswith("sweep ")]
    assert notice, "Prefect's notice shows ..."
    assert notice[0] < bars[0], "... above the bar"
    assert all(line.startswith("sweep ") and "Prefect" not in line.split("sweep ", 1)[1][60:] for line in
               (lines[n] for n in bars)), "never drawn into it"  # fmt: skip
    paces = [re.search(r"· (\d+\.\d) rows/min · (?:(\d+)m )?(\d+)s left", frame) for frame in screen.frames]
    shown = sorted({frame.split("· ")[-1] for frame in screen.frames})
    assert any(p and float(p[1]) > 0 and int(p[2] or 0) * 60 + int(p[3]) > 0 for p in paces), shown
    assert lines[bars[-1] + 1].startswith("11 of 12 rows succeeded; 1 failed; $"), lines[bars[-1] :]
    assert lines[-1].startswith("  "), lines[-4:]
    assert "seed 42: failed: " in lines[-1]


def test_ctrl_c_ends_with_one_friendly_block(prefect_api: str, make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    emulator = make_emulator(queue_seconds=0.05)
    grid = tmp_path / "grid.csv"
    grid.write_text("prompt\n" + "".join(f"long {n} [emulator:hang]\n" for n in "abcd"))  # d never starts
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k not in SIZE}
    env.update(emulator.env(), PREFECT_API_URL=prefect_api, PREFECT_HOME=str(tmp_path / "home"), TERM="xterm")
    out = tmp_path / ("a-long-out-name-" * 8)  # the report's path is wider than the terminal: not broken in two
    command = [sys.executable, "-m", "flows", "run", str(grid), "--out", str(out), "--poll-interval", "0.1",
               "--max-concurrency", "3"]  # fmt: skip
    screen = run_in_terminal(command, env, tmp_path, ctrl_c_when="running 3")
    assert screen.code == 130, screen.raw[-3000:]
    for noise in NOISE:
        assert noise not in screen.raw, (noise, screen.lines[-12:])
    assert screen.lines[-1] == "Interrupted: stopped 3 running Wiro task(s). Rerun the same command to resume."
    closing = r"0 of 4 rows succeeded; 3 cancelled, 1 not_started; \$\d+\.\d{4} billed"
    assert re.fullmatch(closing, screen.lines[-3]), screen.lines[-6:]
    assert screen.lines[-2] == f"Report:   {out / 'report.html'}"
    assert screen.lines[-4].startswith("sweep "), "the bar, then one short closing block"
    assert " left" not in screen.lines[-4], "a stopped sweep's bar has no time left"
    assert emulator.account.stats()["statuses"] == {"task_cancel": 3}


def test_the_demo_bar_is_never_split_by_the_temporary_servers_notice_and_ends_without_time_left(
    tmp_path: Path,
) -> None:
    """As `scripts/demo.sh` runs on a fresh machine: `--emulator`, no Prefect API (the CLI starts its
    own server) and a new PREFECT_HOME, so Prefect prints its first-run telemetry notice. It comes
    before the bar (the CLI imports Prefect before drawing it) and once: the temporary server,
    started while the bar is live, printed it into the bar."""
    grid = tmp_path / "grid.csv"
    grid.write_text("prompt,numFrames\n" + "".join(f"scene {n},9\n" for n in range(3)))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "WIRO_")) and k not in QUIET_PREFECT + SIZE}  # fmt: skip
    env.update(PREFECT_HOME=str(home), TERM="xterm")
    command = [sys.executable, "-m", "flows", "run", str(grid), "--out", str(tmp_path / "out"), "--emulator",
               "--poll-interval", "0.2"]  # fmt: skip
    screen = run_in_terminal(command, env, tmp_path)
    assert screen.code == 0, screen.raw[-3000:]
    lines = screen.lines
    bars = [n for n, line in enumerate(lines) if line.startswith("sweep ")]
    notice = [n for n, line in enumerate(lines) if "Prefect collects anonymous usage data" in line]
    assert len(notice) == 1, f"Prefect's first-run notice, once: {lines}"
    assert notice[0] < bars[0], f"the notice inside the bar's lines: {lines}"
    assert bars == [bars[0]], f"the bar drawn once, in one place: {lines}"
    assert re.search(r"3/3 .* · \d+\.\d rows/min +\d+:\d\d:\d\d$", lines[bars[0]]), lines[bars[0]]
    assert " left" not in lines[bars[0]], "a finished bar has no time left"
