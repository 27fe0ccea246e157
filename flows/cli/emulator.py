"""`wiro-sweep emulator`: a local emulator of the Wiro API, for demos and tests."""

from __future__ import annotations

from decimal import Decimal

import click

from flows.cli.base import SweepCommand
from wiro_tasks.emulator.config import DEFAULT_MODEL_VERSION, EmulatorConfig, Faults


@click.command(cls=SweepCommand)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--balance", default="100.00", show_default=True, help="Account balance in USD.")
@click.option("--concurrency-limit", type=int, help="Fixed limit; default follows the balance.")
@click.option("--cps", default=str(EmulatorConfig.cps), show_default=True, help="USD per second.")
@click.option("--queue-seconds", default=0.5, show_default=True, type=float)
@click.option("--task-seconds", default=3.0, show_default=True, type=float, help="Accept to end.")
@click.option("--task-seconds-max", type=float, help="Draw each task's time up to this.")
@click.option("--time-scale", default=1.0, show_default=True, type=float, help="Real s per model s.")
@click.option("--fail-rate", default=0.0, show_default=True, type=float)
@click.option("--error-rate", default=0.0, show_default=True, type=float, help="task_error interims.")
@click.option("--hang-rate", default=0.0, show_default=True, type=float)
@click.option("--error-5xx-rate", default=0.0, show_default=True, type=float)
@click.option("--rate-429", default=0.0, show_default=True, type=float)
@click.option("--retry-after", default=1.0, show_default=True, type=float)
@click.option("--drop-rate", default=0.0, show_default=True, type=float)
@click.option("--lost-run-rate", default=0.0, show_default=True, type=float)
@click.option("--slow-rate", default=0.0, show_default=True, type=float)
@click.option("--slow-seconds", default=2.0, show_default=True, type=float)
@click.option("--preview", is_flag=True, help="Small videos, for load tests.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the emulator's dice.")
@click.option("--model-version", default=DEFAULT_MODEL_VERSION, show_default=True,
              help="Another version changes some videos (slightly or wholly), fails or slows some tasks.")  # fmt: skip
@click.option(
    "--list-page-cap",
    type=click.IntRange(1),
    help="Answer Task/List with at most this many tasks per page, whatever the limit asked (default: no cap).",
)
def emulator(
    host: str,
    port: int,
    balance: str,
    concurrency_limit: int | None,
    cps: str,
    queue_seconds: float,
    task_seconds: float,
    task_seconds_max: float | None,
    time_scale: float,
    fail_rate: float,
    error_rate: float,
    hang_rate: float,
    error_5xx_rate: float,
    rate_429: float,
    retry_after: float,
    drop_rate: float,
    lost_run_rate: float,
    slow_rate: float,
    slow_seconds: float,
    preview: bool,
    seed: int,
    model_version: str,
    list_page_cap: int | None,
) -> None:
    """Serve a local emulator of the Wiro API (credentials from WIRO_API_KEY / WIRO_API_SECRET)."""
    from wiro_tasks.emulator import serve

    try:
        config = EmulatorConfig.from_env(
            balance=Decimal(balance),
            concurrency_limit=concurrency_limit,
            cps=Decimal(cps),
            queue_seconds=queue_seconds,
            task_seconds=task_seconds,
            task_seconds_max=task_seconds_max,
            time_scale=time_scale,
            fail_rate=fail_rate,
            error_interim_rate=error_rate,
            hang_rate=hang_rate,
            preview=preview,
            seed=seed,
            list_page_cap=list_page_cap,
            faults=Faults(
                error_5xx_rate=error_5xx_rate,
                rate_429=rate_429,
                retry_after=retry_after,
                drop_rate=drop_rate,
                lost_run_rate=lost_run_rate,
                slow_rate=slow_rate,
                slow_seconds=slow_seconds,
            ).updated({"model_version": model_version}),
        )
    except ArithmeticError:
        raise click.BadParameter("--balance and --cps must be decimal numbers") from None
    except ValueError as exc:  # a fault rate or time out of range, or a bad version, named by its setting
        hint = "--model-version" if str(exc).startswith("model_version") else None
        raise click.BadParameter(str(exc), param_hint=hint) from None
    mode = "signature" if config.api_secret else "key-only"
    click.echo(
        f"Wiro emulator on http://{host}:{port}/v1 ({mode} auth, key from WIRO_API_KEY"
        f"{' or the demo key ' + repr(config.api_key) if config.api_key == 'emulator' else ''})"
    )
    click.echo(f"Point a client at it: export WIRO_BASE_URL=http://{host}:{port}/v1")
    serve(config, host=host, port=port)
