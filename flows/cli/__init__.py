"""The `wiro-sweep` command line.

Exit codes: 0 success, 1 some rows did not succeed, 2 bad input or configuration.
Subcommands import what they need when they run, so `wiro-sweep emulator` starts fast.
"""

from __future__ import annotations

import os
import secrets
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import click

from flows.grid import DEFAULT_MAX_COMBINATIONS, GridError, load_grid, model_name, parse_axes
from flows.store.journal import JournalError
from flows.view.compare import compare_command
from flows.view.report import report_command
from flows.view.serve import ReportURLError, report_base, serve_command
from wiro_tasks import ClientConfig, ConfigurationError
from wiro_tasks.emulator.config import EmulatorConfig
from wiro_tasks.emulator.options import EmulatorOptions, emulator_options

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wiro-sweep", prog_name="wiro-sweep", message="%(prog)s %(version)s")
def main() -> None:
    """Run text-to-video parameter sweeps on Wiro (Wan2.2-TI2V-5B), or a local emulator of it."""


@main.command()
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


def _money(value: str | None, option: str) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not an amount in USD", param_hint=option) from None
    if not amount.is_finite() or amount <= 0:
        raise click.BadParameter("must be more than 0", param_hint=option)
    return amount


@main.command()
@click.argument("grid", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Videos, manifest and journal.")
@click.option("--axis", "axes", multiple=True, metavar="NAME=V1,V2,...", help="Sweep an input (repeatable).")
@click.option("--max-concurrency", default=4, show_default=True, type=click.IntRange(1, 1000),
              help="Wiro tasks in flight at once (per shard with --shards).")  # fmt: skip
@click.option("--poll-interval", default=3.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds before a task's first poll; later ones back off x1.5.")  # fmt: skip
@click.option(
    "--poll-cap",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Longest pause between polls (x10 while Wiro's task socket is connected).",
)
@click.option("--timeout", default=3600.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds from submission until a task is cancelled or killed.")  # fmt: skip
@click.option("--budget", help="USD the bill never passes (tasks in flight counted at what they may cost).")
@click.option("--estimate-usd", default="0.10", show_default=True,
              help="Cost of a default task, used only when Tool/Detail gives no price.")  # fmt: skip
@click.option("--error-grace", default=120.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds a task may stay in task_error before it is stopped and failed.")  # fmt: skip
@click.option("--max-combinations", default=DEFAULT_MAX_COMBINATIONS, show_default=True, type=click.IntRange(1),
              help="Refuse (exit 2) a grid that expands past this many combinations.")  # fmt: skip
@click.option(
    "--shards",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Split into child runs of the sweep-shard deployment (needs a Prefect server and workers).",
)
@click.option(
    "--shared-limit", metavar="NAME", help="Prefect global concurrency limit shared by all runs on the account."
)
@click.option("--model", metavar="MODEL",
              help="Run every row on text-to-video or image-to-video (default: image-to-video for rows "
              "with a start image, text-to-video for the rest).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Count combinations and estimate the cost; submit nothing.")
@click.option("--retry-failed", is_flag=True, help="Submit again rows that failed or timed out.")
@click.option("--emulator", is_flag=True, help="Run against the bundled emulator on a free loopback port.")
@click.option("-v", "--verbose", is_flag=True, help="Show Prefect's logs.")
def run(
    grid: tuple[str, ...],
    out: str,
    axes: tuple[str, ...],
    max_concurrency: int,
    poll_interval: float,
    poll_cap: float,
    timeout: float,
    budget: str | None,
    estimate_usd: str,
    error_grace: float,
    max_combinations: int,
    shards: int,
    shared_limit: str | None,
    model: str | None,
    dry_run: bool,
    retry_failed: bool,
    emulator: bool,
    verbose: bool,
) -> None:
    """Submit every combination of the GRID files (CSV or Parquet, or directories of them).

    Rerun with the same --out to resume: nothing is paid for twice. Exit codes: 0 all rows
    succeeded, 1 some did not, 2 bad input or configuration.
    """
    limit = _money(budget, "--budget")
    estimate = _money(estimate_usd, "--estimate-usd")
    assert estimate is not None
    from flows.store.checks import check_journals, check_out_apart, check_prefect_api, check_writable

    try:
        check_out_apart(Path(out), grid)
        parsed_axes = parse_axes(axes)
        forced = model_name(model)
        frame = load_grid(grid, parsed_axes, model=forced, max_combinations=max_combinations)
    except GridError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if dry_run:
        from flows.cli.console import dry_run_report

        price, no_price = _dry_run_price(emulator, sorted(set(frame["model"])))
        try:
            click.echo(dry_run_report(frame, Path(out), estimate, limit, retry_failed, price, no_price))
        except JournalError as exc:
            _refuse(exc)
        return
    try:  # where the Prefect artifacts will link to the report
        report_base()
    except ReportURLError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if not emulator and not os.environ.get("WIRO_API_KEY"):
        click.echo("error: set WIRO_API_KEY (and WIRO_API_SECRET), or pass --emulator", err=True)
        sys.exit(2)
    if not emulator:
        try:  # every client setting, before Prefect starts, OUT is touched or anything is paid
            ClientConfig.resolve()
        except ConfigurationError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    if shards > 1 and (emulator or not os.environ.get("PREFECT_API_URL")):
        click.echo("error: --shards needs a Prefect server with workers (set PREFECT_API_URL; no --emulator)", err=True)
        sys.exit(2)
    for name, value in PREFECT_DEFAULTS.items():  # before anything imports Prefect, which reads them once
        if name == "PREFECT_LOGGING_LEVEL" and verbose:
            continue
        os.environ.setdefault(name, value)
    try:  # OUT, its journals and Prefect, before Prefect starts, OUT is written or anything is paid
        check_writable(Path(out))
        check_journals(Path(out))
        check_prefect_api()
    except (GridError, JournalError) as exc:
        _refuse(exc)
    saved = dict(os.environ)
    server = _start_emulator() if emulator else None
    try:
        from flows.cli.console import run_with_progress

        code = run_with_progress(
            {
                "grid": list(grid),
                "out": out,
                "axes": parsed_axes or None,
                "max_concurrency": max_concurrency,
                "poll_interval": poll_interval,
                "poll_cap": poll_cap,
                "timeout": timeout,
                "budget": float(limit) if limit is not None else None,
                "retry_failed": retry_failed,
                "error_grace": error_grace,
                "estimate_usd": float(estimate),
                "max_combinations": max_combinations,
                "shards": shards,
                "concurrency_limit_name": shared_limit,
                "model": forced,
            },
            frame,
            verbose,
        )
    finally:
        if server is not None:
            server.stop()
            os.environ.clear()  # the emulator's credentials were for this run only
            os.environ.update(saved)
    sys.exit(code)


def _dry_run_price(emulator: bool, models: list[str]) -> tuple[dict[str, Any], str]:
    """Each model's price from Tool/Detail for a dry run (the bundled emulator's with --emulator),
    and why a model has none. Asking costs nothing; without credentials it is not asked."""
    from wiro_tasks import WiroClient, WiroError

    if not emulator and not os.environ.get("WIRO_API_KEY"):
        return {}, "not asked (no WIRO_API_KEY)"
    server = _start_emulator() if emulator else None
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


def _refuse(problem: Exception) -> NoReturn:
    """One line on stderr and exit code 2: bad input or configuration."""
    click.echo(f"error: {problem}", err=True)
    sys.exit(2)


def _start_emulator() -> Any:
    from wiro_tasks.emulator import EmulatorServer

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


main.add_command(report_command)
main.add_command(serve_command)
main.add_command(compare_command)
