"""What a user meets when OUT, the journal or Prefect is not as the sweep needs it, and when two
spellings of one number would be paid for twice.

Each case runs `wiro-sweep run` in this process (click's CliRunner) with credentials pointing at
a live emulator: the message is one line naming the file, line or setting and what to do, the
exit code is 2, and the emulator saw no Run request.
"""

from __future__ import annotations

from collections.abc import Callable
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
    assert "1 combinations; 0 already done" in dry.output, dry.output
    result = invoke(str(grid), "--out", str(tmp_path / "out"), "--axis", "scale=0,-0.0", "--poll-interval", "0.05")
    assert result.exit_code == 0, result.output
    assert runs(point_at) == 1
    [task] = point_at.account.tasks.values()
    assert str(task.parameters["scale"]) == "0.0"
