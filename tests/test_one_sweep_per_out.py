"""An OUT holds one sweep: a grid whose rows leave out paid rows OUT holds is refused (exit 2,
both grids named) before anything is written or paid, so no paid row ever drops from a manifest;
and the ad-hoc deployment's default OUT is one per run, not one per day."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from flows.cli import main
from flows.store.manifest import read_manifest
from wiro_tasks.emulator import EmulatorServer

from .nights import FRAMES, Row, night

ROOT = Path(__file__).resolve().parent.parent
FOX = "A red fox trotting through fresh snow at dawn"
OWL = "An owl blinking on a branch at night"


def grid(path: Path, *prompts: str) -> Path:
    """A grid of `prompts`, each row as `night` sweeps it (seed 1, `FRAMES` frames)."""
    path.write_text("prompt,seed,numFrames\n" + "".join(f'"{p}",1,{FRAMES}\n' for p in prompts))
    return path


def swept(out: Path) -> Path:
    """OUT as a finished sweep of `nightly.csv` left it: one paid, downloaded row."""
    night(out, [Row(FOX, cost="0.0123")])
    return out


def test_another_grid_into_an_out_holding_paid_rows_is_refused_naming_both(
    emulator: EmulatorServer, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    wiro_env(emulator)
    out = swept(tmp_path / "out")
    other = grid(tmp_path / "other.csv", OWL)
    for extra in (["--dry-run"], []):
        result = CliRunner().invoke(main, ["run", str(other), "--out", str(out), *extra])
        assert result.exit_code == 2, result.output
        line = result.output.strip()
        assert len(line.splitlines()) == 1, line
        assert "holds 1 paid row(s) of nightly.csv that" in line
        assert str(other) in line
        assert "--out of its own" in line
    assert emulator.account.stats()["counters"].get("run", 0) == 0, "no Run request"
    manifest = read_manifest(out)
    assert manifest["prompt"].tolist() == [FOX], "the paid row stays in the manifest"
    assert str(manifest["cost_usd"].iloc[0]).startswith("0.0123")


def test_a_grid_that_keeps_the_paid_rows_may_grow_in_its_out(
    emulator: EmulatorServer, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    wiro_env(emulator)
    out = swept(tmp_path / "out")
    grown = grid(tmp_path / "grown.csv", FOX, OWL)
    result = CliRunner().invoke(main, ["run", str(grown), "--out", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "1 already done" in result.output


def test_the_same_grid_with_other_axis_values_is_told_so(
    emulator: EmulatorServer, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    wiro_env(emulator)
    out = swept(tmp_path / "out")
    same = grid(tmp_path / "nightly.csv", FOX)
    result = CliRunner().invoke(main, ["run", str(same), "--out", str(out), "--axis", "seed=2", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "holds 1 paid row(s) of an earlier sweep of" in result.output
    assert "(other --axis values, or rows since removed)" in result.output


@pytest.mark.usefixtures("prefect_api")
def test_a_deployment_run_of_another_grid_is_refused_before_any_run_request(
    emulator: EmulatorServer, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    from flows.orchestrate.flow import sweep

    wiro_env(emulator)
    out = swept(tmp_path / "out")
    other = grid(tmp_path / "other.csv", OWL)
    state: Any = asyncio.run(sweep(grid=[str(other)], out=str(out), return_state=True))  # type: ignore[arg-type]
    assert state.is_failed()
    assert "holds 1 paid row(s) of nightly.csv" in str(state.message)
    assert emulator.account.stats()["counters"].get("run", 0) == 0
    assert read_manifest(out)["prompt"].tolist() == [FOX]


def test_the_adhoc_deployment_sweeps_each_run_into_an_out_of_its_own() -> None:
    deployments = yaml.safe_load((ROOT / "deployments.yaml").read_text())["deployments"]
    adhoc = next(d for d in deployments if d["name"] == "adhoc-sweep")
    assert "{run}" in adhoc["parameters"]["out"], adhoc["parameters"]["out"]


@pytest.mark.usefixtures("prefect_api")
def test_two_runs_into_one_out_pattern_with_run_in_it_get_two_outs(
    emulator: EmulatorServer, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    from flows.orchestrate.flow import sweep

    wiro_env(emulator)
    pattern = str(tmp_path / "runs" / "adhoc-{date}-{run}")
    for prompts in ((FOX,), (OWL,)):
        state: Any = asyncio.run(sweep(grid=[str(grid(tmp_path / "g.csv", *prompts))], out=pattern,
                                       poll_interval=0.05, return_state=True))  # type: ignore[arg-type]  # fmt: skip
        assert state.is_completed(), state.message
    outs = sorted((tmp_path / "runs").iterdir())
    assert len(outs) == 2, outs
    assert sorted(read_manifest(o)["prompt"].iloc[0] for o in outs) == sorted([FOX, OWL])
