"""`wiro-sweep run` as a process of its own, for the tests that kill it (SIGKILL, Ctrl-C) or fill
its disk: started in its own process group, with its output in a log file, and waited for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

FLOWS = ("-m", "flows")  # `python -m flows run ...`: the command as a user runs it
# The same command with one constant changed: the emulator's Task/List is consistent at once, so the
# three scans that prove a lost Run answer created no task are spread over about a second instead
# of 20 s (the rule itself, three complete scans, stays). Everything else is as a user runs it.
FAST_SCANS = (
    "-c",
    "import runpy, flows.engine.matching; flows.engine.matching.FIND_RETRY_DELAYS = (0.3, 0.6); "
    "runpy.run_module('flows', run_name='__main__')",
)


def start(args: list[str], env: dict[str, str], log: Path, python: Sequence[str] = FLOWS) -> subprocess.Popen[bytes]:
    """`python <python> run <args>`, its output appended to `log`, in a process group of its own
    (so that `os.killpg` reaches whatever it starts)."""
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, *python, "run", *args],
            env=env,
            stdout=handle,
            stderr=handle,
            start_new_session=True,
            # A shell's background jobs inherit SIGINT ignored; a user's terminal never does.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def finish(process: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    """The exit code; a process still running after `timeout` is killed and its log shown."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"still running after {timeout} s:\n{log.read_text()[-3000:]}") from None


def wait_until(check: Callable[[], bool], seconds: float = 60) -> None:
    """Wait for `check` to come true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def wait_for(check: Callable[[], bool], process: subprocess.Popen[bytes], seconds: float, every: float = 0.005) -> bool:
    """Whether `check` came true before `seconds` passed or the process ended; checked `every`
    seconds (5 ms by default: a moment to kill at is caught close; slower for a costly check)."""
    deadline = time.monotonic() + seconds
    while not check():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True
