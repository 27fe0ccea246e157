"""`wiro-sweep run` with its output to a pipe or a file (a log, CI): each message one line,
however long, and rows that did not succeed for the same reason said once, with their count."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from flows.cli.console import failure_lines

from .conftest import EmulatorFactory


def test_rows_with_the_same_reason_are_one_line_with_a_count() -> None:
    budget = "budget: $0.0400 spent, this task $0.0300, budget $0.05"
    failures = [{"row_id": f"{n:016x}", "seed": "42", "status": "skipped", "error": budget} for n in range(28)]
    failures.insert(3, {"row_id": "abcdef0123456789", "seed": "7", "status": "failed", "error": "model crashed"})
    assert failure_lines(failures) == [
        f"  28 rows: skipped: {budget}",
        "  abcdef01 seed 7: failed: model crashed",
    ]
    many = [{"row_id": f"{n:016x}", "seed": "1", "status": "failed", "error": f"reason {n}"} for n in range(12)]
    lines = failure_lines(many)
    assert len(lines) == 11
    assert lines[-1] == "  …and 2 more reasons (see the manifest)"


def test_output_to_a_file_keeps_each_message_on_one_line(
    prefect_api: str, make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    emulator = make_emulator(cps=Decimal("0.01"), task_seconds=0.2)
    grid = tmp_path / "grid.csv"
    grid.write_text("prompt,numFrames\n" + "".join(f"a rather long prompt number {n},9\n" for n in range(8)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k not in ("COLUMNS", "LINES")}
    # A narrow width: a message wrapped to it would be cut in two (a file's output is never wrapped).
    env.update(emulator.env(), PREFECT_API_URL=prefect_api, PREFECT_HOME=str(tmp_path / "home"), COLUMNS="40")
    log = tmp_path / "run.log"
    command = [sys.executable, "-m", "flows", "run", str(grid), "--out", str(tmp_path / "out"), "--budget", "0.034",
               "--estimate-usd", "0.002", "--max-concurrency", "3", "--poll-interval", "0.05"]  # fmt: skip
    with log.open("w") as handle:
        done = subprocess.run(command, env=env, cwd=tmp_path, stdout=handle, stderr=subprocess.STDOUT, timeout=240)
    lines = log.read_text().splitlines()
    assert done.returncode == 1, lines[-20:]
    skipped = [line for line in lines if ": skipped: budget: $" in line]
    assert skipped, lines[-20:]
    assert all(line.rstrip().endswith(("$0.034", "$0.0340")) for line in skipped), f"cut mid-message: {skipped}"
    assert not any(line.strip().startswith("$0.0") for line in lines), f"a message's end on a line of its own: {lines}"
    assert len(skipped) == len(set(skipped)), f"one line per reason: {skipped}"
