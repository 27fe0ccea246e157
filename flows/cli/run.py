"""`wiro-sweep run`: check everything a sweep needs, then run the flow under a progress bar.

Its options are `SweepParams`' fields (`flows.cli.params`), and what it hands the flow is a
`SweepParams`: a parameter added there reaches the command line, the flow and the child runs.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click

from flows.cli.base import SweepCommand
from flows.cli.params import sweep_options
from flows.engine.settings import SweepParams
from flows.errors import InputError

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


@click.command(cls=SweepCommand)
@sweep_options
@click.option("--dry-run", is_flag=True, help="Count combinations and estimate the cost; submit nothing.")
@click.option("--emulator", is_flag=True, help="Run against the bundled emulator on a free loopback port.")
@click.option("-v", "--verbose", is_flag=True, help="Show Prefect's logs.")
def run(dry_run: bool, emulator: bool, verbose: bool, **given: Any) -> None:
    """Submit every combination of the GRID files (CSV or Parquet, or directories of them).

    Rerun with the same --out to resume: nothing is paid for twice. Exit codes: 0 all rows
    succeeded, 1 some did not, 2 bad input or configuration, 130 stopped (Ctrl-C, or Cancel in
    Prefect).
    """
    from flows.grid import model_name, parse_axes
    from flows.memory import give_back
    from flows.store.checks import (
        check_journals,
        check_one_sweep,
        check_out_apart,
        check_prefect_api,
        check_writable,
    )
    from flows.store.gridcache import kept_grid

    check_out_apart(Path(given["out"]), given["grid"])
    params = SweepParams(**{**given, "grid": list(given["grid"]), "axes": parse_axes(given["axes"]) or None,
                            "model": model_name(given["model"])})  # fmt: skip
    frame = kept_grid(Path(params.out), params.grid, params.axes, model=params.model,
                      max_combinations=params.max_combinations)  # fmt: skip
    check_one_sweep(Path(params.out), frame)  # another grid's paid rows in OUT would drop from its manifest
    give_back()  # what the grid's expansion and the journal's fold were done with
    if dry_run:
        from flows.cli.dry_run import dry_run_report

        price, no_price = _dry_run_price(emulator, sorted(set(frame["model"])))
        click.echo(dry_run_report(frame, params, price, no_price))
        return
    from flows.view.serve import report_base

    report_base()  # where the Prefect artifacts will link to the report
    _check_wiro_settings(emulator, params.shards)
    for name, value in PREFECT_DEFAULTS.items():  # before anything imports Prefect, which reads them once
        if name == "PREFECT_LOGGING_LEVEL" and verbose:
            continue
        os.environ.setdefault(name, value)
    # OUT, its journals and Prefect, before Prefect starts, OUT is written or anything is paid
    check_writable(Path(params.out))
    check_journals(Path(params.out))
    check_prefect_api()
    saved = dict(os.environ)
    server = start_emulator() if emulator else None
    try:
        from flows.cli.console import run_with_progress

        code = run_with_progress(params, frame, verbose)
    finally:
        if server is not None:
            server.stop()
            os.environ.clear()  # the emulator's credentials were for this run only
            os.environ.update(saved)
    sys.exit(code)


def _check_wiro_settings(emulator: bool, shards: int) -> None:
    """Credentials and every client setting, before Prefect starts, OUT is touched or anything is paid."""
    from wiro_tasks import ClientConfig, ConfigurationError

    if not emulator and not os.environ.get("WIRO_API_KEY"):
        raise InputError("set WIRO_API_KEY (and WIRO_API_SECRET), or pass --emulator")
    if not emulator:
        try:
            ClientConfig.resolve()
        except ConfigurationError as exc:
            raise InputError(str(exc)) from None
    if shards > 1 and (emulator or not os.environ.get("PREFECT_API_URL")):
        raise InputError("--shards needs a Prefect server with workers (set PREFECT_API_URL; no --emulator)")


def _dry_run_price(emulator: bool, models: list[str]) -> tuple[dict[str, Any], str]:
    """Each model's price from Tool/Detail for a dry run (the bundled emulator's with --emulator),
    and why a model has none. Asking costs nothing; without credentials it is not asked."""
    from wiro_tasks import WiroClient, WiroError

    if not emulator and not os.environ.get("WIRO_API_KEY"):
        return {}, "not asked (no WIRO_API_KEY)"
    server = start_emulator() if emulator else None
    prices: dict[str, Any] = {}
    why = ""
    try:
        with WiroClient(timeout=15.0) as wiro:
            for model in models:
                try:
                    price = wiro.tool(model).price
                except (WiroError, ValueError) as exc:
                    why = f"Tool/Detail failed ({exc})"
                    continue
                if price.known:
                    prices[model] = price
                else:
                    why = "Tool/Detail gives none"
    finally:
        if server is not None:
            server.stop()
    return prices, why


def start_emulator() -> Any:
    """The bundled emulator on a free loopback port, with credentials of its own set in the environment."""
    from wiro_tasks.emulator import EmulatorConfig, EmulatorServer

    config = EmulatorConfig(
        api_key=f"emu-{secrets.token_hex(8)}",
        api_secret=secrets.token_hex(16),
        queue_seconds=0.5,
        task_seconds=2.0,
        task_seconds_max=4.0,
    )
    server = EmulatorServer(config).start()
    os.environ.update(server.env())
    click.echo(f"Using the bundled Wiro emulator at {server.base_url}", err=True)
    return server
