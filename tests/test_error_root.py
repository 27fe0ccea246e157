"""The sweep side's errors share one root, `SweepError`, which carries the exit code; the command
line shows any of them as one line and exits with that code. No server, no emulator."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import flows
import flows.store.locks as locks
from flows.cli.base import SweepCommand
from flows.errors import InputError, SweepError, error_line, exit_code_of
from flows.grid import GridError, GridErrors
from flows.orchestrate.credentials import ConfigError, MissingCredentialsError
from flows.orchestrate.flow import OutNotWritableError
from flows.store.journal import JournalError, JournalWriteError
from flows.store.locks import OutBusyError, directory_lock, lock_is_held, out_lock
from flows.view.compare import CompareError
from flows.view.serve import ReportURLError

NOT_FOR_COMMANDS = {"flows.view.videodiff.DecodeError"}  # marks one row of a comparison; never ends a command


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (GridError("g.csv", "bad", row=2), 2),
        (GridErrors("", "2 problems", problems=[GridError("g.csv", "a"), GridError("g.csv", "b")]), 2),
        (JournalError(Path("journal.jsonl"), 3, "not a record"), 2),
        (JournalWriteError(Path("journal.jsonl"), OSError(28, "No space left on device")), 1),
        (ConfigError("WIRO_BASE_URL must be http(s)"), 2),
        (MissingCredentialsError("no key"), 2),
        (CompareError("BASELINE x: no manifest"), 2),
        (ReportURLError("WIRO_SWEEP_REPORT_URL must be http(s)"), 2),
        (OutNotWritableError("cannot write"), 1),
        (OutBusyError(Path("/runs/out")), 2),
        (InputError("set WIRO_API_KEY"), 2),
    ],
)
def test_every_error_carries_its_exit_code(error: SweepError, code: int) -> None:
    assert isinstance(error, SweepError)
    assert error.exit_code == code
    assert exit_code_of(error) == code
    assert error.message() == f"error: {error}"


def test_errors_keep_their_older_bases() -> None:
    """Code that caught them as a ValueError or a RuntimeError still does."""
    assert issubclass(ReportURLError, ValueError)
    assert issubclass(ConfigError, RuntimeError)
    assert issubclass(OutNotWritableError, RuntimeError)


def test_every_exception_class_of_flows_derives_from_the_root() -> None:
    found = {}
    for module in pkgutil.walk_packages(flows.__path__, "flows."):
        if module.name.endswith("__main__"):
            continue
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.name:
                found[f"{module.name}.{name}"] = value
    assert len(found) >= 10, sorted(found)
    strays = sorted(n for n, c in found.items() if not issubclass(c, SweepError) and n not in NOT_FOR_COMMANDS)
    assert strays == [], "derive them from flows.errors.SweepError, with their exit code"


def test_other_errors_exit_1() -> None:
    assert exit_code_of(ValueError("x")) == 1
    assert exit_code_of(None) == 1
    assert error_line("it broke") == "error: it broke"


@pytest.mark.parametrize("code", [1, 2, 3])
def test_a_command_shows_a_sweep_error_as_one_line_and_exits_with_its_code(code: int) -> None:
    class Odd(SweepError):
        exit_code = code

    @click.command(cls=SweepCommand)
    def failing() -> None:
        raise Odd("the thing is wrong")

    result = CliRunner().invoke(failing, [])
    assert result.exit_code == code
    assert result.output == "error: the thing is wrong\n"


def test_a_command_lets_other_errors_through() -> None:
    @click.command(cls=SweepCommand)
    def failing() -> None:
        raise KeyError("a bug")

    result = CliRunner().invoke(failing, [])
    assert isinstance(result.exception, KeyError), "a bug keeps its traceback"


def test_a_busy_out_is_its_own_error_with_the_same_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "LOCK_WAIT_SECONDS", 0.2)
    out = tmp_path / "out"
    with out_lock(out):
        assert lock_is_held(out)
        with pytest.raises(OutBusyError) as busy, out_lock(out):
            pass
    assert str(busy.value) == f"{out}: another sweep is running with this --out; wait for it"
    assert busy.value.exit_code == 2
    assert not isinstance(busy.value, GridError), "a busy OUT is not a problem of the grid"
    assert not lock_is_held(out), "let go once the sweep ends"


def test_a_directory_nobody_made_is_free(tmp_path: Path) -> None:
    with directory_lock(tmp_path / "never") as held:
        assert held
    assert not (tmp_path / "never").exists()
