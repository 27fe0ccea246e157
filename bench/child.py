"""One sweep in a process of its own, for the scale scenario: prints wall time and peak RSS as JSON."""

from __future__ import annotations

import json
import sys

from .harness import peak_rss_mib
from .scenarios import timed_sweep


def main(grid: str, out: str) -> None:
    from pathlib import Path

    sweep_s = timed_sweep(Path(grid), Path(out), max_concurrency=100, poll_interval=0.2)
    print(json.dumps({"sweep_s": sweep_s, "rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
