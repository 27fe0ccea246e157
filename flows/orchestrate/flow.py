"""The `wiro-sweep` flow: every combination of a prompt grid, as videos and a manifest under OUT.

    wiro-sweep run prompts/ --out out        # the command line; deployments run `sweep` itself

Credentials come from the environment of whoever runs the flow (`WIRO_API_KEY`, `WIRO_API_SECRET`,
`WIRO_BASE_URL`), or from the Prefect Secret blocks `wiro-api-key` / `wiro-api-secret`; never
from parameters. Running it again with the same `out` resumes: finished rows are kept, rows with
a task are waited for, and no combination is paid for twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import acreate_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.states import Cancelled, Failed

from flows.engine.progress import listening
from flows.engine.runner import SweepRunner
from flows.engine.settings import DEFAULTS, SweepParams
from flows.errors import SweepError
from flows.grid import model_name
from flows.memory import give_back
from flows.orchestrate.artifacts import (
    ProgressArtifact,
    artifact_scope,
    progress_description,
    publish_artifacts,
    run_name,
    summary_rows,
)
from flows.orchestrate.credentials import load_credentials
from flows.orchestrate.fanout import ACCOUNT_LIMIT, ensure_concurrency_limit, run_shards
from flows.orchestrate.hooks import kill_on_cancel, stopping_on_signals
from flows.orchestrate.nightly import compare_with_baseline
from flows.orchestrate.outcomes import show_row_outcomes
from flows.orchestrate.priority import yield_cpu_on_a_worker
from flows.store.checks import check_one_sweep, check_out
from flows.store.gridcache import keep_grid, kept_grid
from flows.store.journal import Journal, keep_fold
from flows.store.locks import out_lock
from flows.store.outs import expand_out
from flows.store.shards import check_out_mode, select_shard, shard_dir
from flows.store.summary import summarize
from flows.store.thumbnails import save_thumbnails
from flows.view.report import write_report
from wiro_tasks.prefect_tasks import wiro_session


@dataclass(frozen=True)
class Stopped:
    """What a cancelled sweep's final state holds: why it stopped, and how many Wiro tasks it stopped."""

    reason: str
    tasks: int = 0


class OutNotWritableError(SweepError, RuntimeError):
    """OUT stopped taking writes mid-sweep (a full disk, an I/O error): the command exits with 1."""

    exit_code = 1


def _run_name() -> str:
    """The flow run's name before its grid is read (`demo-out · demo.csv`); rows are added once it is."""
    context = FlowRunContext.get()
    params = (context.parameters if context else None) or {}
    try:
        shard = params.get("shard")
        return run_name(resolve_out(str(params.get("out") or "out")), list(params.get("grid") or []),
                        shard=None if shard is None else int(shard), shards=int(params.get("shards") or 1))  # fmt: skip
    except Exception:  # a name must never stop a run: its parameters are checked later, with a clear message
        return "wiro-sweep"


async def _rename(name: str) -> None:
    """Name the running flow run, in the UI and in its own log lines."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    async with get_client() as client:
        await client.set_flow_run_name(context.flow_run.id, name)
    context.flow_run.name = name


@flow(name="wiro-sweep", flow_run_name=_run_name, persist_result=False, on_cancellation=[kill_on_cancel])
async def sweep(
    grid: list[str],
    out: str = DEFAULTS.out,
    axes: dict[str, list[str]] | None = DEFAULTS.axes,
    max_concurrency: int = DEFAULTS.max_concurrency,
    poll_interval: float = DEFAULTS.poll_interval,
    poll_cap: float = DEFAULTS.poll_cap,
    timeout: float = DEFAULTS.timeout,
    budget: Decimal | None = DEFAULTS.budget,
    retry_failed: bool = DEFAULTS.retry_failed,
    error_grace: float = DEFAULTS.error_grace,
    estimate_usd: Decimal = DEFAULTS.estimate_usd,
    max_combinations: int = DEFAULTS.max_combinations,
    shards: int = DEFAULTS.shards,
    shard: int | None = DEFAULTS.shard,
    concurrency_limit_name: str | None = DEFAULTS.concurrency_limit_name,
    baseline: str | None = DEFAULTS.baseline,
    model: str | None = DEFAULTS.model,
    row_task_runs_max: int = DEFAULTS.row_task_runs_max,
) -> dict[str, Any] | State[Any]:
    """Submit every combination of `grid` x `axes` to Wan2.2-TI2V-5B on Wiro; save videos and a manifest.

    Args:
        grid: CSV or Parquet files (or directories of them) whose columns are Wiro's input names.
        out: Directory for videos/, the manifests and the journal of one grid's sweep; reuse it to
            resume. `{date}` in it becomes the run's scheduled date (UTC), e.g. runs/nightly-{date};
            `{run}` the run's short id, e.g. runs/adhoc-{date}-{run}: an OUT per run.
        axes: Extra values to sweep, e.g. {"seed": ["1", "2"]}: a cartesian product over every row.
        max_concurrency: Most Wiro tasks in flight at once (per shard when sharded).
        poll_interval: Seconds before the first status poll; later polls back off.
        poll_cap: Longest pause between polls (ten times longer while Wiro's task socket pushes events).
        timeout: Seconds from submission after which a task is cancelled or killed.
        budget: USD the bill never passes (split evenly over shards): each submission must fit beside
            what was billed and what every task in flight may cost; running per-second tasks are
            stopped before they could pass it. Exact with a price from Tool/Detail.
        retry_failed: Submit again the rows that failed or timed out.
        error_grace: Seconds a task may stay in task_error before it is recorded as failed.
        estimate_usd: Cost of a default-sized task when Tool/Detail gives no price (then the
            budget is kept on estimates, not guaranteed).
        max_combinations: Refuse grids that expand past this.
        shards: Split the grid by row_id into this many child runs of the `sweep-shard` deployment.
        shard: Set by the parent run: which part this child run sweeps.
        concurrency_limit_name: A Prefect global concurrency limit that every run sharing the Wiro
            account takes a slot of per task in flight (created with `max_concurrency` if missing).
        baseline: Compare the finished sweep with this OUT, or with "previous": the latest earlier
            `{date}` OUT of the same `out` pattern. Regressions end the run Failed (flows/orchestrate/nightly.py).
        model: Run every row on this model ("text-to-video", "image-to-video" or Wiro's full name).
            Unset, each row runs the model its inputs call for: image-to-video with a start image
            (`inputImage`, a file every worker can read, or `inputImageUrl`), else text-to-video.
        row_task_runs_max: Up to this many rows to run, each row's submit and wait are task runs of
            their own; past it they run without, shown as one task run per 1,000 rows and one for
            each row that does not succeed (flows/engine/steps.py).
    """
    params = SweepParams.of(locals())  # every parameter, as the child runs and the engine get them
    logger = get_run_logger()
    yield_cpu_on_a_worker(logger)  # a worker's run is batch work: the server and its UI go first
    out_dir = resolve_out(out)
    check_out(out_dir, grid)  # a grid directory as OUT, or an OUT nobody can write: exit 2 before anything
    frame = kept_grid(out_dir, grid, axes, model=model_name(model), max_combinations=max_combinations)
    check_one_sweep(out_dir, frame)  # another grid's paid rows in OUT would drop from its manifest and report
    check_out_mode(out_dir, shards, shard)  # an OUT swept in another mode would pay for its rows again
    await asyncio.to_thread(keep_grid, out_dir, frame)  # the next run's, unexpanded
    await asyncio.to_thread(save_thumbnails, frame, out_dir)  # the start images' pictures for the report
    if shards > 1 and shard is None:
        return await _sweep_in_shards(params, frame, out_dir)

    credentials = load_credentials()
    work_dir = out_dir
    if shard is not None:
        frame = select_shard(frame, shard, shards)
        work_dir = shard_dir(out_dir, shard)
    await _rename(run_name(out_dir, grid, rows=len(frame), shard=shard, shards=shards))
    if concurrency_limit_name:
        await ensure_concurrency_limit(concurrency_limit_name, max_concurrency)
    settings = params.settings()
    logger.info("%d combinations -> %s (%s auth)", len(frame), work_dir, "signed" if credentials.signed else "key")
    with out_lock(work_dir):
        journal = Journal(work_dir)
        try:
            async with wiro_session(credentials):
                runner = SweepRunner(frame, work_dir, journal, settings)
                shown = await _progress_artifact(work_dir, len(frame), shard)
                with listening(shown.update), stopping_on_signals():
                    result = await runner.run()
                del runner, frame  # every row's state and input: the report, built next, needs room at 100,000
                give_back()
                await shown.flush()
        finally:
            journal.close()
        await asyncio.to_thread(keep_fold, journal.path)  # the next run folds only the lines after it
        manifest = result.manifest
        if result.out_error is not None:
            message = (f"{result.out_error}; stopped submitting. Free space and rerun the same command"
                       " (nothing is paid twice)")  # fmt: skip
            return Failed(message=message, data=OutNotWritableError(message))
        await _show_rows(manifest, set(result.not_succeeded), stopped=bool(result.cancelled))
        # Under the lock: a parent sees the child alive, and a cancellation hook waits for it.
        scope = artifact_scope(out) if shard is None else None  # a shard's rows are in its parent's summary
        reported = await _report(manifest, work_dir, scope, result.strays, result.kept)
    if result.cancelled:
        stopped = Stopped(result.cancelled, result.stopped)
        return Cancelled(message=f"{stopped.reason}; stopped {stopped.tasks} Wiro task(s)", data=stopped)
    return await compare_with_baseline(reported, out, out_dir, baseline)


async def _sweep_in_shards(params: SweepParams, frame: pd.DataFrame, out_dir: Path) -> dict[str, Any] | State[Any]:
    """The parent run of a sharded sweep: its child runs to their end, then the merged report."""
    await _rename(run_name(out_dir, params.grid, rows=len(frame), shards=params.shards))
    get_run_logger().info("%d combinations in %d shards -> %s", len(frame), params.shards, out_dir)
    limit_name = params.concurrency_limit_name or ACCOUNT_LIMIT
    children = params.child_parameters([str(Path(g).resolve()) for g in params.grid], str(out_dir), limit_name)
    await ensure_concurrency_limit(limit_name, params.max_concurrency)
    with out_lock(out_dir), stopping_on_signals():  # Ctrl-C cancels the children as Cancel in the UI does
        manifest, cancelled, ended = await run_shards(frame, out_dir, params.shards, children)
    reported = await _report(manifest, out_dir, artifact_scope(params.out), shards=ended)
    if cancelled:
        return Cancelled(message=cancelled)
    return await compare_with_baseline(reported, params.out, out_dir, params.baseline)


def resolve_out(out: str) -> Path:
    """OUT as an absolute path: `{date}` is the run's scheduled date (UTC), `{run}` its short id."""
    if "{date}" not in out and "{run}" not in out:
        return Path(out).resolve()
    from prefect.runtime import flow_run

    return expand_out(out, flow_run.scheduled_start_time, flow_run.id)


async def _show_rows(manifest: pd.DataFrame, waited: set[str], stopped: bool) -> None:
    """Every row that did not succeed as a task run the UI's state filter finds (`flows.orchestrate.outcomes`);
    a stopped run waits less for its task runs to reach the server (its worker's kill grace runs)."""
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    try:
        others = manifest[manifest["status"] != "succeeded"]  # as records: the few, not 100,000
        await show_row_outcomes(UUID(str(flow_run.id)), summary_rows(others), waited, stopped)
    except Exception as exc:  # what the UI shows must never cost the sweep its end
        get_run_logger().warning("could not show every row's outcome as a task run: %s", exc)


async def _progress_artifact(out: Path, rows: int, shard: int | None) -> ProgressArtifact:
    """The run's live progress bar; a shard's run keeps none (its parent's shows every shard's rows)."""
    if shard is not None:
        return ProgressArtifact(None)
    return ProgressArtifact(await acreate_progress_artifact(0.0, description=progress_description(out, rows)))


async def _report(
    manifest: pd.DataFrame,
    out: Path,
    scope: str | None,
    strays: tuple[str, ...] = (),
    kept: tuple[str, ...] = (),
    shards: Mapping[int, str] | None = None,
) -> dict[str, Any] | State[Any]:
    summary = summarize(manifest, strays, kept)
    await asyncio.to_thread(write_report, out, manifest=manifest)
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        async with get_client() as client:
            await publish_artifacts(client, context.flow_run.id, out, manifest, scope, strays, kept, shards)
    if not summary.all_succeeded:
        return Failed(message=summary.message)
    return summary.as_dict()
