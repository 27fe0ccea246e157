"""deployments.yaml checked offline: Prefect itself only warns on a bad file and skips it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel, RawScheduleConfig
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parent.parent


def load() -> PrefectYamlModel:
    return PrefectYamlModel.model_validate(yaml.safe_load((ROOT / "deployments.yaml").read_text()))


def test_schema_and_expected_deployments() -> None:
    model = load()
    names = {d.name for d in model.deployments}
    assert {"nightly-regression", "adhoc-sweep", "sweep-shard"} <= names
    for deployment in model.deployments:
        assert deployment.work_pool is not None
        assert deployment.work_pool.name == "wiro-sweep"


@pytest.mark.parametrize("name", ["nightly-regression", "adhoc-sweep", "sweep-shard"])
def test_entrypoint_imports_and_parameters_bind(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    [deployment] = [d for d in load().deployments if d.name == name]
    assert deployment.entrypoint is not None
    flow: Flow[..., Any] = load_flow_from_entrypoint(deployment.entrypoint)
    flow.validate_parameters(dict(deployment.parameters))
    for schedule in deployment.schedules or []:
        assert isinstance(schedule, RawScheduleConfig)
        flow.validate_parameters({**deployment.parameters, **schedule.parameters})


def test_nightly_schedule_is_a_valid_cron_with_its_own_parameters() -> None:
    from prefect.client.schemas.schedules import CronSchedule

    [nightly] = [d for d in load().deployments if d.name == "nightly-regression"]
    [schedule] = nightly.schedules or []
    assert isinstance(schedule, RawScheduleConfig)
    assert schedule.cron is not None
    CronSchedule(cron=schedule.cron, timezone=schedule.timezone)  # raises on a bad expression
    assert schedule.parameters.get("budget"), "the nightly run is capped"
    for path in nightly.parameters["grid"]:
        assert (ROOT / path).exists(), f"{path} is missing"


def test_no_credentials_in_the_file() -> None:
    text = (ROOT / "deployments.yaml").read_text().lower()
    parsed: dict[str, Any] = yaml.safe_load(text)
    for deployment in parsed["deployments"]:
        assert not {"api_key", "api_secret", "wiro_api_key", "wiro_api_secret"} & set(deployment["parameters"])
        assert "job_variables" not in (deployment.get("work_pool") or {})


def test_parameter_schema_is_editable_in_the_ui() -> None:
    from flows.orchestrate.flow import sweep

    schema = parameter_schema(sweep.fn).model_dump()
    properties = schema["properties"]
    assert {"grid", "out", "axes", "max_concurrency", "budget", "shards"} <= set(properties)
    assert properties["max_concurrency"]["type"] == "integer"
    assert "description" in properties["budget"], "docstring Args become UI help"
