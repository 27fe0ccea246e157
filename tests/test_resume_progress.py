"""The count a resumed sweep shows: rows an earlier run ended count as done only when this run
does not work on them again, so the count starts where it truly stands and never goes back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from flows.engine.progress import Progress, listening
from flows.orchestrate.flow import sweep
from wiro_tasks.emulator import EmulatorServer

from .conftest import EmulatorFactory

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_a_resumed_sweeps_count_starts_at_the_rows_it_keeps_and_never_goes_back(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    wiro_env(make_emulator())
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": ["fine", *(f"fails {n} [emulator:fail]" for n in range(3))], "numFrames": 9}).to_csv(
        grid, index=False
    )
    out = tmp_path / "out"

    def run(**params: object) -> list[Progress]:
        seen: list[Progress] = []
        with listening(seen.append):
            asyncio.run(sweep(grid=[str(grid)], out=str(out), poll_interval=0.05, return_state=True, **params))  # type: ignore[arg-type]
        return seen

    run()
    counts = [p.done for p in run(retry_failed=True)]  # the three failed rows run again
    assert counts[0] == 1, f"only the row kept is done at the start: {counts}"
    assert counts == sorted(counts), f"the count never goes back: {counts}"
    assert counts[-1] == 4
