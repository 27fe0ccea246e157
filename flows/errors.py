"""The sweep side's one error root: every error a user is meant to read carries its exit code.

    class GridError(SweepError): exit_code = 2      # bad input or configuration
    class OutNotWritableError(SweepError): ...      # exit_code 1: the sweep stopped part way

As with click's `ClickException`, the command line turns any `SweepError` into one line on
stderr (`error: ...`, `SweepError.message`) and exits with its `exit_code`
(`flows.cli.base.SweepCommand`); the progress console does the same for an error a flow run
ended with. Exit codes: 1 the sweep ran but not every row succeeded, or it had to stop;
2 bad input or configuration, found before anything was paid.

This module imports nothing of the project: every room may import it.
"""

from __future__ import annotations

import sys
from typing import IO

BAD_INPUT = 2


class SweepError(Exception):
    """An error whose text is meant for the user; the command exits with `exit_code`."""

    exit_code: int = 1

    def message(self) -> str:
        """What the command prints: `error: ` and the error's text."""
        return error_line(self)

    def show(self, file: IO[str] | None = None) -> None:
        """Print the message on stderr (or `file`)."""
        print(self.message(), file=file or sys.stderr)


class InputError(SweepError):
    """Bad input or configuration named in one line (an argument, a setting); exit code 2."""

    exit_code = BAD_INPUT


def error_line(problem: BaseException | str) -> str:
    """`error: <problem>`: how every error is shown, on the command line and in the console."""
    return f"error: {problem}"


def exit_code_of(error: BaseException | None, default: int = 1) -> int:
    """The exit code a command ends with for `error`: its own if it is a `SweepError`."""
    return error.exit_code if isinstance(error, SweepError) else default
