"""`wiro-sweep emulator`: a local emulator of the Wiro API, for demos and tests. Its options are
declared once, in `wiro_tasks.emulator.options`."""

from __future__ import annotations

from typing import Any

import click

from flows.cli.base import SweepCommand
from wiro_tasks.emulator.options import EmulatorOptions, emulator_options


@click.command(cls=SweepCommand)
@emulator_options
def emulator(**values: Any) -> None:
    """Serve a local emulator of the Wiro API (credentials from WIRO_API_KEY / WIRO_API_SECRET)."""
    from wiro_tasks.emulator import serve

    options = EmulatorOptions(**values)
    config, host, port = options.config(), options.host, options.port
    mode = "signature" if config.api_secret else "key-only"
    click.echo(
        f"Wiro emulator on http://{host}:{port}/v1 ({mode} auth, key from WIRO_API_KEY"
        f"{' or the demo key ' + repr(config.api_key) if config.api_key == 'emulator' else ''})"
    )
    click.echo(f"Point a client at it: export WIRO_BASE_URL=http://{host}:{port}/v1")
    serve(config, host=host, port=port)
