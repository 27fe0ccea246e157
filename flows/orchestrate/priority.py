"""A worker's sweep is batch work: its process gives the CPU to the Prefect server first.

On a machine that runs the server, its database and workers side by side, shards and the server
share the cores. At an equal priority, four shards on two cores made the server's API answer
44-66 times slower than idle (p95; docs/benchmarks.md, section 16), and 4-5 times at nice 19.
A sweep waits on Wiro for minutes; the UI is what a person waits on.

Linux shares CPU first between sessions (autogroups), then within each: a process's own nice
value counts only against the processes of its session. Prefect's process worker starts each
flow run in a session of its own, so such a run lowers its session's priority
(`/proc/self/autogroup`), which moves nobody else's, and its threads' own nice values, which is
what counts where the kernel does not group by session. A process in someone else's session (a
`wiro-sweep run` typed in a terminal) is left as it is.

`WIRO_SWEEP_NICE` sets the level: 0 to 19, 19 the lowest priority (the default); 0 leaves it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect.context import FlowRunContext

ENV_NICE = "WIRO_SWEEP_NICE"
DEFAULT_NICE = 19
AUTOGROUP = Path("/proc/self/autogroup")
THREADS = Path("/proc/self/task")


def yield_cpu_on_a_worker(logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """In a deployment's flow run (a worker started it), lower its CPU priority, and say so."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.deployment_id is None:
        return
    nice, warning = wanted_nice()
    if warning:
        logger.warning(warning)
    if yield_cpu(nice):
        logger.info("CPU priority lowered to nice %d: the Prefect server and its UI go first (%s)", nice, ENV_NICE)


def wanted_nice(environ: Mapping[str, str] = os.environ) -> tuple[int, str | None]:
    """The nice value `WIRO_SWEEP_NICE` asks for, and a warning if it is not one (then the default)."""
    text = environ.get(ENV_NICE, "").strip()
    if not text:
        return DEFAULT_NICE, None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if 0 <= value <= 19:
        return value, None
    return DEFAULT_NICE, f"{ENV_NICE}={text!r} is not a whole number from 0 to 19; using {DEFAULT_NICE}"


def yield_cpu(nice: int) -> bool:
    """Lower this process's CPU priority to `nice` if it leads a session of its own (a worker's
    flow run); never raise it. True if it did. Nothing here may stop a sweep: a kernel without
    the files, or that refuses, leaves the priority as it was."""
    if nice <= 0 or not hasattr(os, "getsid") or os.getsid(0) != os.getpid():
        return False
    lowered = _lower_autogroup(nice)
    for tid in _threads():
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                lowered = True
        except OSError:  # a thread that ended meanwhile, or a system that refuses
            continue
    return lowered


def autogroup_nice(path: Path = AUTOGROUP) -> int | None:
    """A session's autogroup nice ("/autogroup-85 nice 0"), or None: no autogroups, or a process
    still in the boot session's group, which reads empty (in a container, one never set apart)."""
    try:
        return int(path.read_text().split("nice")[-1])
    except (OSError, ValueError):
        return None


def _lower_autogroup(nice: int) -> bool:
    """Set this session's autogroup nice to `nice` if it is below it (Linux with autogroups)."""
    current = autogroup_nice()
    if current is None or current >= nice:
        return False
    try:
        AUTOGROUP.write_text(str(nice))
    except OSError:
        return False
    return True


def _threads() -> list[int]:
    """This process's thread ids (its own id alone where /proc is not there)."""
    try:
        return [int(entry.name) for entry in THREADS.iterdir()]
    except OSError:
        return [os.getpid()]
