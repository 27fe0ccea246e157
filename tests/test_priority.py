"""A worker's sweep lowers its own CPU priority, and nobody else's (flows/priority.py).

Each case runs in a process of its own, as a worker's flow run is: started in a session of its
own (or not), with a thread already running, as Prefect's are by then.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flows.priority import DEFAULT_NICE, ENV_NICE, FLOW_RUN, autogroup_nice, wanted_nice

HAS_AUTOGROUP = Path("/proc/self/autogroup").is_file()
BASE = os.nice(0)  # the suite's own nice value, which its children start from

PROBE = """
import json, os, sys, threading
from flows.orchestrate.priority import yield_cpu_on_a_worker
from flows.priority import autogroup_nice, yield_cpu
started = threading.Event()
threading.Thread(target=lambda: (started.set(), threading.Event().wait()), daemon=True).start()
started.wait()
if sys.argv[1] == "worker-less":
    yield_cpu_on_a_worker(None)  # outside a deployment's run: nothing, and no logger asked for
    lowered = False
else:
    lowered = yield_cpu(int(sys.argv[1]))
threads = [int(t) for t in os.listdir("/proc/self/task")]
print(json.dumps({"lowered": lowered, "threads": [os.getpriority(os.PRIO_PROCESS, t) for t in threads],
                  "group": autogroup_nice()}))
"""


def probe(argument: str, *, own_session: bool, nice: int = 0) -> dict[str, object]:
    command = [sys.executable, "-c", PROBE, argument]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    done = subprocess.run(command, capture_output=True, text=True, start_new_session=own_session, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def own_group_nice() -> int | None:
    """None where the kernel has no autogroups, or this suite runs in the boot session's group."""
    return autogroup_nice()


def test_a_session_of_its_own_gives_way_in_its_group_and_every_thread() -> None:
    before = own_group_nice()
    seen = probe("19", own_session=True)
    assert seen["lowered"] is True
    assert seen["threads"] == [19, 19], "the thread started before it lowered too"
    assert seen["group"] == (19 if HAS_AUTOGROUP else None), "the session's share, where the kernel shares by session"
    assert own_group_nice() == before, "the caller's session is not moved"


def test_a_process_in_someone_elses_session_is_left_as_it_is() -> None:
    before = own_group_nice()
    seen = probe("19", own_session=False)
    assert seen == {"lowered": False, "threads": [BASE, BASE], "group": before}
    assert own_group_nice() == before, "a terminal's session keeps its priority"


def test_priority_is_never_raised() -> None:
    seen = probe("10", own_session=True, nice=15)
    assert seen["threads"] == [min(19, BASE + 15)] * 2, "a process already below stays below"


def test_outside_a_deployments_run_nothing_moves() -> None:
    seen = probe("worker-less", own_session=True)
    assert seen["threads"] == [BASE, BASE]
    assert seen["group"] == (0 if HAS_AUTOGROUP else None)


def test_the_level_comes_from_the_environment_and_a_bad_one_is_named() -> None:
    assert wanted_nice({}) == (DEFAULT_NICE, None)
    assert wanted_nice({ENV_NICE: " 7 "}) == (7, None)
    assert wanted_nice({ENV_NICE: "0"}) == (0, None), "0 leaves the priority"
    for bad in ("-5", "20", "low", "1.5"):
        nice, warning = wanted_nice({ENV_NICE: bad})
        assert nice == DEFAULT_NICE
        assert warning is not None
        assert ENV_NICE in warning
        assert repr(bad) in warning
        assert "0 to 19" in warning


def test_level_zero_leaves_it() -> None:
    seen = probe("0", own_session=True)
    assert seen["lowered"] is False
    assert seen["threads"] == [BASE, BASE]


def test_a_group_that_reads_empty_is_no_group(tmp_path: Path) -> None:
    """A process never set apart from the boot session (a container's CI job) reads its autogroup
    file empty; the sweep then leaves the group alone, and says nothing is wrong."""
    (tmp_path / "empty").write_text("")
    (tmp_path / "set").write_text("/autogroup-85 nice 7\n")
    assert autogroup_nice(tmp_path / "empty") is None
    assert autogroup_nice(tmp_path / "missing") is None
    assert autogroup_nice(tmp_path / "set") == 7


IMPORT = """
import json, os
import flows  # what Prefect's engine does first with the sweep's entrypoint
from flows.priority import autogroup_nice
print(json.dumps({"nice": os.getpriority(os.PRIO_PROCESS, 0), "group": autogroup_nice()}))
"""


def imported(env: dict[str, str], *, own_session: bool = True) -> dict[str, object]:
    """Import `flows` in a process started as a worker starts a flow run's (or not)."""
    clean = {k: v for k, v in os.environ.items() if k not in (FLOW_RUN, ENV_NICE)}
    done = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True, check=True,
                          env={**clean, **env}, start_new_session=own_session)  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_flow_runs_process_gives_way_as_soon_as_it_imports_the_sweep() -> None:
    """Four shards starting at once set up for 10 s at the server's priority before the flow
    itself gave way: importing `flows` in a flow run's process does it first."""
    run = {FLOW_RUN: "0b5e8a4c-9f57-4a8e-a1a8-3c3d0e6f7b21"}
    assert imported(run) == {"nice": 19, "group": 19 if HAS_AUTOGROUP else None}
    assert imported({**run, ENV_NICE: "7"})["nice"] == max(7, BASE), "never raised"
    assert imported({**run, ENV_NICE: "0"})["nice"] == BASE, "0 leaves it"
    assert imported({**run, ENV_NICE: "high"})["nice"] == 19, "a bad level gets the default (the flow names it)"


def test_importing_the_sweep_elsewhere_moves_nothing() -> None:
    before = own_group_nice()
    assert imported({}) == {"nice": BASE, "group": 0 if HAS_AUTOGROUP else None}, "a terminal's command, a test"
    assert imported({FLOW_RUN: "0b5e8a4c-9f57-4a8e-a1a8-3c3d0e6f7b21"}, own_session=False)["nice"] == BASE
    assert own_group_nice() == before
