"""Child runs of a sharded sweep: started, watched, started again or stopped by the parent run.

The shard layout, `OUT/shards.json` and the book of child runs are `flows.store.shards`; each
child holds its shard's lock (`flows.store.locks`) while it sweeps.

Which children run again, the rule:

- Within one parent run, only a child that ended CRASHED is started anew (a new key; it resumes
  from its journal), at most `MAX_LAUNCHES` launches per shard. A CANCELLED child is final:
  somebody stopped it (Cancel in the UI, or this parent while it is itself being cancelled),
  and starting it again would pay for the rows its cancel just stopped.
- A new parent run (a rerun after a crash, a Ctrl-C or a cancel) starts every child it finds
  final again, cancelled ones included: rerunning the sweep is how a user resumes it. A child
  still CANCELLING when the new parent starts counts as stopped by the previous one.
- A RUNNING child whose shard lock nobody has held for `STALE_LOCK_SECONDS` (over at least
  `STALE_LOCK_POLLS` polls) lost its worker: the parent marks it Crashed and starts it anew.
  Children not yet RUNNING hold no lock and are left alone, and a child's lock is not probed in
  its first `LOCK_SETTLE_SECONDS` of running, while it takes it. The lock alone keeps two runs
  of one shard apart, so OUT must be on storage whose flock every worker sees.

A parent that sees its own run Cancelling or Cancelled (Cancel in the UI, also for a parent
started from the command line) cancels its children, whose workers kill their Wiro tasks, and
waits up to `STOP_WAIT_SECONDS` for them to end; meanwhile it kills the tasks of every shard
whose lock is free (a child already gone, before its worker's hook does). A parent cancelled on
a worker does the same from its cancellation hook (`flows.orchestrate.hooks.kill_on_cancel`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import arun_deployment
from prefect.states import Cancelling, Crashed

from flows.engine.runner import cancel_reason, cancel_requested
from flows.store.files import MAX_SMALL_JSON_BYTES, UnreadableFileError, read_json
from flows.store.locks import lock_is_held
from flows.store.shards import SHARDS_FILE, ShardBook, shard_dir

SHARD_DEPLOYMENT = "wiro-sweep/sweep-shard"

MAX_LAUNCHES = 3  # per shard and parent run
STALE_LOCK_SECONDS = 60.0  # a RUNNING child's lock free this long: its worker is gone
STALE_LOCK_POLLS = 3  # ...and seen free at this many polls in a row
STALE_START_SECONDS = 600.0  # the same, for a shard whose first child never took its lock
LOCK_SETTLE_SECONDS = 15.0  # a child's lock is not probed until it has been RUNNING this long
STOP_WAIT_SECONDS = 120.0  # how long a cancelled parent waits for its children to stop
LOOK_MAX_RUNS = 200  # runs a look reads a request (the API's own cap on a page)
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
RELAUNCH = {StateType.CRASHED}
CANCELLED_BY_PARENT = "parent sweep stopped"


@dataclass
class ShardOutcome:
    """How the children ended, and whether the parent stopped them."""

    states: dict[int, str] = field(default_factory=dict)
    cancelled: str = ""  # why the parent run was cancelled; empty when it was not
    stopped: list[int] = field(default_factory=list)  # shards whose child runs the parent cancelled
    crashed: list[int] = field(default_factory=list)  # shards the parent found without a worker


@dataclass
class _LockWatch:
    """Per shard, since when (and at how many polls in a row) its RUNNING child held no lock."""

    running_since: dict[str, float] = field(default_factory=dict)  # flow run id -> first seen RUNNING
    free_since: dict[str, float] = field(default_factory=dict)
    free_polls: Counter[str] = field(default_factory=Counter)

    def stale(self, run_id: str, directory: Path) -> bool:
        now = time.monotonic()
        seen = self.running_since.setdefault(run_id, now)
        if now - seen < LOCK_SETTLE_SECONDS:
            return False  # a child takes its lock a moment after it starts running: never race it
        if lock_is_held(directory):
            self.forget(run_id, keep_running=True)
            return False
        self.free_since.setdefault(run_id, now)
        self.free_polls[run_id] += 1
        # A shard never swept yet has no directory: its first child may be slow to start, not dead.
        grace = STALE_LOCK_SECONDS if directory.is_dir() else STALE_START_SECONDS
        return self.free_polls[run_id] >= STALE_LOCK_POLLS and now - self.free_since[run_id] >= grace

    def forget(self, run_id: str, keep_running: bool = False) -> None:
        if not keep_running:
            self.running_since.pop(run_id, None)
        self.free_since.pop(run_id, None)
        self.free_polls.pop(run_id, None)


async def run_children(
    book: ShardBook,
    parameters: Mapping[str, Any],
    flow_run_name: str,
    poll: float = 2.0,
    on_poll: Callable[[], Awaitable[None]] | None = None,
    parent_run_id: UUID | str | None = None,
    on_stopping: Callable[[], Awaitable[None]] | None = None,
) -> ShardOutcome:
    """Start (or find again) one child run per shard and wait until all are final.

    A crashed child, or a RUNNING one whose worker is gone (its shard lock free), is started
    again; a cancelled one is not (see the module docstring). When `parent_run_id` turns
    Cancelling or Cancelled, every child is cancelled and waited for, at most `STOP_WAIT_SECONDS`,
    calling `on_stopping` at each poll meanwhile.
    """
    outcome = ShardOutcome()
    out = book.path.parent
    launches: Counter[int] = Counter()
    watch = _LockWatch()
    stop_by = 0.0
    async with get_client() as client:
        pending = set(range(book.count))
        while pending:
            if outcome.cancelled and time.monotonic() > stop_by:
                for index in pending:
                    outcome.states[index] = "still stopping"
                break
            reason, runs = await look(client, parent_run_id if not outcome.cancelled else None, book, pending)
            if reason:  # asked only until the first answer says so
                outcome.cancelled = reason
                book.save()
                outcome.stopped = await asyncio.to_thread(_stop_runs, book.runs)
                stop_by = time.monotonic() + STOP_WAIT_SECONDS
            for index in sorted(pending):
                entry = book.entry(index)
                if entry["flow_run_id"] is None:
                    if outcome.cancelled:
                        outcome.states[index] = "not started"
                        pending.discard(index)
                        continue
                    launches[index] += 1
                    book.save()  # the key is on disk before the request that uses it
                    run = await arun_deployment(
                        SHARD_DEPLOYMENT,
                        client=client,
                        parameters={**parameters, "shard": index, "shards": book.count},
                        idempotency_key=f"{book.key}-{index}-{entry['launch']}",
                        flow_run_name=f"{flow_run_name} · shards/{index}",  # as its folder, OUT/shards/<k>
                        timeout=0,
                    )
                    entry["flow_run_id"] = str(run.id)
                    book.save()
                    runs[str(run.id)] = run
                child = runs.get(entry["flow_run_id"]) or await client.read_flow_run(entry["flow_run_id"])
                kind = child.state.type if child.state else None
                # A child still CANCELLING when this parent started was stopped by the last one.
                restart = entry.pop("relaunch_if_final", False)  # asked once, at this parent's first look
                if restart and kind in FINAL and not outcome.cancelled:
                    _relaunch(entry)
                    continue
                if kind in RELAUNCH and not outcome.cancelled and launches[index] < MAX_LAUNCHES:
                    _relaunch(entry)
                elif kind in FINAL:
                    outcome.states[index] = str(child.state.name if child.state else "?")
                    pending.discard(index)
                elif kind == StateType.RUNNING and not outcome.cancelled:
                    if watch.stale(str(child.id), shard_dir(out, index)):
                        await _mark_crashed(client, child, index)
                        outcome.crashed.append(index)
                        watch.forget(str(child.id))
                else:
                    watch.forget(str(child.id))
            if pending:
                if on_poll is not None:
                    await on_poll()
                if outcome.cancelled and on_stopping is not None:
                    await on_stopping()
                await asyncio.sleep(poll)
        if parent_run_id is not None and not outcome.cancelled and "Cancelled" in outcome.states.values():
            # Prefect cancels a cancelled parent's children itself: they can end before a look saw the parent's own
            outcome.cancelled = await cancel_requested(client, parent_run_id)
        return outcome


async def look(
    client: PrefectClient, parent_run_id: UUID | str | None, book: ShardBook, pending: set[int]
) -> tuple[str, dict[str, FlowRun]]:
    """One read of the parent run and the pending children that have one: why the parent was
    cancelled (empty if it was not, or is not asked about) and the children by id. One request a
    look, whatever the number of shards; a child missing from it is read alone."""
    ids = [str(book.entry(k)["flow_run_id"]) for k in pending if book.entry(k)["flow_run_id"]]
    ids += [str(parent_run_id)] if parent_run_id is not None else []
    runs: dict[str, FlowRun] = {}
    for start in range(0, len(ids), LOOK_MAX_RUNS):
        found = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in ids[start : start + LOOK_MAX_RUNS]]))
        try:
            runs.update(
                (str(run.id), run) for run in await client.read_flow_runs(flow_run_filter=found, limit=LOOK_MAX_RUNS)
            )
        except Exception:  # the API may blink: the parent's cancel can wait a look, and each child is read alone
            continue
    parent = runs.pop(str(parent_run_id), None)
    return (cancel_reason(parent) if parent is not None else ""), runs


def _relaunch(entry: dict[str, Any]) -> None:
    entry.update(launch=entry["launch"] + 1, flow_run_id=None)


async def _mark_crashed(client: PrefectClient, child: FlowRun, index: int) -> None:
    message = (f"shards/{index}: its lock was free for {STALE_LOCK_SECONDS:g} s while the run was RUNNING "
               "(its worker is gone); the parent run starts it again")  # fmt: skip
    await client.set_flow_run_state(child.id, Crashed(message=message), force=True)


def stop_children(out: Path) -> list[int]:
    """Cancel the child runs of OUT's sharded sweep (sync: cancellation hooks call it)."""
    try:
        book = read_json(out / SHARDS_FILE, MAX_SMALL_JSON_BYTES, "shard book")
    except (FileNotFoundError, UnreadableFileError):  # no book (or none that can hold run ids): no children
        return []
    return _stop_runs(book.get("runs", {}))


def _stop_runs(runs: Mapping[str, Mapping[str, Any]]) -> list[int]:
    """Cancel these child runs (shard index -> its book entry) that have not ended; their indexes."""
    cancelled = []
    with get_client(sync_client=True) as client:
        for index, entry in sorted(runs.items(), key=lambda item: int(item[0])):
            run_id = entry.get("flow_run_id")
            if not run_id:
                continue
            try:
                child = client.read_flow_run(UUID(run_id))
                if child.state is not None and child.state.type not in FINAL:
                    # Scheduled runs go straight to Cancelled (the server's rule); running ones
                    # are stopped by their worker, which kills their Wiro tasks.
                    client.set_flow_run_state(child.id, Cancelling(message=CANCELLED_BY_PARENT))
                    cancelled.append(int(index))
            except Exception:  # one child the API cannot reach must not keep the others running
                continue
    return cancelled
