"""The emulator's one weighted draw, used by its faults (per request) and its model versions (per task)."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

from wiro_tasks.emulator import EmulatorConfig, Faults, create_app
from wiro_tasks.emulator.dice import weighted_pick

SHARES = (("a", 0.25), ("b", 0.125), ("c", 0.0), ("d", 0.375))  # exact in binary, so the edges are too
KEY = {"x-api-key": "k"}
TOOL = {"slugowner": "Wan-AI", "slugproject": "Wan2.2-TI2V-5B-text-to-video"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def in_memory(faults: Faults, storage: Path) -> httpx.AsyncClient:
    """A client of a fresh emulator app, in this process: no port, no thread."""
    app = create_app(EmulatorConfig(api_key="k", seed=5, faults=faults), storage=storage)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator")


@pytest.mark.parametrize(
    ("draw", "picked"),
    [(0.0, "a"), (0.24, "a"), (0.25, "b"), (0.37, "b"), (0.375, "d"), (0.74, "d"), (0.75, None), (0.99, None)],
)
def test_the_shares_lie_end_to_end_in_order(draw: float, picked: str | None) -> None:
    assert weighted_pick(draw, SHARES) == picked


def test_a_zero_share_is_never_drawn_and_no_shares_draw_nothing() -> None:
    dice = random.Random(3)
    assert "c" not in {weighted_pick(dice.random(), SHARES) for _ in range(5000)}
    assert weighted_pick(0.0, []) is None


def test_uniform_draws_land_in_proportion_to_the_shares() -> None:
    dice = random.Random(11)
    drawn = [weighted_pick(dice.random(), SHARES) for _ in range(20000)]
    got = {k: drawn.count(k) / len(drawn) for k in ("a", "b", "c", "d", None)}
    assert got == pytest.approx({"a": 0.25, "b": 0.125, "c": 0.0, "d": 0.375, None: 0.25}, abs=0.015)


@pytest.mark.anyio
async def test_request_faults_come_in_their_configured_shares(tmp_path: Path) -> None:
    """Tool/Detail, which every fault may hit: about 30% answer 503, 20% 429, the rest succeed."""
    async with in_memory(Faults(error_5xx_rate=0.3, rate_429=0.2), tmp_path) as http:
        codes = [(await http.post("/v1/Tool/Detail", json=TOOL, headers=KEY)).status_code for _ in range(600)]
        counters = (await http.get("/_emulator/stats", headers=KEY)).json()["counters"]
    shares = {code: codes.count(code) / len(codes) for code in (200, 429, 503)}
    assert shares == pytest.approx({200: 0.5, 429: 0.2, 503: 0.3}, abs=0.06)
    assert (counters["fault_503"], counters["fault_429"]) == (codes.count(503), codes.count(429))


@pytest.mark.anyio
async def test_a_script_comes_before_the_draw(tmp_path: Path) -> None:
    async with in_memory(Faults(error_5xx_rate=1.0, script=("ok", "429")), tmp_path) as http:
        codes = [(await http.post("/v1/Tool/Detail", json=TOOL, headers=KEY)).status_code for _ in range(3)]
    assert codes == [200, 429, 503]
