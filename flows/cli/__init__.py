"""The `wiro-sweep` command line.

Exit codes: 0 success, 1 some rows did not succeed, 2 bad input or configuration (`flows.errors`).
Each subcommand lives in its own module, imported only when it runs (`flows.cli.base.LazyGroup`),
so `wiro-sweep --help` and `wiro-sweep emulator` start fast:

    run        flows/cli/run.py             the sweep (options from `flows.engine.settings.SweepParams`)
    emulator   flows/cli/emulator.py        the bundled Wiro emulator
    report, serve, compare   flows/cli/view_commands.py
"""

from __future__ import annotations

import click

from flows.cli.base import LazyGroup

COMMANDS = (
    ("run", "flows.cli.run:run", "Submit every combination of the GRID files to Wiro."),
    ("emulator", "flows.cli.emulator:emulator", "Serve a local emulator of the Wiro API."),
    ("report", "flows.cli.view_commands:report", "Write OUT/report.html: the sweep's contact sheet."),
    ("serve", "flows.cli.view_commands:serve", "Serve OUT folders' reports and videos over HTTP."),
    ("compare", "flows.cli.view_commands:compare", "Compare two OUTs of the same grid, row by row."),
)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wiro-sweep", prog_name="wiro-sweep", message="%(prog)s %(version)s")
def main() -> None:
    """Run text-to-video and image-to-video parameter sweeps on Wiro (Wan2.2-TI2V-5B), or on a local
    emulator of it: a row with a start image runs image-to-video, a row without one text-to-video."""
