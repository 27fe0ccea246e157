"""The Prefect API's latency as a person's browser sees it: the request the UI's run page sends
most (a task-run filter of 50, sorted by time), four times a second, from a process of its own
(a browser is one: in the benchmark's, the probe shared the GIL with its samplers).

    python -m bench.probe API_URL      # one latency a line, in seconds, until stopped
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

EVERY = 0.25
PROBE = {"sort": "EXPECTED_START_TIME_DESC", "limit": 50}
ROOT = Path(__file__).resolve().parent.parent


class Probe:
    """Times the probe's request in a process of its own from `with` until its end."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.seconds: list[float] = []

    def __enter__(self) -> Probe:
        command = [sys.executable, "-m", "bench.probe", self.api]
        self._process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        ended = self._process.poll() is not None  # on its own: a request failed
        self._process.terminate()
        out, err = self._process.communicate()
        self.seconds = [float(line) for line in out.split()]
        if ended or not self.seconds:
            raise RuntimeError(f"the probe of {self.api} stopped: {err[-2000:]}")

    def p(self, share: float) -> float:
        """The latency below which `share` of the probes fell, in ms."""
        ordered = sorted(self.seconds)
        return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    with httpx.Client(timeout=60) as client:
        while True:
            time.sleep(EVERY)
            started = time.perf_counter()
            client.post(f"{sys.argv[1]}/task_runs/filter", json=PROBE).raise_for_status()
            print(time.perf_counter() - started, flush=True)


if __name__ == "__main__":
    main()
