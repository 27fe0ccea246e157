"""The emulator's options are declared once (`EmulatorOptions`): each is an option of
`wiro-sweep emulator` and lands where it says, in the emulator's config or in `serve`."""

from __future__ import annotations

import inspect
from dataclasses import fields
from decimal import Decimal
from typing import Any

import click
import pytest
from click.testing import CliRunner

import wiro_tasks.emulator
from flows.cli import main
from flows.cli.emulator import emulator as emulator_command
from wiro_tasks.emulator import EmulatorConfig, Faults, serve
from wiro_tasks.emulator.options import EmulatorOptions

# A value unlike the default for every option; the test below fails if an option is added without one.
CHANGED: dict[str, Any] = {
    "host": "0.0.0.0",
    "port": 9911,
    "balance": "12.50",
    "concurrency_limit": 3,
    "cps": "0.0031",
    "queue_seconds": 0.25,
    "task_seconds": 7.5,
    "task_seconds_max": 9.5,
    "time_scale": 0.01,
    "fail_rate": 0.125,
    "error_rate": 0.0625,
    "hang_rate": 0.03,
    "error_5xx_rate": 0.04,
    "rate_429": 0.05,
    "retry_after": 4.0,
    "drop_rate": 0.06,
    "lost_run_rate": 0.07,
    "slow_rate": 0.08,
    "slow_seconds": 0.5,
    "run_latency": 1.5,
    "task_clock_offset": -200.0,
    "preview": True,
    "seed": 77,
    "model_version": "2.1-rc",
    "list_page_cap": 5,
    "stop_answer": "bare",
    "bill_kills": False,
    "list_fields": False,
    "repeat_nonces": True,
    "task_error_final": True,
    "unknown_status": "task_weird",
    "ignore_kills": True,
    "socket_frames": "documented",
    "upload_types": "documented",
}


def test_every_option_is_an_option_of_the_command_and_nothing_else_is() -> None:
    names = [f.name for f in fields(EmulatorOptions)]
    assert [p.name for p in emulator_command.params] == names, "the same options, in the same order"
    assert sorted(CHANGED) == sorted(names)
    flags = {p.name: p.opts for p in emulator_command.params}
    assert flags["error_5xx_rate"] == ["--error-5xx-rate"]
    assert flags["list_page_cap"] == ["--list-page-cap"]


def test_every_option_names_a_setting_of_the_config_its_faults_or_serve() -> None:
    config_fields = {f.name for f in fields(EmulatorConfig)}
    fault_fields = {f.name for f in fields(Faults)}
    serve_params = set(inspect.signature(serve).parameters) - {"config"}
    seen = set()
    for f in fields(EmulatorOptions):
        where, _, name = f.metadata["target"].partition(".")
        assert name in {"config": config_fields, "faults": fault_fields, "serve": serve_params}[where], f.name
        seen.add((where, name))
    assert {name for where, name in seen if where == "serve"} == serve_params, "host and port"


def test_the_commands_defaults_are_the_emulators_defaults() -> None:
    assert EmulatorOptions().config() == EmulatorConfig.from_env()
    help_text = CliRunner().invoke(main, ["emulator", "--help"]).output
    assert "[default: 3.0]" in help_text, "--task-seconds shows EmulatorConfig's default"
    assert f"[default: {EmulatorConfig.cps}]" in help_text


def test_every_option_given_on_the_command_line_reaches_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    served: dict[str, Any] = {}

    def fake_serve(config: EmulatorConfig, host: str, port: int) -> None:
        served.update(config=config, host=host, port=port)

    monkeypatch.setattr(wiro_tasks.emulator, "serve", fake_serve)
    args = EmulatorOptions(**CHANGED).to_args()
    assert len([a for a in args if a.startswith("--")]) == len(CHANGED), "every option differs from its default"
    result = CliRunner().invoke(main, ["emulator", *args])
    assert result.exit_code == 0, result.output
    config: EmulatorConfig = served["config"]
    assert (served["host"], served["port"]) == ("0.0.0.0", 9911)
    for f in fields(EmulatorOptions):
        where, _, name = f.metadata["target"].partition(".")
        if where == "serve":
            continue
        landed = getattr(config.faults if where == "faults" else config, name)
        expected = CHANGED[f.name]
        assert landed == (Decimal(expected) if isinstance(landed, Decimal) else expected), f.name
    assert config.error_interim_rate == 0.0625, "--error-rate sets the task_error interims' rate"
    assert "http://0.0.0.0:9911/v1" in result.output


def test_to_args_round_trips_through_the_command() -> None:
    options = EmulatorOptions(**CHANGED)
    context = emulator_command.make_context("emulator", options.to_args())
    assert EmulatorOptions(**context.params) == options
    assert EmulatorOptions().to_args() == [], "the defaults need no argument"
    assert isinstance({p.name: p for p in emulator_command.params}["list_page_cap"].type, click.IntRange)
