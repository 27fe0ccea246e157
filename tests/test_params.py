"""A sweep's parameters are written once (`SweepParams`): the flow's signature, the `run` options,
the child runs' parameters and the engine's settings all follow it, and money stays a Decimal,
through Prefect's JSON too. No server, no emulator: milliseconds."""

from __future__ import annotations

import inspect
import json
from dataclasses import MISSING, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, get_type_hints

import click
import pytest
from click.testing import CliRunner
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate

from flows.cli.params import cli_fields, flag_name, sweep_options
from flows.cli.run import run
from flows.engine.settings import ENGINE_PARAMETERS, SweepParams
from flows.engine.settings import Settings as EngineSettings
from flows.errors import InputError
from flows.grid import DEFAULT_MAX_COMBINATIONS
from flows.orchestrate.flow import sweep

# Every parameter away from its default: a parameter dropped on the way comes back as its default.
EVERY = SweepParams(
    grid=["prompts/a.csv", "prompts/b.parquet"],
    out="runs/night-{date}",
    axes={"seed": ["1", "2"], "steps": ["20"]},
    max_concurrency=7,
    poll_interval=0.5,
    poll_cap=9.5,
    timeout=61.0,
    budget=Decimal("0.30"),
    retry_failed=True,
    error_grace=5.0,
    estimate_usd=Decimal("0.1250"),
    max_combinations=50,
    shards=3,
    shard=1,
    concurrency_limit_name="wiro-account",
    baseline="previous",
    model="text-to-video",
    row_task_runs_max=10,
)


def test_every_parameter_in_the_example_is_off_its_default() -> None:
    off = [f.name for f in fields(SweepParams) if getattr(EVERY, f.name) == f.default]
    assert off == [], "set these in EVERY, or a dropped parameter would go unseen"


def test_the_flow_signature_has_every_parameter_with_its_type_and_default() -> None:
    """Prefect reads the flow's signature for its UI and its JSON schema; it must be SweepParams'."""
    signature = inspect.signature(sweep.fn)
    hints = get_type_hints(sweep.fn)
    expected = get_type_hints(SweepParams)
    assert list(signature.parameters) == [f.name for f in fields(SweepParams)]
    for f in fields(SweepParams):
        parameter = signature.parameters[f.name]
        assert hints[f.name] == expected[f.name], f.name
        default = inspect.Parameter.empty if f.default is MISSING else f.default
        assert parameter.default == default, f.name
        assert type(parameter.default) is type(default), f"{f.name}: {parameter.default!r} is not {default!r}"


def test_the_flow_docstring_explains_every_parameter_in_the_ui() -> None:
    properties = parameter_schema(sweep.fn).model_dump()["properties"]
    missing = [f.name for f in fields(SweepParams) if not properties[f.name].get("description")]
    assert missing == []


def test_a_deployment_run_round_trips_every_parameter_through_prefects_json() -> None:
    """As `run_deployment` sends them (the children of a sharded sweep, a run from the UI): dumped as
    JSON, checked by the server against the deployment's schema, validated back by the flow."""
    body = DeploymentFlowRunCreate(parameters=EVERY.flow_parameters()).model_dump(mode="json", exclude_unset=True)
    wire: dict[str, Any] = json.loads(json.dumps(body))["parameters"]
    assert wire["budget"] == "0.30", "money travels as exact text, not a float"
    assert wire["estimate_usd"] == "0.1250"
    schema = parameter_schema(sweep).model_dump_for_openapi()
    validate(wire, schema, raise_on_error=True)  # what the server enforces (enforce_parameter_schema)
    back = sweep.validate_parameters(wire)
    assert SweepParams.of(back) == EVERY
    assert isinstance(back["budget"], Decimal)
    assert back["budget"].as_tuple() == Decimal("0.30").as_tuple()
    assert back["estimate_usd"].as_tuple() == Decimal("0.1250").as_tuple()


def test_a_float_budget_from_a_deployment_file_becomes_its_decimal() -> None:
    """deployments.yaml says `budget: 5.0`; Python callers pass 0.055."""
    assert sweep.validate_parameters({"grid": ["g.csv"], "budget": 0.055})["budget"] == Decimal("0.055")
    assert sweep.validate_parameters({"grid": ["g.csv"], "budget": 5.0})["budget"] == Decimal("5")


def test_children_get_every_parameter_but_their_shard_and_a_share_of_the_budget() -> None:
    children = EVERY.child_parameters(["/abs/a.csv", "/abs/b.parquet"], "/abs/runs/night-2026-01-02", "limit")
    assert set(children) == {f.name for f in fields(SweepParams)} - {"shard", "shards"}
    assert children["grid"] == ["/abs/a.csv", "/abs/b.parquet"]
    assert children["out"] == "/abs/runs/night-2026-01-02"
    assert children["budget"] == Decimal("0.1")  # 0.30 over 3 shards
    assert children["baseline"] is None, "the parent compares the merged sweep, not each child"
    assert children["concurrency_limit_name"] == "limit"
    same = {"axes", "max_concurrency", "poll_interval", "poll_cap", "timeout", "retry_failed", "error_grace",
            "estimate_usd", "max_combinations", "model"}  # fmt: skip
    assert {k: children[k] for k in same} == {k: getattr(EVERY, k) for k in same}


@pytest.mark.parametrize(("budget", "shards"), [("5", 3), ("0.055", 2), ("1", 7), ("0.00000002", 3), ("10", 64)])
def test_the_shares_of_a_budget_never_add_up_past_it(budget: str, shards: int) -> None:
    params = replace(EVERY, budget=Decimal(budget), shards=shards)
    share = params.budget_share()
    assert share is not None
    assert share * shards <= Decimal(budget)
    assert Decimal(budget) - share * shards < Decimal("0.00000001") * shards, "and they lose at most a rounding"
    assert replace(EVERY, budget=None).budget_share() is None


def test_the_engine_settings_come_from_the_parameters() -> None:
    settings = EVERY.settings()
    assert {name: getattr(settings, name) for name in ENGINE_PARAMETERS} == {
        name: getattr(EVERY, name) for name in ENGINE_PARAMETERS
    }
    assert settings.budget == Decimal("0.30")
    assert isinstance(settings.budget, Decimal)
    assert settings.manifest_interval == EngineSettings().manifest_interval, "the engine's own setting stays"


def test_the_engine_settings_share_the_parameters_names_types_and_defaults() -> None:
    params, settings = get_type_hints(SweepParams), get_type_hints(EngineSettings)
    defaults = SweepParams(grid=[])
    for name in ENGINE_PARAMETERS:
        assert settings[name] == params[name], name
        assert getattr(EngineSettings(), name) == getattr(defaults, name), name
    assert set(settings) - set(ENGINE_PARAMETERS) == {"manifest_interval"}


def test_the_default_combination_limit_is_the_grids() -> None:
    assert SweepParams(grid=[]).max_combinations == DEFAULT_MAX_COMBINATIONS


def test_the_run_command_offers_every_parameter_the_command_line_takes() -> None:
    offered = {p.name for p in run.params}
    assert {f.name for f, _ in cli_fields()} <= offered
    assert offered - {f.name for f in fields(SweepParams)} == {"dry_run", "emulator", "verbose"}
    flow_only = {f.name for f in fields(SweepParams)} - {f.name for f, _ in cli_fields()}
    assert flow_only == {"shard", "baseline"}, "set by the parent run, or by a deployment"
    names = {p.name: p.opts for p in run.params}
    assert names["axes"] == ["--axis"]
    assert names["concurrency_limit_name"] == ["--shared-limit"]
    assert names["max_concurrency"] == ["--max-concurrency"]


def test_the_options_read_money_exactly_and_keep_the_bounds(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    @click.command()
    @sweep_options
    def probe(**given: Any) -> None:
        seen.append(given)

    out = str(tmp_path / "out")
    result = CliRunner().invoke(probe, ["g.csv", "--out", out, "--budget", "0.30", "--axis", "seed=1,2"])
    assert result.exit_code == 0, result.output
    [given] = seen
    assert given["budget"].as_tuple() == Decimal("0.30").as_tuple()
    assert given["estimate_usd"] == Decimal("0.10")
    assert isinstance(given["estimate_usd"], Decimal)
    assert given["axes"] == ("seed=1,2",)
    assert given["grid"] == ("g.csv",)
    assert {k: v for k, v in given.items() if k not in ("grid", "out", "axes", "budget")} == {
        k: getattr(SweepParams(grid=[]), k) for k in given if k not in ("grid", "out", "axes", "budget")
    }, "every other option defaults to the parameter's default"
    for bad, option in [(["--budget", "0"], "--budget"), (["--estimate-usd", "nan"], "--estimate-usd"),
                        (["--budget", "lots"], "--budget"), (["--max-concurrency", "0"], "--max-concurrency"),
                        (["--shards", "65"], "--shards"), (["--poll-interval", "0"], "--poll-interval")]:  # fmt: skip
        refused = CliRunner().invoke(probe, ["g.csv", "--out", out, *bad])
        assert refused.exit_code == 2, bad
        assert option in refused.output, refused.output


def test_every_option_name_is_a_flag_once() -> None:
    names = [flag_name(f, flag) for f, flag in cli_fields() if not flag.argument]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("given", "named"),
    [({"estimate_usd": Decimal(0)}, "estimate_usd"), ({"budget": Decimal("-1")}, "budget"),
     ({"budget": Decimal("1e25"), "shards": 3}, "budget"), ({"budget": Decimal("NaN")}, "budget"),
     ({"shards": 0}, "shards"), ({"max_concurrency": 5000}, "max_concurrency")],
)  # fmt: skip
def test_parameters_out_of_bounds_are_refused_whoever_sets_them(given: dict[str, Any], named: str) -> None:
    """A deployment or the UI reaches the flow without the command line's checks: a zero estimate
    would price unquoted rows at nothing, and 1e25 cannot be split into shards."""
    with pytest.raises(InputError, match=named) as refused:
        SweepParams(grid=["g.csv"], **given)
    assert refused.value.exit_code == 2


def test_a_budget_too_large_to_split_is_refused_on_the_command_line() -> None:
    from flows.cli import main

    result = CliRunner().invoke(main, ["run", "g.csv", "--out", "o", "--budget", "1e25", "--shards", "3"])
    assert result.exit_code == 2
    assert "at most 1,000,000,000" in result.output
