"""The emulator's model version, over real HTTP: what another version renders, fails or slows.

Videos are downloaded from the emulator and decoded by FFmpeg (PyAV) strictly; PSNR is computed
here on the decoded luma, independently of flows/view/videodiff.py.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from wiro_tasks import TextToVideoInput, WiroClient, sign
from wiro_tasks.emulator import EmulatorConfig, EmulatorServer, create_app
from wiro_tasks.emulator.config import DEFAULT_MODEL_VERSION, Faults
from wiro_tasks.emulator.versions import drift
from wiro_tasks.emulator.video import render_mp4
from wiro_tasks.inputs import TEXT_TO_VIDEO, Value

from .conftest import API_KEY, API_SECRET, FAST_POLL, NO_WAIT, EmulatorFactory
from .mp4 import decode_mp4

FOX = TextToVideoInput(prompt="a red fox running through snow", seed="7", num_frames=33)
ONLY: dict[str, Any] = {"version_noise_rate": 0.0, "version_redraw_rate": 0.0, "version_fail_rate": 0.0,
                        "version_slow_rate": 0.0}  # fmt: skip


def psnr(a: bytes, b: bytes) -> float:
    """Mean luma PSNR over every frame of two videos of the same size and length, decoded strictly."""
    first, _, complaints_a = decode_mp4(a)
    second, _, complaints_b = decode_mp4(b)
    assert complaints_a == complaints_b == [], "both decode without a complaint from FFmpeg"
    assert len(first) == len(second)
    values = []
    for x, y in zip(first, second, strict=True):
        mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
        values.append(float("inf") if mse == 0 else 10 * np.log10(255**2 / mse))
    return float(np.mean(values))


def faults(emulator: EmulatorServer, changes: dict[str, Any] | None = None) -> httpx.Response:
    """GET or POST /_emulator/faults, signed like an API call (so it passes a guarded knob too)."""
    nonce = str(time.time_ns())
    headers = {"x-api-key": API_KEY, "x-nonce": nonce, "x-signature": sign(API_KEY, API_SECRET, nonce)}
    url = f"{emulator.root_url}/_emulator/faults"
    if changes is None:
        return httpx.get(url, headers=headers)
    return httpx.post(url, json=changes, headers=headers)


def fetch(emulator: EmulatorServer, inputs: TextToVideoInput = FOX) -> tuple[Any, bytes]:
    """Run a task to its end; the task, and its video's bytes (b"" when it failed)."""
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT) as wiro:
        task = wiro.wait(wiro.run(inputs).task_id, schedule=FAST_POLL)
        if not task.succeeded:
            return task, b""
        return task, httpx.get(task.outputs[0].url).content


@pytest.fixture
def v1(make_emulator: EmulatorFactory) -> EmulatorServer:
    return make_emulator()


@pytest.fixture
def reference(v1: EmulatorServer) -> tuple[Any, bytes]:
    return fetch(v1)


def test_the_default_version_renders_as_it_always_did(v1: EmulatorServer, reference: tuple[Any, bytes]) -> None:
    task, video = reference
    assert faults(v1).json()["model_version"] == DEFAULT_MODEL_VERSION
    expected = render_mp4(width=832, height=480, num_frames=33, fps=16, prompt=FOX.prompt, seed="7",
                          label="steps 25  scale 5.0  832x480")  # fmt: skip
    assert video == expected, "version 1 is the emulator's picture, unchanged"
    assert task.elapsed_seconds == Decimal("0.2000")


@pytest.mark.parametrize(
    ("kind", "low", "high"),
    [("noise", 35.0, 60.0), ("redraw", 0.0, 20.0)],
)
def test_another_version_renders_slightly_or_wholly_differently(
    make_emulator: EmulatorFactory, reference: tuple[Any, bytes], kind: str, low: float, high: float
) -> None:
    emulator = make_emulator()
    answer = faults(emulator, {**ONLY, "model_version": "2", f"version_{kind}_rate": 1.0})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "2"
    task, video = fetch(emulator)
    assert task.succeeded
    assert video != reference[1], "other bytes"
    assert low < psnr(reference[1], video) < high, f"{kind}: PSNR against version 1"
    other = make_emulator()  # a new storage directory: it renders afresh, no saved file to serve
    faults(other, {**ONLY, "model_version": "2", f"version_{kind}_rate": 1.0})
    _, again = fetch(other)
    assert again == video, "the same version renders the same prompt the same way every time"


def test_another_version_fails_some_prompts_and_slows_others(make_emulator: EmulatorFactory) -> None:
    failing = make_emulator(faults=Faults(model_version="2", **{**ONLY, "version_fail_rate": 1.0}))
    task, video = fetch(failing)
    assert task.failed
    assert video == b""
    assert task.total_cost == 0
    slow = make_emulator(faults=Faults(model_version="2", **{**ONLY, "version_slow_rate": 1.0}, version_slowdown=3.0))
    task, video = fetch(slow)
    assert task.succeeded
    assert task.elapsed_seconds == Decimal("0.6000"), "three times the 0.2 s the task takes in version 1"
    assert task.total_cost == task.elapsed_seconds * task.cps, "and billed for it"


def test_which_prompts_change_is_drawn_from_the_version_and_inputs_in_the_configured_shares() -> None:
    version = Faults(model_version="2")
    prompts: list[dict[str, Value]] = [{"prompt": f"prompt {n}", "seed": "1", "numFrames": 33} for n in range(2000)]
    kinds = [drift(version, TEXT_TO_VIDEO, p).kind for p in prompts]
    shares = {k: kinds.count(k) / len(kinds) for k in ("noise", "redraw", "fail", "slow", "same")}
    assert shares == pytest.approx({"noise": 0.25, "redraw": 0.15, "fail": 0.1, "slow": 0.1, "same": 0.4}, abs=0.03)
    assert [drift(version, TEXT_TO_VIDEO, p).kind for p in prompts] == kinds, "deterministic"
    other = [drift(Faults(model_version="3"), TEXT_TO_VIDEO, p).kind for p in prompts]
    assert other != kinds, "another version changes other prompts"
    assert {drift(Faults(), TEXT_TO_VIDEO, p).kind for p in prompts} == {"same"}
    with_callback: dict[str, Value] = {**prompts[0], "callbackUrl": "http://127.0.0.1:9/cb"}
    assert drift(version, TEXT_TO_VIDEO, with_callback) == drift(version, TEXT_TO_VIDEO, prompts[0])


@pytest.mark.parametrize("bad", [2, "", None, "x" * 65, "tab\there"])
def test_a_bad_model_version_is_refused_and_changes_nothing(v1: EmulatorServer, bad: Any) -> None:
    answer = faults(v1, {"model_version": bad, "version_fail_rate": 1.0})
    assert answer.status_code == 400
    assert "model_version" in answer.json()["error"]
    now = faults(v1).json()
    assert (now["model_version"], now["version_fail_rate"]) == (DEFAULT_MODEL_VERSION, 0.1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_command_line_flag_sets_the_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`wiro-sweep emulator --model-version 2.1-rc`: the emulator it serves says so on /_emulator/faults."""
    import wiro_tasks.emulator
    from flows.cli import main

    served: list[EmulatorConfig] = []
    monkeypatch.setattr(wiro_tasks.emulator, "serve", lambda config, host, port: served.append(config))
    monkeypatch.setenv("WIRO_API_KEY", API_KEY)
    result = CliRunner().invoke(main, ["emulator", "--model-version", "2.1-rc", "--task-seconds", "0.2"])
    assert result.exit_code == 0, result.output
    app = create_app(served[0], storage=tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator") as http:
        answer = await http.get("/_emulator/faults", headers={"x-api-key": API_KEY})
    assert answer.json()["model_version"] == "2.1-rc"


def test_the_command_line_refuses_an_empty_version() -> None:
    from flows.cli import main

    done = CliRunner().invoke(main, ["emulator", "--model-version", ""])
    assert done.exit_code == 2
    assert "--model-version" in done.output
    assert "model_version must be" in done.output
