"""`wiro-sweep report`, `serve` and `compare`: the command-line edges of `flows.view`.

The group loads this module only when one of these commands runs (`flows.cli.base.LazyGroup`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flows.cli.base import SweepCommand
from flows.errors import InputError, error_line
from flows.store.manifest import MANIFEST_PARQUET
from flows.view.compare import COMPARE_CSV, COMPARE_PARQUET, Thresholds, compare_outs, one_line
from flows.view.compare_page import write_comparison
from flows.view.report import write_report
from flows.view.serve import DEFAULT_PORT, REPORT_URL_ENV, is_loopback, serve_folders, trusted_hosts
from flows.view.videodiff import SAMPLES


@click.command("report", cls=SweepCommand)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--rows", default="prompt", show_default=True, metavar="INPUTS", help="Input(s) down the sheet, comma-separated."
)
@click.option(
    "--cols", metavar="INPUTS", help="Input(s) across, comma-separated; default: every swept input but the rows."
)
def report(out: Path, rows: str, cols: str | None) -> None:
    """Write OUT/report.html: the sweep's videos as a contact sheet, with totals and filters."""
    if not (out / MANIFEST_PARQUET).is_file():
        raise InputError(f"{out} has no {MANIFEST_PARQUET}; run 'wiro-sweep run ... --out {out}' first")
    try:
        path = write_report(out, rows=rows, cols=cols)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    click.echo(str(path))


@click.command("serve", cls=SweepCommand)
@click.argument("out", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    metavar="HOST",
    help="Interface to listen on (loopback: this machine).",
)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--allow-host", "allowed", multiple=True, metavar="NAME",
              help="Also answer requests addressed to NAME (a DNS alias or proxy of it); repeatable.")  # fmt: skip
def serve(out: tuple[Path, ...], host: str, port: int, allowed: tuple[str, ...]) -> None:
    """Serve the reports, manifests and videos of the OUT folders (or of the folders they hold), read-only."""
    missing = [str(o) for o in out if not o.is_dir()]
    if missing:
        raise InputError(f"{missing[0]} is not a directory")
    url = f"http://{host}:{port}"
    click.echo(f"Serving {', '.join(str(o.resolve()) for o in out)} at {url}/ (read-only; Ctrl-C stops)")
    click.echo(f"Prefect artifacts link here when the flow runs have {REPORT_URL_ENV}={url}")
    if not is_loopback(host):
        click.echo(f"warning: listening on {host}: anyone who reaches it can watch these videos", err=True)
    hosts = trusted_hosts(host, allowed)
    click.echo(f"Answering requests addressed to {', '.join(hosts)} (others get 400; --allow-host adds a name)")
    serve_folders(out, hosts, host=host, port=port)


@click.command("compare", cls=SweepCommand)
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("current", type=click.Path(path_type=Path))
@click.option("--psnr-threshold", default=Thresholds.psnr_db, show_default=True, type=click.FloatRange(0, 100),
              help="A video whose mean PSNR (dB) against BASELINE's is under this has changed.")  # fmt: skip
@click.option("--max-elapsed-ratio", default=Thresholds.elapsed_ratio, show_default=True, type=click.FloatRange(min=1),
              help="A row more than this many times slower than in BASELINE regressed.")  # fmt: skip
@click.option("--max-cost-ratio", default=Thresholds.cost_ratio, show_default=True, type=click.FloatRange(min=1),
              help="A row more than this many times dearer than in BASELINE regressed.")  # fmt: skip
@click.option("--samples", default=SAMPLES, show_default=True, type=click.IntRange(1, 100),
              help="Frames compared per video, at the same timestamps on both sides.")  # fmt: skip
def compare(baseline: Path, current: Path, psnr_threshold: float, max_elapsed_ratio: float,
            max_cost_ratio: float, samples: int) -> None:  # fmt: skip
    """Compare CURRENT with BASELINE, two OUTs of the same grid; write CURRENT/compare.{csv,parquet,html}.

    Exit codes: 0 nothing regressed, 1 rows regressed (or are new or gone), 2 bad input or a video
    that would not decode (its row is marked; the others are compared).
    """
    thresholds = Thresholds(psnr_threshold, max_elapsed_ratio, max_cost_ratio, samples)
    comparison = compare_outs(baseline, current, thresholds)  # a CompareError ends the command with exit 2
    try:
        page = write_comparison(comparison)
    except OSError as exc:
        raise InputError(f"CURRENT {comparison.current}: cannot write the comparison ({one_line(exc)})") from None
    click.echo("\n".join(comparison.lines()))
    click.echo(f"wrote {page} (and {COMPARE_CSV}, {COMPARE_PARQUET})")
    bad = comparison.undecodable
    if len(bad):
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        click.echo(error_line(f"row {bad['row_id'].iloc[0]}: {bad['video_error'].iloc[0]}{more}"), err=True)
    sys.exit(comparison.exit_code)
