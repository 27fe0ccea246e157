"""What `wiro-sweep run` shows: a live progress bar, the closing summary (the dry run's estimate is `dry_run.py`'s).

The bar stays clean: Prefect is imported (and its one-time telemetry notice printed) before it
is drawn, Prefect's console log lines go above it, and the engine's own lines about how runs
ended ("Crash detected!" for each task run a Ctrl-C cancels, "Finished in state ...") are left
out: the closing block says how the sweep ended. `-v` shows them all. Whatever is shown has the
password of any URL in it masked: Prefect's "View at <UI URL>" line is made from PREFECT_API_URL,
which may carry basic-auth credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from prefect.client.schemas.objects import State
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar
from rich.text import Text

from flows.cli.pace import Pace, watch_pace
from flows.engine.progress import Progress, listening
from flows.engine.rows import VIDEOS
from flows.engine.settings import SweepParams
from flows.errors import error_line, exit_code_of
from flows.grid import checked_grid, load_key, model_name
from flows.orchestrate.children import stop_children
from flows.orchestrate.local_server import prefect_api
from flows.store.journal import JOURNAL, fold, iter_events
from flows.store.manifest import MANIFEST_CSV, MANIFEST_PARQUET, build_manifest, read_manifest, write_manifest
from flows.store.summary import SUMMARY_COLUMNS, Summary, summarize
from flows.view.report import write_report
from wiro_tasks._config import masked_urls

console = Console(stderr=True, highlight=False)
if not console.is_terminal:  # to a pipe or a file, a message (the bar's last line too) stays one line, however long
    console.soft_wrap, console.width = True, 1000
ENGINE_NOISE = (
    "Crash detected!",
    "Finished in state",
    "Task run failed with",
    "Encountered exception during execution",
    "Execution of flow run",
    "Flow run was cancelled",
    "Received non-final state",
    "Still processing items",
)


class _DropEngineNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ENGINE_NOISE) and not record.getMessage().startswith(ENGINE_NOISE)


class _MaskURLPasswords(logging.Filter):
    """A record's message and traceback with every URL's user:password as `***`. It sits on every
    handler of Prefect's loggers (the console's, and the one that sends log lines to Prefect's API),
    so no handler sees them, whichever runs first."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = masked_urls(message), None
        record.exc_text = masked_urls(record.exc_text) if record.exc_text else record.exc_text
        record.stack_info = masked_urls(record.stack_info) if record.stack_info else record.stack_info
        return True


@contextmanager
def prefect_console(verbose: bool) -> Iterator[None]:
    """Prefect's console log lines printed through this module's console (above the live bar),
    URL passwords masked; without `verbose`, the engine's lines about how runs ended are dropped."""
    from prefect.logging.handlers import PrefectConsoleHandler

    names = [n for n in list(logging.Logger.manager.loggerDict) if n == "prefect" or n.startswith("prefect.")]
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in names)]
    every = {h for logger in loggers for h in logger.handlers}
    handlers = {h for h in every if isinstance(h, PrefectConsoleHandler)}
    saved = {h: h.console for h in handlers}
    quiet, masked = _DropEngineNoise(), _MaskURLPasswords()
    for handler in every:
        handler.addFilter(masked)
    for handler in handlers:
        handler.console = console
        if not verbose:
            handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler, original in saved.items():
            handler.console = original
            handler.removeFilter(quiet)
        for handler in every:
            handler.removeFilter(masked)


def run_with_progress(params: SweepParams, frame: pd.DataFrame, verbose: bool = False) -> int:
    """Run the sweep flow in this process under a progress bar; the exit code to use."""
    from flows.engine.stopping import kill_in_flight
    from flows.orchestrate.flow import sweep  # imports Prefect: its one-time telemetry notice prints before the bar

    out = Path(params.out)
    columns = (TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
               TextColumn("{task.fields[pace]}"), TimeElapsedColumn())  # fmt: skip
    slots = params.max_concurrency * params.shards
    with Bar(*columns, console=console, transient=False) as bar:
        task = bar.add_task("sweep", total=len(frame), detail="starting Prefect…", pace="")
        started: list[datetime] = []
        shown: dict[str, Any] = {"done": 0, "first": 0, "cost": Decimal(0), "left": None, "quiet": None}

        def counted(by_status: dict[str, int], cost: Decimal) -> str:
            counts = " ".join(f"{k} {v}" for k, v in sorted(by_status.items()) if k != "pending" and v)
            return f"${cost:.4f}" + (f" · {counts}" if counts else "")

        def paced(ended: bool = False) -> str:
            """Rows/min from the runner's own counts; the time left from the manifest's rows in flight
            (or, in a stall, how long no row has finished); once every row is done, or the sweep
            stopped, the rate alone."""
            minutes = (datetime.now(UTC) - started[0]).total_seconds() / 60
            finished = max(0, shown["done"] - shown["first"])
            rate = finished / minutes if finished and minutes > 0 else None
            left = shown["left"]
            if left is None and rate:
                left = (len(frame) - shown["done"]) / rate * 60
            ended = ended or shown["done"] >= len(frame)
            return "· " + Pace(rate, left, quiet=shown["quiet"]).text(finished=ended)

        def show(progress: Progress) -> None:
            if not started:  # the runner's first count: the sweep itself starts now
                started.append(datetime.now(UTC))
                shown["first"] = progress.done  # rows done in an earlier run
            shown.update(done=progress.done, cost=progress.cost)
            bar.update(task, completed=progress.done, detail=counted(progress.by_status, progress.cost), pace=paced())

        def show_pace(pace: Pace) -> None:
            # The runner counts a row when it ends; the manifest also knows the rows now running.
            if pace.done == shown["done"]:
                bar.update(task, detail=counted(pace.by_status, shown["cost"]))
            shown.update(left=pace.seconds_left, quiet=pace.quiet)
            bar.update(task, pace=paced())

        def since() -> datetime | None:
            return started[0] if started else None

        try:
            key = load_key(params.grid, params.axes, model_name(params.model), params.max_combinations)  # the flow's
            checked = checked_grid(frame, key)
            with (
                checked,
                prefect_console(verbose),
                prefect_api(),
                listening(show),
                watch_pace(out, since, slots, show_pace),
            ):
                state: State[Any] = asyncio.run(sweep(**params.flow_parameters(), return_state=True))  # type: ignore[arg-type]
                state = asyncio.run(_as_prefect_ended(state))
            if started:  # a stopped sweep's bar keeps no time left
                bar.update(task, pace=paced(ended=True))
        except KeyboardInterrupt:
            bar.stop()
            if params.shards > 1:
                children = len(stop_children(out))
                console.print(f"Interrupted: cancelled {children} shard run(s); their workers stop their tasks.")
                return 130
            stopped = kill_in_flight(out)
            manifest = build_manifest(frame, fold(iter_events(out / JOURNAL)), final=True)
            write_manifest(out, manifest)
            write_report(out, manifest=manifest)
            console.print(f"Interrupted: stopped {stopped} running Wiro task(s). Rerun the same command to resume.")
            return 130
    error = state.result(raise_on_failure=False) if state.is_failed() else None
    if isinstance(error, BaseException) or not (out / MANIFEST_PARQUET).exists():
        line = Text(error_line(error if isinstance(error, BaseException) else str(state.message)))
        line.stylize("red", 0, len("error:"))
        console.print(line, soft_wrap=True)  # one line, whatever the width
        return exit_code_of(error if isinstance(error, BaseException) else None)
    manifest = read_manifest(out, (*SUMMARY_COLUMNS, "output_path"))  # not every input of 100,000 rows
    summary = summarize(manifest)
    console.print(("[green]" if summary.all_succeeded else "[yellow]") + summary.message)
    if state.is_cancelled():  # a stopped sweep: a short block, exit 130, never "rows failed"
        console.print(f"Report:   {out / 'report.html'}", soft_wrap=True)  # a path stays whole to copy
        console.print(_stopped_line(state))
        return 130
    _print_where(out, manifest, summary)
    return 0 if summary.all_succeeded else 1


async def _as_prefect_ended(state: State[Any]) -> State[Any]:
    """The run's state as Prefect's server ended it: a run cancelled there as it finished in its
    own process ends Completed there, Cancelled on the server, and the server's is the truth."""
    run_id = state.state_details.flow_run_id
    if state.is_cancelled() or run_id is None:
        return state
    from prefect.client.orchestration import get_client

    try:
        async with get_client() as client:
            server = (await client.read_flow_run(run_id)).state
    except Exception as exc:  # the local state stands
        logging.getLogger("flows.cli").debug("could not read the flow run's state: %s", exc)
        return state
    return server if server is not None and (server.is_cancelled() or server.is_cancelling()) else state


def _stopped_line(state: State[Any]) -> str:
    """The last line of a sweep stopped by Ctrl-C or Cancel in Prefect: what was stopped, and what next."""
    from flows.orchestrate.flow import Stopped
    from flows.orchestrate.hooks import CTRL_C

    try:
        stopped = state.result(raise_on_failure=False)
    except Exception:  # a state read back from the server may hold no result
        stopped = None
    if not isinstance(stopped, Stopped):  # a sharded parent: why, then what it cancelled and stopped
        why, _, what = str(state.message).partition("; ")
        head = "Interrupted" if why == CTRL_C else f"Cancelled ({why})"
        return f"{head}: {what or 'stopped'}. Rerun the same command to resume."
    head = "Interrupted" if stopped.reason == CTRL_C else f"Cancelled ({stopped.reason})"
    return f"{head}: stopped {stopped.tasks} running Wiro task(s). Rerun the same command to resume."


def _print_where(out: Path, manifest: pd.DataFrame, summary: Summary) -> None:
    """Where the videos, the manifest and the report are, and the first rows that did not succeed."""
    alike: dict[tuple[str, bool], str] = {}  # one path per folder: 100,000 Paths take a second
    for path in manifest["output_path"].tolist():  # as Python's text at once: an Arrow cell at a time took 0.1 s
        if path:
            alike.setdefault((path.rpartition("/")[0], path.endswith("/")), path)
    folders = sorted({str((out / p).parent) for p in alike.values()}) or [str(out / VIDEOS)]
    console.print(f"Videos:   {', '.join(f + '/' for f in folders)}", soft_wrap=True)  # paths stay whole to copy
    console.print(f"Manifest: {out / MANIFEST_PARQUET}  {out / MANIFEST_CSV}", soft_wrap=True)
    console.print(f"Report:   {out / 'report.html'}", soft_wrap=True)
    for line in failure_lines(summary.failures):
        console.print(line, soft_wrap=True)  # a reason stays one line, to copy or grep, at any width


def failure_lines(failures: list[dict[str, str]], shown: int = 10) -> list[str]:
    """One line per reason a row did not succeed, rows that share it counted (the row's id and seed
    when it is alone); the first `shown` reasons, then how many more."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for failure in failures:
        groups.setdefault((failure["status"], failure["error"]), []).append(failure)
    lines = []
    for (status, error), rows in groups.items():
        who = f"{rows[0]['row_id'][:8]} seed {rows[0]['seed']}" if len(rows) == 1 else f"{len(rows)} rows"
        lines.append(f"  {who}: {status}: {error}")
    more = len(lines) - shown
    return lines[:shown] + (
        [f"  …and {more} more reason{'' if more == 1 else 's'} (see the manifest)"] if more > 0 else []
    )
