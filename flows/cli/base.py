"""What every `wiro-sweep` command shares: errors shown as one line, and subcommands loaded when used.

`SweepCommand` is the one place a `SweepError` becomes `error: ...` on stderr and the command's
exit code (as click does for its own `ClickException`). `LazyGroup` imports a subcommand's module
only when that subcommand runs (or its own `--help` is asked for): `wiro-sweep --help` lists them
from their one-line summaries, without importing pandas, Prefect or the emulator.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from flows.errors import SweepError


def fail(error: SweepError) -> NoReturn:
    """Show `error` as one line on stderr and exit with its code."""
    error.show()
    sys.exit(error.exit_code)


class SweepCommand(click.Command):
    """A click command whose `SweepError`s end it with their message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SweepError as error:
            fail(error)


class LazyGroup(click.Group):
    """A group whose subcommands are `module:attribute` paths, imported when the subcommand runs."""

    def __init__(self, *args: Any, lazy: Sequence[tuple[str, str, str]] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = {name: (path, summary) for name, path, summary in lazy}  # name -> (module:attr, summary)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = self.lazy[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[cmd_name][0]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The subcommands with their summaries, none of them imported."""
        rows = [(name, self.lazy[name][1]) for name in self.list_commands(ctx) if name in self.lazy]
        rows += [(name, command.get_short_help_str()) for name, command in sorted(self.commands.items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
