"""What a user meets when OUT, the journal or Prefect is not as the sweep needs it, and when two
spellings of one number would be paid for twice.

Each case runs `wiro-sweep run` in this process (click's CliRunner) with credentials pointing at
a live emulator: the message is one line naming the file, line or setting and what to do, the
exit code is 2, and the emulator saw no Run request.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flows.cli import main
from flows.grid import load_grid
from wiro_tasks.emulator import EmulatorServer

pytestmark = pytest.mark.usefixtures("prefect_api")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def invoke(*arguments: str) -> Result:
    return CliRunner().invoke(main, ["run", *arguments])


def one_line_exit_2(result: Result, *words: str) -> str:
    """The message, checked: exit 2, one line starting `error: `, no traceback, holding `words`."""
    output = result.output
    assert result.exit_code == 2, (result.exit_code, output[-3000:], result.exception)
    assert "Traceback" not in output, output
    assert output.startswith("error: "), output
    assert output.count("\n") == 1, f"not one line:\n{output}"
    for word in words:
        assert word in output, f"{word!r} not in {output!r}"
    return output


def runs(emulator: EmulatorServer) -> int:
    return int(emulator.account.stats()["counters"].get("run", 0))


@pytest.fixture
def point_at(emulator: EmulatorServer, wiro_env: Callable[[EmulatorServer], None]) -> EmulatorServer:
    wiro_env(emulator)
    return emulator


# Numbers: one value, one combination, one task.


def test_zero_and_minus_zero_are_one_combination(tmp_path: Path) -> None:
    grid = write(tmp_path / "g.csv", "prompt,scale\na fox,0\na fox,-0.0\n")
    frame = load_grid([str(grid)], {"steps": ["5", "05", "+5"]})
    assert len(frame) == 1, frame
    assert str(frame["scale"].iloc[0]) == "0.0", "what is sent is the plain zero"
    same = load_grid([str(write(tmp_path / "h.csv", "prompt\na fox\n"))], {"scale": ["0", "-0.0", "-0e-5"],
                                                                            "steps": ["5.0"]})  # fmt: skip
    assert same["row_id"].tolist() == frame["row_id"].tolist()


def test_axis_zero_and_minus_zero_submit_one_task(point_at: EmulatorServer, tmp_path: Path) -> None:
    grid = write(tmp_path / "g.csv", "prompt,numFrames\na fox,5\n")
    dry = invoke(str(grid), "--out", str(tmp_path / "out"), "--axis", "scale=0,-0.0", "--dry-run")
    assert "1 combination; 0 already done" in dry.output, dry.output
    result = invoke(str(grid), "--out", str(tmp_path / "out"), "--axis", "scale=0,-0.0", "--poll-interval", "0.05")
    assert result.exit_code == 0, result.output
    assert runs(point_at) == 1
    [task] = point_at.account.tasks.values()
    assert str(task.parameters["scale"]) == "0.0"


# A damaged journal: refused, naming its path and line.


AT = "2026-01-01T00:00:00.000Z"


def journal_cases(row_id: str) -> list[tuple[str, str]]:
    """(a JSON line lacking what its event needs, words the message must hold)."""
    return [
        (f'{{"event": "submitted", "row_id": "{row_id}", "at": "{AT}"}}', "'submitted' record without its 'task_id'"),
        (f'{{"event": "intent", "at": "{AT}"}}', "'intent' record without its 'row_id'"),
        (f'{{"row_id": "{row_id}", "task_id": "7"}}', "a record without its 'event'"),
        ("[1, 2]", "a JSON list, not a record"),
        (f'{{"event": "finished", "row_id": "{row_id}", "task_id": "7", "cost": "0.1"}}', "without its 'status'"),
        (f'{{"event": "downloaded", "row_id": "{row_id}", "path": "videos/a.mp4"}}', "without its 'sha256'"),
        (
            f'{{"event": "downloaded", "row_id": "{row_id}", "path": "v.mp4", "sha256": "ab", "bytes": "12"}}',
            "'bytes' is not a whole number",
        ),
        (f'{{"event": "intent", "row_id": "{row_id}", "at": "yesterday"}}', "'at' is not a time"),
        (f'{{"event": "adopted", "row_id": "{row_id}", "task_id": ""}}', "whose 'task_id' is not valid (got '')"),
    ]


def test_a_journal_line_without_its_fields_is_refused_with_its_path_and_line(
    point_at: EmulatorServer, tmp_path: Path
) -> None:
    grid = write(tmp_path / "g.csv", "prompt,numFrames\na fox,5\n")
    [row_id] = load_grid([str(grid)])["row_id"]
    out = tmp_path / "out"
    out.mkdir()
    journal = out / "journal.jsonl"
    good = f'{{"event": "note", "row_id": "{row_id}", "at": "{AT}", "error": "fine"}}'
    torn = '{"event": "finished", "row_id": "r1", "sta'
    for line, words in journal_cases(row_id):
        journal.write_text(f"{good}\n{line}\n{torn}")
        before = journal.read_bytes()
        for extra in ((), ("--dry-run",)):
            result = invoke(str(grid), "--out", str(out), "--poll-interval", "0.05", *extra)
            one_line_exit_2(result, f"{journal}, line 2: ", words, "fix or delete that line")
        assert journal.read_bytes() == before, "the journal is left as it was"
    assert runs(point_at) == 0


def test_a_torn_last_line_is_still_tolerated(point_at: EmulatorServer, tmp_path: Path) -> None:
    grid = write(tmp_path / "g.csv", "prompt,numFrames\na fox,5\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.jsonl").write_text('{"event": "finished", "row_id": "r1", "sta')  # killed mid-write
    result = invoke(str(grid), "--out", str(out), "--poll-interval", "0.05")
    assert result.exit_code == 0, result.output
    assert runs(point_at) == 1


# OUT: read-only, or a grid directory.


@contextmanager
def read_only(directory: Path) -> Iterator[str]:
    """`directory` made read-only, honestly for whoever runs the tests: root ignores chmod, so as
    root it becomes a read-only bind mount of itself; otherwise it is chmod 555."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
            yield "a read-only bind mount"
        finally:
            subprocess.run(["umount", str(directory)], check=True)
    else:
        directory.chmod(0o555)
        try:
            yield "chmod 555"
        finally:
            directory.chmod(0o755)


def test_a_read_only_out_is_one_line_and_costs_nothing(point_at: EmulatorServer, tmp_path: Path) -> None:
    grid = write(tmp_path / "g.csv", "prompt,numFrames\na fox,5\n")
    shelf = tmp_path / "shelf"
    (shelf / "out").mkdir(parents=True)
    with read_only(shelf) as how:
        with pytest.raises(OSError, match=r"Read-only file system|Permission denied"):
            (shelf / "out" / "probe").touch()  # the test's own premise, with `how`
        existing = invoke(str(grid), "--out", str(shelf / "out"))
        one_line_exit_2(existing, "--out: ", f"{shelf / 'out'} is ", "give --out a writable directory")
        assert ("read-only file system" if how.startswith("a read-only") else "not writable") in existing.output
        missing = invoke(str(grid), "--out", str(shelf / "new" / "out"))
        one_line_exit_2(missing, f"{shelf} is ", "give --out a writable directory")
    assert runs(point_at) == 0
    assert sorted(p.name for p in shelf.rglob("*")) == ["out"], "nothing was written"


def test_out_that_is_the_grid_directory_is_refused_on_the_first_and_second_run(
    point_at: EmulatorServer, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    write(prompts / "a.csv", "prompt,numFrames\na fox,5\n")
    first = invoke(str(prompts), "--out", str(prompts))
    one_line_exit_2(first, f"--out: {prompts} is also a grid directory", "give --out a directory of its own")
    assert sorted(p.name for p in prompts.iterdir()) == ["a.csv"]
    # An OUT made so by an earlier version: its manifest sits among the grids.
    done = invoke(str(prompts), "--out", str(tmp_path / "elsewhere"), "--poll-interval", "0.05")
    assert done.exit_code == 0, done.output
    for name in ("manifest.csv", "journal.jsonl"):
        (prompts / name).write_bytes((tmp_path / "elsewhere" / name).read_bytes())
    for extra in ((), ("--dry-run",)):
        second = invoke(str(prompts), "--out", str(prompts), *extra)
        one_line_exit_2(second, "is also a grid directory", "move this sweep's journal.jsonl, manifest.csv")
    assert runs(point_at) == 1, "only the run into elsewhere/"


# Prefect.


def test_an_unreachable_prefect_api_is_one_line(point_at: EmulatorServer, tmp_path: Path) -> None:
    """In a terminal, as a user meets it: a subprocess with PREFECT_API_URL pointing nowhere (with
    a user:password in it, which the message must not show)."""
    grid = write(tmp_path / "g.csv", "prompt,numFrames\na fox,5\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the probe is: nothing listens there
    url = f"http://me:hunter2-prefect@127.0.0.1:{port}/api"
    env = {**os.environ, **point_at.env(), "PREFECT_API_URL": url}
    done = subprocess.run([sys.executable, "-m", "flows", "run", str(grid), "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert output.startswith("error: PREFECT_API_URL: "), output
    assert output.count("\n") == 1, output
    assert f"http://***@127.0.0.1:{port}/api does not answer" in output
    assert "unset PREFECT_API_URL" in output
    assert "hunter2" not in output
    assert runs(point_at) == 0
    assert not (tmp_path / "out").exists()


def test_bad_download_settings_exit_2_before_anything(
    point_at: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = write(tmp_path / "g.csv", "prompt,numFrames\na fox,5\n")
    for name, value, words in (("WIRO_DOWNLOAD_TIMEOUT", "soon", "must be a number of seconds more than 0"),
                               ("WIRO_DOWNLOAD_MAX_BYTES", "-5", "must be a whole number of bytes")):  # fmt: skip
        monkeypatch.setenv(name, value)
        one_line_exit_2(invoke(str(grid), "--out", str(tmp_path / "out")), f"{name} must be", words)
        monkeypatch.delenv(name)
    assert not (tmp_path / "out").exists()
    assert runs(point_at) == 0


def test_a_run_shows_the_summary_not_prefects_info_logs(
    prefect_api: str, point_at: EmulatorServer, tmp_path: Path
) -> None:
    """The command's quiet default (Prefect's WARNING level) is set before anything imports
    Prefect, the checks above included: Prefect reads it once, at import."""
    grid = write(tmp_path / "g.csv", "prompt,numFrames\na fox,5\n")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_LOGGING_LEVEL"}
    env.update(point_at.env(), PREFECT_API_URL=prefect_api)
    command = [sys.executable, "-m", "flows", "run", str(grid), "--out", str(tmp_path / "o"), "--poll-interval", "0.1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "1 of 1 rows succeeded" in output
    assert "| INFO" not in output, output


def test_the_flow_itself_stops_on_a_damaged_journal_or_a_read_only_out(
    point_at: EmulatorServer, tmp_path: Path
) -> None:
    """Past the command's checks (a deployment's run): the flow ends with exit code 2 too."""
    from flows.cli.console import run_with_progress
    from flows.engine.settings import SweepParams

    grid = write(tmp_path / "g.csv", "prompt,numFrames\na fox,5\n")
    frame = load_grid([str(grid)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.jsonl").write_text('{"event": "submitted", "row_id": "abc"}\n')
    assert run_with_progress(SweepParams(grid=[str(grid)], out=str(out)), frame) == 2
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    with read_only(shelf):
        assert run_with_progress(SweepParams(grid=[str(grid)], out=str(shelf / "out")), frame) == 2
    assert runs(point_at) == 0
