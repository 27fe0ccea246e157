"""How fast a running sweep goes and how long it has left, for the terminal's progress bar.

Read off the manifest the sweep rewrites about once a second (`watch_pace`), so it needs nothing
from the runner: rows finished in this run give the rate and the typical row's duration (from
its Run request to its end); rows in flight end at their start plus that duration; queued rows
take the slots as they free. Until one row has finished there is no estimate. (The bar counts
rows/min from the runner's own counts, and uses this estimate of the time left.)
"""

from __future__ import annotations

import heapq
import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from flows.store.manifest import FINAL_STATUSES, read_manifest

REFRESH_SECONDS = 1.0
LOOK_SHARE = 20  # the pause after a look is at least this many times the CPU (its thread's) it took
PACE_COLUMNS = ("status", "submitted_at", "finished_at")
STALL_ROWS = 2.0  # no row finished for this many typical rows' time: a stall, said as such
logger = logging.getLogger("flows.cli.pace")


@dataclass(frozen=True)
class Pace:
    rows_per_minute: float | None
    seconds_left: float | None
    by_status: dict[str, int] = field(default_factory=dict)  # as the manifest read stands
    done: int = 0
    quiet: float | None = None  # seconds since a row last finished, when far longer than a row takes

    def text(self, finished: bool = False) -> str:
        """`12.5 rows/min · 3m 20s left` (dashes where nothing is known yet); in a stall, how long
        no row has finished instead of a time left that would not move; once finished, the rate alone."""
        rate = "—" if self.rows_per_minute is None else f"{max(0.0, self.rows_per_minute):.1f}"
        if finished:
            return f"{rate} rows/min"
        if self.quiet is not None:
            return f"{rate} rows/min · no row finished for {_duration(self.quiet)}"
        left = "—" if self.seconds_left is None else _duration(self.seconds_left)
        return f"{rate} rows/min · {left} left"


def _duration(seconds: float) -> str:
    seconds = round(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def time_left(
    now: float, in_flight_since: list[float], durations: list[float], queued: int, slots: int
) -> float | None:
    """Seconds until every row is done, or None before any duration is known."""
    if not durations:
        return None if queued or in_flight_since else 0.0
    typical = statistics.median(durations)
    ends = [max(now, started + typical) for started in in_flight_since]
    free = sorted(ends)[: max(1, slots)]
    free += [now] * (max(1, slots) - len(free))
    heapq.heapify(free)
    last = max(ends, default=now)
    for _ in range(queued):
        done = heapq.heappop(free) + typical
        last = max(last, done)
        heapq.heappush(free, done)
    return last - now


def pace_of(manifest: pd.DataFrame, since: datetime, now: datetime, slots: int) -> Pace:
    """The pace of the rows that finished after `since` (this run's start) in a manifest."""
    submitted = pd.to_datetime(manifest["submitted_at"], utc=True)
    finished = pd.to_datetime(manifest["finished_at"], utc=True)
    status = manifest["status"]
    mine = status.isin(FINAL_STATUSES) & finished.notna() & (finished >= pd.Timestamp(since))
    took = (finished[mine & submitted.notna()] - submitted[mine & submitted.notna()]).dt.total_seconds()
    minutes = (now - since).total_seconds() / 60
    rate = int(mine.sum()) / minutes if mine.any() and minutes > 0 else None
    running = submitted[(status == "running") & submitted.notna()]
    stamp = now.timestamp()
    left = time_left(stamp, [t.timestamp() for t in running], [float(s) for s in took if s >= 0],
                     int((status == "pending").sum()), slots)  # fmt: skip
    counts = {str(k): int(v) for k, v in status.value_counts().items()}
    quiet = _quiet(now, max([since, *finished[mine]]), took, unfinished=len(running) + counts.get("pending", 0))
    return Pace(rate, left, counts, int(status.isin(FINAL_STATUSES).sum()), quiet)


def _quiet(now: datetime, last: datetime, took: pd.Series, unfinished: int) -> float | None:
    """Seconds since a row of this run last finished (or it started), when rows are left and that
    is more than `STALL_ROWS` times a typical row's duration; else None."""
    durations = [float(s) for s in took if s >= 0]
    if not unfinished or not durations:
        return None
    quiet = (now - last).total_seconds()
    return quiet if quiet > STALL_ROWS * statistics.median(durations) else None


@contextmanager
def watch_pace(
    out: Path, since: Callable[[], datetime | None], slots: int, show: Callable[[Pace], None]
) -> Iterator[None]:
    """Call `show` with the sweep's pace every `REFRESH_SECONDS`, from a thread of its own, once
    `since()` says when the sweep started."""
    stop = threading.Event()

    def loop() -> None:
        pause = REFRESH_SECONDS
        while not stop.wait(pause):
            start = since()
            if start is None:
                continue
            began = time.thread_time()
            try:
                manifest = read_manifest(out, PACE_COLUMNS)  # not the prompts and inputs of every row
                pace = pace_of(manifest, start, datetime.now(start.tzinfo), slots)
            except Exception as exc:  # not written yet, or unreadable this once: the next look tries again
                logger.debug("no pace from %s: %s: %s", out, type(exc).__name__, exc)
                continue
            finally:  # a look reads every row (0.2 s of CPU at 100,000): at most ~5% of a core on it
                pause = max(REFRESH_SECONDS, LOOK_SHARE * (time.thread_time() - began))
            show(pace)

    watcher = threading.Thread(target=loop, name="wiro-sweep-pace", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=5)
