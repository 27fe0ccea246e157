"""Run a command and write its wall seconds and peak RSS to a file: `python -m bench.peak FILE CMD...`.

A child's peak RSS (`ru_maxrss`) starts from its parent's RSS at the fork, and a benchmark's
process grows to hundreds of MiB after its first scenarios. This small process forks the command
instead, so its peak is the command's own. It exits with the command's exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> None:
    target, command = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    with open(target, "w") as handle:
        json.dump({"s": elapsed, "mib": usage.ru_maxrss / 1024}, handle)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
