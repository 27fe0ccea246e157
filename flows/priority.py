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

It gives way as early as our code runs: importing `flows` does it in a process a worker or runner
started for a flow run (`PREFECT__FLOW_RUN_ID` set), before the engine loads the sweep's modules
and sets its run up. Four shards starting at once spent their first 10 s of two cores at the
server's priority until the flow itself gave way (docs/benchmarks.md, section 19). The flow
gives way again when it begins (flows/orchestrate/priority.py), and says so in its log.

`WIRO_SWEEP_NICE` sets the level: 0 to 19, 19 the lowest priority (the default); 0 leaves it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

ENV_NICE = "WIRO_SWEEP_NICE"
DEFAULT_NICE = 19
FLOW_RUN = "PREFECT__FLOW_RUN_ID"  # Prefect's workers and runners set it for the process of a flow run
AUTOGROUP = Path("/proc/self/autogroup")
THREADS = Path("/proc/self/task")


def yield_cpu_at_start(environ: Mapping[str, str] = os.environ) -> None:
    """In a process started for a flow run, lower its CPU priority now (a bad `WIRO_SWEEP_NICE`
    gets the default; the flow names it in its log)."""
    if environ.get(FLOW_RUN):
        yield_cpu(wanted_nice(environ)[0])


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
    flow run); never raise it. True if it runs at `nice` or below by then (lowered now, or at
    its start). Nothing here may stop a sweep: a kernel without the files, or that refuses,
    leaves the priority as it was."""
    if nice <= 0 or not hasattr(os, "getsid") or os.getsid(0) != os.getpid():
        return False
    _lower_autogroup(nice)
    for tid in _threads():
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:  # a thread that ended meanwhile, or a system that refuses
            continue
    try:
        return os.getpriority(os.PRIO_PROCESS, 0) >= nice
    except OSError:
        return False


def autogroup_nice(path: Path = AUTOGROUP) -> int | None:
    """A session's autogroup nice ("/autogroup-85 nice 0"), or None: no autogroups, or a process
    still in the boot session's group, which reads empty (in a container, one never set apart)."""
    try:
        return int(path.read_text().split("nice")[-1])
    except (OSError, ValueError):
        return None


def _lower_autogroup(nice: int) -> None:
    """Set this session's autogroup nice to `nice` if it is below it (Linux with autogroups)."""
    current = autogroup_nice()
    if current is not None and current < nice:
        with contextlib.suppress(OSError):  # a kernel that refuses leaves it as it was
            AUTOGROUP.write_text(str(nice))


def _threads() -> list[int]:
    """This process's thread ids (its own id alone where /proc is not there)."""
    try:
        return [int(entry.name) for entry in THREADS.iterdir()]
    except OSError:
        return [os.getpid()]
