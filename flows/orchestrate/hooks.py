"""What stops a sweep from outside: Cancel in the Prefect UI or CLI, and SIGTERM.

- `kill_on_cancel`, the flow's cancellation hook, runs in the worker once a cancelled run's
  process is gone: it stops the Wiro tasks the run left running (a parent: cancels its child runs
  and stops the tasks of shards nobody sweeps any more), and writes the final manifest, report and
  artifacts the run's process could not.
- `stopping_on_signals` makes SIGTERM (how a worker stops a cancelled run's process) and Ctrl-C
  stop the sweep as Cancel does, within Prefect's kill grace.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import Flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.logging.loggers import flow_run_logger
from prefect.states import Cancelling

from flows.engine.stopping import kill_in_flight
from flows.grid import DEFAULT_MAX_COMBINATIONS, load_grid, model_name
from flows.orchestrate.artifacts import artifact_scope, final_progress, publish_artifacts
from flows.orchestrate.children import stop_children
from flows.orchestrate.credentials import load_credentials
from flows.store.journal import JOURNAL, fold, iter_events
from flows.store.locks import directory_lock
from flows.store.manifest import build_manifest, write_manifest
from flows.store.outs import expand_out
from flows.store.shards import shard_dir, shard_dirs
from flows.view.report import REPORT, write_report

HOOK_LOCK_WAIT_SECONDS = 40.0  # a cancelled run's process finishes within Prefect's 30 s kill grace
SHARD_LOCK_WAIT_SECONDS = 10.0


def kill_on_cancel(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Cancelling the flow run (Prefect UI or CLI) stops the Wiro tasks it left running.

    A child run stops its shard's tasks; a parent run cancels its children (their workers stop
    their tasks) and stops the tasks of shards nobody sweeps any more (their lock is free).
    """
    out = flow_run.parameters.get("out")
    if not out:
        return
    root = expand_out(str(out), flow_run.expected_start_time, flow_run.id)
    logger = flow_run_logger(flow_run, flow)
    shard = flow_run.parameters.get("shard")
    if shard is not None:
        # This run's process is gone by now (or letting go of the lock): a lock still held after
        # a while is another run's, sweeping the shard again, and its tasks are not ours to stop.
        with directory_lock(shard_dir(root, int(shard)), wait=SHARD_LOCK_WAIT_SECONDS) as held:
            if not held:
                logger.warning("flow run cancelled: shard %s is swept by another run; its tasks are left to it", shard)
                return
            count = kill_in_flight(shard_dir(root, int(shard)), load_credentials)
    elif int(flow_run.parameters.get("shards") or 1) > 1:
        children = stop_children(root)
        logger.warning("flow run cancelled: cancelled shard run(s) %s", ", ".join(map(str, children)) or "none")
        count = stop_unattended(root)
    else:
        with directory_lock(root, wait=HOOK_LOCK_WAIT_SECONDS) as held:  # the run's own process first
            if not held:
                logger.warning("flow run cancelled: %s is swept by another run; its tasks are left to it", root)
                return
            count = kill_in_flight(root, load_credentials)
            if count or _report_behind(root):  # the run's process died before it wrote the final truth
                _write_final(flow, flow_run, root, logger)
    logger.warning("flow run cancelled: stopped %d Wiro task(s)", count)


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
        manifest = build_manifest(frame, fold(iter_events(out / JOURNAL)), final=True)
        write_manifest(out, manifest)
        write_report(out, manifest=manifest)

        async def artifacts() -> None:
            async with get_client() as client:
                scope = artifact_scope(str(params.get("out") or out))  # an unsharded run's: its own summary
                await publish_artifacts(client, flow_run.id, out, manifest, scope)
                await final_progress(client, flow_run.id, manifest)

        with ThreadPoolExecutor(max_workers=1) as pool:  # the hook may be called on a running event loop
            pool.submit(asyncio.run, artifacts()).result()
        logger.warning("flow run cancelled: wrote the final manifest, report and summary of %s", out)
    except Exception as exc:  # the journal keeps the truth; the next run writes them
        logger.error("flow run cancelled: could not write the final manifest and report of %s: %s", out, exc)


def stop_unattended(out: Path) -> int:
    """Kill the Wiro tasks of every shard that no run sweeps (its lock is free), under its lock.

    Shards whose lock is held belong to a live child run, which stops its own tasks when cancelled.
    """
    count = 0
    for directory in shard_dirs(out):
        with directory_lock(directory) as free:
            if free:
                count += kill_in_flight(directory, load_credentials)
    return count


CTRL_C = "stopped by Ctrl-C"


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """SIGTERM (how a worker stops the process of a run cancelled in the UI) and the first Ctrl-C
    (SIGINT) stop the sweep as Cancel does: its Wiro tasks are stopped and recorded with what
    they cost, the manifest, the report and the summary show it, and the run ends Cancelled.
    Prefect's own handling would raise mid-row and leave the run Crashed (Ctrl-C) or Running
    (SIGTERM) with a traceback. A second Ctrl-C is handled as before this: it interrupts at
    once. In the main thread only (the command line, a worker's flow process); elsewhere
    nothing changes."""
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    cancelling: set[asyncio.Task[None]] = set()

    def cancel(why: str) -> None:
        cancelling.add(loop.create_task(_cancel_self(why)))

    def on_sigint() -> None:
        _restore(loop, signal.SIGINT, previous[signal.SIGINT])  # a second Ctrl-C interrupts
        cancel(CTRL_C)

    try:
        loop.add_signal_handler(signal.SIGTERM, cancel, "stopped by SIGTERM")
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (RuntimeError, ValueError, NotImplementedError):  # not the main thread of the main interpreter
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            _restore(loop, sig, handler)


def _restore(loop: asyncio.AbstractEventLoop, sig: int, handler: Any) -> None:
    loop.remove_signal_handler(sig)
    signal.signal(sig, handler)


async def _cancel_self(why: str) -> None:
    """Make sure the run is Cancelling, which the runner watches for (a worker's cancel already is)."""
    from prefect.runtime import flow_run

    get_run_logger().warning("%s: stopping the sweep's Wiro tasks, then recording how each row ended", why)
    if not flow_run.id:
        return
    async with get_client() as client:
        run = await client.read_flow_run(flow_run.id)
        if run.state is None or not (run.state.is_cancelling() or run.state.is_cancelled()):
            await client.set_flow_run_state(flow_run.id, Cancelling(message=why), force=True)
