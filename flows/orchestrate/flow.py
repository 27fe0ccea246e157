"""The `wiro-sweep` flow: every combination of a prompt grid, as videos and a manifest under OUT.

    wiro-sweep run prompts/ --out out        # the command line; deployments run `sweep` itself

Credentials come from the environment of whoever runs the flow (`WIRO_API_KEY`, `WIRO_API_SECRET`,
`WIRO_BASE_URL`), or from the Prefect Secret blocks `wiro-api-key` / `wiro-api-secret`; never
from parameters. Running it again with the same `out` resumes: finished rows are kept, rows with
a task are waited for, and no combination is paid for twice.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
from prefect import Flow, flow, get_run_logger
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import FlowRunContext
from prefect.logging.loggers import flow_run_logger
from prefect.states import Cancelled, Cancelling, Failed

from flows.engine.budget import DEFAULT_ESTIMATE_USD
from flows.engine.progress import Progress, listening, publish
from flows.engine.runner import SweepRunner
from flows.engine.settings import Settings
from flows.engine.stopping import kill_in_flight
from flows.grid import DEFAULT_MAX_COMBINATIONS, GridError, load_grid, model_name
from flows.orchestrate.artifacts import (
    artifact_scope,
    final_progress,
    progress_description,
    publish_artifacts,
    run_name,
    summary_rows,
)
from flows.orchestrate.credentials import load_credentials
from flows.orchestrate.nightly import compare_with_baseline
from flows.orchestrate.outcomes import show_row_outcomes
from flows.store.checks import check_out
from flows.store.journal import JOURNAL, Journal, fold, read_events
from flows.store.manifest import FINAL_STATUSES, build_manifest, write_manifest
from flows.store.shards import (
    ShardBook,
    check_out_mode,
    directory_lock,
    merged_states,
    run_children,
    select_shard,
    shard_dir,
    shard_dirs,
    stop_children,
    sweep_key,
)
from flows.store.summary import summarize
from flows.store.thumbnails import save_thumbnails
from flows.view.report import REPORT, write_report
from wiro_tasks.prefect_tasks import wiro_session

LOCK_WAIT_SECONDS = 2.0


class OutNotWritableError(RuntimeError):
    """OUT stopped taking writes mid-sweep (a full disk, an I/O error): the command exits with 1."""

    exit_code = 1


ACCOUNT_LIMIT = "wiro-account"


@contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """One sweep at a time per OUT: a second one would submit the same rows again. It waits a
    moment for the lock: a sharded parent probing whether a child is alive holds it an instant."""
    out.mkdir(parents=True, exist_ok=True)
    with directory_lock(out, wait=LOCK_WAIT_SECONDS) as held:
        if not held:
            raise GridError(str(out), "another sweep is running with this --out; wait for it")
        yield


def _kill_on_cancel(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Cancelling the flow run (Prefect UI or CLI) stops the Wiro tasks it left running.

    A child run stops its shard's tasks; a parent run cancels its children (their workers stop
    their tasks) and stops the tasks of shards nobody sweeps any more (their lock is free).
    """
    out = flow_run.parameters.get("out")
    if not out:
        return
    root = Path(str(out).replace("{date}", flow_run.expected_start_time.strftime("%Y-%m-%d")
                                  if flow_run.expected_start_time else "")).resolve()  # fmt: skip
    logger = flow_run_logger(flow_run, flow)
    shard = flow_run.parameters.get("shard")
    if shard is not None:
        # This run's process is gone by now (or letting go of the lock): a lock still held after
        # a while is another run's, sweeping the shard again, and its tasks are not ours to stop.
        with directory_lock(shard_dir(root, int(shard)), wait=10.0) as held:
            if not held:
                logger.warning("flow run cancelled: shard %s is swept by another run; its tasks are left to it", shard)
                return
            count = kill_in_flight(shard_dir(root, int(shard)), load_credentials)
    elif int(flow_run.parameters.get("shards") or 1) > 1:
        children = stop_children(root)
        logger.warning("flow run cancelled: cancelled shard run(s) %s", ", ".join(map(str, children)) or "none")
        count = _stop_unattended(root)
    else:
        with directory_lock(root, wait=HOOK_LOCK_WAIT_SECONDS) as held:  # the run's own process first
            if not held:
                logger.warning("flow run cancelled: %s is swept by another run; its tasks are left to it", root)
                return
            count = kill_in_flight(root, load_credentials)
            if count or _report_behind(root):  # the run's process died before it wrote the final truth
                _write_final(flow, flow_run, root, logger)
    logger.warning("flow run cancelled: stopped %d Wiro task(s)", count)


HOOK_LOCK_WAIT_SECONDS = 40.0  # a cancelled run's process finishes within Prefect's 30 s kill grace


def _report_behind(out: Path) -> bool:
    """Whether the journal changed after the report was last written (or there is none)."""
    journal, report = out / JOURNAL, out / REPORT
    return journal.exists() and (not report.exists() or report.stat().st_mtime_ns < journal.stat().st_mtime_ns)


def _write_final(flow: Flow[Any, Any], flow_run: FlowRun, out: Path, logger: Any) -> None:
    """From the cancellation hook (a process of its own): the manifest, the report, the summary
    artifacts and the progress as the journal ends, for a run whose process could not write them."""
    params = flow_run.parameters
    try:
        frame = load_grid(params.get("grid") or [], params.get("axes"), model=model_name(params.get("model")),
                          max_combinations=int(params.get("max_combinations") or DEFAULT_MAX_COMBINATIONS))  # fmt: skip
        manifest = build_manifest(frame, fold(read_events(out / JOURNAL)), final=True)
        write_manifest(out, manifest)
        write_report(out)

        async def artifacts() -> None:
            async with get_client() as client:
                await publish_artifacts(
                    client, flow_run.id, out, manifest, artifact_scope(str(params.get("out") or out))
                )
                await final_progress(client, flow_run.id, manifest)

        with ThreadPoolExecutor(max_workers=1) as pool:  # the hook may be called on a running event loop
            pool.submit(asyncio.run, artifacts()).result()
        logger.warning("flow run cancelled: wrote the final manifest, report and summary of %s", out)
    except Exception as exc:  # the journal keeps the truth; the next run writes them
        logger.error("flow run cancelled: could not write the final manifest and report of %s: %s", out, exc)


def _stop_unattended(out: Path) -> int:
    """Kill the Wiro tasks of every shard that no run sweeps (its lock is free), under its lock.

    Shards whose lock is held belong to a live child run, which stops its own tasks when cancelled.
    """
    count = 0
    for directory in shard_dirs(out):
        with directory_lock(directory) as free:
            if free:
                count += kill_in_flight(directory, load_credentials)
    return count


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


@flow(name="wiro-sweep", flow_run_name=_run_name, persist_result=False, on_cancellation=[_kill_on_cancel])
async def sweep(
    grid: list[str],
    out: str = "out",
    axes: dict[str, list[str]] | None = None,
    max_concurrency: int = 4,
    poll_interval: float = 3.0,
    poll_cap: float = 30.0,
    timeout: float = 3600.0,
    budget: float | None = None,
    retry_failed: bool = False,
    error_grace: float = 120.0,
    estimate_usd: float = float(DEFAULT_ESTIMATE_USD),
    max_combinations: int = DEFAULT_MAX_COMBINATIONS,
    shards: int = 1,
    shard: int | None = None,
    concurrency_limit_name: str | None = None,
    baseline: str | None = None,
    model: str | None = None,
) -> dict[str, Any] | State[Any]:
    """Submit every combination of `grid` x `axes` to Wan2.2-TI2V-5B on Wiro; save videos and a manifest.

    Args:
        grid: CSV or Parquet files (or directories of them) whose columns are Wiro's input names.
        out: Directory for videos/, the manifests and the journal; reuse it to resume. `{date}` in
            it becomes the run's scheduled date (UTC), e.g. runs/nightly-{date}.
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
    """
    logger = get_run_logger()
    out_dir = resolve_out(out)
    check_out(out_dir, grid)  # a grid directory as OUT, or an OUT nobody can write: exit 2 before anything
    frame = load_grid(grid, axes, model=model_name(model), max_combinations=max_combinations)
    check_out_mode(out_dir, shards, shard)  # an OUT swept in another mode would pay for its rows again
    await asyncio.to_thread(save_thumbnails, frame, out_dir)  # the start images' pictures for the report
    if shards > 1 and shard is None:
        await _rename(run_name(out_dir, grid, rows=len(frame), shards=shards))
        logger.info("%d combinations in %d shards -> %s", len(frame), shards, out_dir)
        limit_name = concurrency_limit_name or ACCOUNT_LIMIT
        children: dict[str, Any] = {
            "grid": [str(Path(g).resolve()) for g in grid],
            "out": str(out_dir),
            "axes": axes,
            "max_concurrency": max_concurrency,
            "poll_interval": poll_interval,
            "poll_cap": poll_cap,
            "timeout": timeout,
            "budget": budget / shards if budget is not None else None,
            "retry_failed": retry_failed,
            "error_grace": error_grace,
            "estimate_usd": estimate_usd,
            "max_combinations": max_combinations,
            "concurrency_limit_name": limit_name,
            "model": model,
        }
        await ensure_concurrency_limit(limit_name, max_concurrency)
        with out_lock(out_dir):
            manifest, cancelled = await _run_shards(frame, out_dir, shards, children)
        reported = await _report(manifest, out_dir, artifact_scope(out))
        if cancelled:
            return Cancelled(message=cancelled)
        return await compare_with_baseline(reported, out, out_dir, baseline)

    credentials = load_credentials()
    work_dir = out_dir
    if shard is not None:
        frame = select_shard(frame, shard, shards)
        work_dir = shard_dir(out_dir, shard)
    await _rename(run_name(out_dir, grid, rows=len(frame), shard=shard, shards=shards))
    if concurrency_limit_name:
        await ensure_concurrency_limit(concurrency_limit_name, max_concurrency)
    settings = Settings(
        max_concurrency=max_concurrency,
        poll_interval=poll_interval,
        poll_cap=poll_cap,
        timeout=timeout,
        budget=Decimal(str(budget)) if budget is not None else None,
        retry_failed=retry_failed,
        error_grace=error_grace,
        estimate_usd=Decimal(str(estimate_usd)),
        concurrency_limit_name=concurrency_limit_name,
    )
    logger.info("%d combinations -> %s (%s auth)", len(frame), work_dir, "signed" if credentials.signed else "key")
    with out_lock(work_dir):
        journal = Journal(work_dir)
        try:
            async with wiro_session(credentials):
                runner = SweepRunner(frame, work_dir, journal, settings)
                artifact = await acreate_progress_artifact(0.0, description=progress_description(work_dir, len(frame)))
                shown = ProgressArtifact(artifact)
                with listening(shown.update), stopping_on_sigterm():
                    result = await runner.run()
                await shown.flush()
        finally:
            journal.close()
        manifest = result.manifest
        if result.out_error is not None:
            message = (f"{result.out_error}; stopped submitting. Free space and rerun the same command"
                       " (nothing is paid twice)")  # fmt: skip
            return Failed(message=message, data=OutNotWritableError(message))
        await _show_rows(manifest, set(result.not_succeeded))
        # Under the lock: a parent sees the child alive, and a cancellation hook waits for it.
        reported = await _report(manifest, work_dir, artifact_scope(out, shard), result.strays)
    if result.cancelled:
        return Cancelled(message=f"{result.cancelled}; stopped its Wiro tasks")
    return await compare_with_baseline(reported, out, out_dir, baseline)


def resolve_out(out: str) -> Path:
    """OUT as an absolute path, with `{date}` replaced by the run's scheduled date (UTC)."""
    if "{date}" in out:
        from prefect.runtime import flow_run

        when = flow_run.scheduled_start_time or datetime.now(UTC)
        out = out.replace("{date}", when.astimezone(UTC).strftime("%Y-%m-%d"))
    return Path(out).resolve()


async def ensure_concurrency_limit(name: str, limit: int) -> None:
    """Create the global concurrency limit `name` with `limit` slots unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
            get_run_logger().info("created global concurrency limit %r with %d slots", name, limit)


async def _run_shards(frame: pd.DataFrame, out: Path, count: int, children: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """Run the children to their end; the merged manifest, and why the run was cancelled (or "")."""
    from prefect.runtime import flow_run

    book = ShardBook.open(out, count, sweep_key(out, frame))
    book.restart()
    artifact = await acreate_progress_artifact(
        0.0, description=progress_description(out, len(frame)) + f" ({count} shards)"
    )

    def merge(final: bool = False) -> pd.DataFrame:
        manifest = build_manifest(frame, merged_states(out, count), final=final)
        write_manifest(out, manifest)
        return manifest

    async def progress() -> None:
        manifest = await asyncio.to_thread(merge)
        counts = {str(k): int(v) for k, v in manifest["status"].value_counts().items()}
        done = sum(n for k, n in counts.items() if k in FINAL_STATUSES)
        publish(Progress(len(manifest), done, counts, sum(manifest["cost_usd"], Decimal(0))))
        await aupdate_progress_artifact(artifact, 100.0 * done / max(1, len(manifest)))

    logger = get_run_logger()
    stopped = 0

    async def stop_unattended() -> None:
        # A cancelled child's process dies well before its worker's hook (a new process) kills its
        # tasks: once its lock is free, stopping them here saves that wait.
        nonlocal stopped
        try:
            stopped += await asyncio.to_thread(_stop_unattended, out)
        except Exception as exc:  # the children's own hooks stop them too
            logger.warning("could not stop the Wiro tasks of stopped shards: %s", exc)

    outcome = await run_children(
        book,
        children,
        str(flow_run.name or "wiro-sweep"),
        on_poll=progress,
        parent_run_id=flow_run.id or None,
        on_stopping=stop_unattended,
    )
    logger.info("shards finished: %s", ", ".join(f"{k}: {v}" for k, v in sorted(outcome.states.items())))
    if outcome.crashed:
        logger.warning("shard run(s) %s lost their worker (their lock was free): marked Crashed, started again",
                       sorted(set(outcome.crashed)))  # fmt: skip
    cancelled = ""
    if not outcome.cancelled:
        others = sorted(k for k, v in outcome.states.items() if v == "Cancelled")
        if others:
            logger.warning("shard run(s) %s were cancelled, so not started again; rerun the sweep to resume them",
                           others)  # fmt: skip
    else:
        await stop_unattended()
        shards = ", ".join(map(str, outcome.stopped)) or "none running"
        cancelled = (f"{outcome.cancelled}; cancelled shard run(s) {shards} (their workers stop their Wiro tasks)"
                     f" and stopped {stopped} Wiro task(s) of shards no run was sweeping any more")  # fmt: skip
        logger.warning("flow run cancelled: %s", cancelled)
    await progress()
    return merge(final=True), cancelled


class ProgressArtifact:
    """Keeps the run's progress artifact current: at most one update a second, one at a time."""

    def __init__(self, artifact_id: Any) -> None:
        self.artifact_id = artifact_id
        self.share = 0.0
        self._sent = 0.0
        self._task: asyncio.Task[None] | None = None

    def update(self, progress: Progress) -> None:
        self.share = 100.0 * progress.done / max(1, progress.total)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        await asyncio.sleep(1.0)  # gathers the rows that finish meanwhile into one update
        if self.share != self._sent:
            share = self.share
            await aupdate_progress_artifact(self.artifact_id, share)
            self._sent = share

    async def flush(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sent != self.share:
            await aupdate_progress_artifact(self.artifact_id, self.share)
            self._sent = self.share


@contextmanager
def stopping_on_sigterm() -> Iterator[None]:
    """SIGTERM (how a worker stops the process of a run cancelled in the UI) stops the sweep as
    Cancel does: its Wiro tasks are stopped and recorded with what they cost, and the manifest,
    the report and the summary show it, within Prefect's 30 s grace. Prefect's own handler would
    raise TerminationSignal mid-row and leave the run Running with a traceback. In the main
    thread only (a worker's flow process); elsewhere nothing changes."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(_cancel_self()))
    except (RuntimeError, ValueError, NotImplementedError):  # not the main thread of the main interpreter
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)


async def _cancel_self() -> None:
    """Make sure the run is Cancelling, which the runner watches for (a worker's cancel already is)."""
    from prefect.runtime import flow_run

    get_run_logger().warning("SIGTERM: stopping the sweep's Wiro tasks, then recording how each row ended")
    if not flow_run.id:
        return
    async with get_client() as client:
        run = await client.read_flow_run(flow_run.id)
        if run.state is None or not (run.state.is_cancelling() or run.state.is_cancelled()):
            await client.set_flow_run_state(flow_run.id, Cancelling(message="stopped by SIGTERM"), force=True)


async def _show_rows(manifest: pd.DataFrame, waited: set[str]) -> None:
    """Every row that did not succeed as a task run the UI's state filter finds (`flows.orchestrate.outcomes`)."""
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    try:
        await show_row_outcomes(UUID(str(flow_run.id)), summary_rows(manifest), waited)
    except Exception as exc:  # what the UI shows must never cost the sweep its end
        get_run_logger().warning("could not show every row's outcome as a task run: %s", exc)


async def _report(
    manifest: pd.DataFrame, out: Path, scope: str, strays: tuple[str, ...] = ()
) -> dict[str, Any] | State[Any]:
    summary = summarize(manifest, strays)
    await asyncio.to_thread(write_report, out)
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        async with get_client() as client:
            await publish_artifacts(client, context.flow_run.id, out, manifest, scope, strays)
    if not summary.all_succeeded:
        return Failed(message=summary.message)
    return summary.as_dict()
