"""A model's price from Tool/Detail: tiers matched to a run's inputs, per-second rates, odd answers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from wiro_tasks import TEXT_TO_VIDEO, Quote, ToolPrice, WiroClient, model_spec
from wiro_tasks.emulator import EmulatorServer

from .conftest import API_KEY, API_SECRET, NO_WAIT, EmulatorFactory

ROW = model_spec(TEXT_TO_VIDEO).validate({"prompt": "a red fox", "numFrames": 81, "fps": 16})
TIERS: list[dict[str, Any]] = [
    {"inputs": {"numFrames": "81", "size": "832*480"}, "price": 0.13, "priceMethod": "cpr"},
    {"inputs": {"numFrames": "121"}, "price": 0.02, "priceMethod": "cp-outputVideoLength"},
    {"inputs": {}, "price": 0.0015, "priceMethod": "cps"},
]


def test_the_most_specific_matching_tier_gives_the_price() -> None:
    price = ToolPrice.from_api({"dynamicprice": TIERS, "cps": "0.0012", "approximatelycost": "0.0036"})
    quote = price.quote(ROW)
    assert quote == Quote(Decimal("0.13"), None, Decimal("0.13"), quote.source if quote else "")
    assert quote is not None
    assert "{'numFrames': '81', 'size': '832*480'} (cpr)" in quote.source


def test_a_price_per_second_of_video_follows_frames_and_fps() -> None:
    price = ToolPrice.from_api({"dynamicprice": TIERS})
    quote = price.quote({**ROW, "numFrames": 121, "fps": 24})
    assert quote is not None
    assert quote.fixed == Decimal("0.02") * 121 / 24


def test_an_empty_inputs_cps_tier_sets_the_rate_of_every_other_run() -> None:
    price = ToolPrice.from_api({"dynamicprice": TIERS, "approximatelycost": "0.0036"})
    quote = price.quote({**ROW, "numFrames": 33})
    assert quote is not None
    assert (quote.fixed, quote.cps, quote.typical) == (None, Decimal("0.0015"), Decimal("0.0036"))


def test_no_tier_means_per_second_billing_at_cps() -> None:
    price = ToolPrice.from_api({"dynamicprice": json.dumps(TIERS[:1]), "cps": "0.0012", "approximatelycost": "0.01"})
    assert price.tiers, "a dynamicprice sent as a JSON string is read as the array it holds"
    quote = price.quote({**ROW, "numFrames": 9})
    assert quote is not None
    assert (quote.fixed, quote.cps, quote.typical) == (None, Decimal("0.0012"), Decimal("0.01"))


def test_no_price_at_all_is_none_not_zero() -> None:
    assert ToolPrice.from_api({}).quote(ROW) is None
    assert ToolPrice.from_api({"cps": "NaN", "dynamicprice": "[not json"}).quote(ROW) is None


@pytest.mark.parametrize(
    "tier",
    [
        {"price": "NaN", "priceMethod": "cpr"},
        {"price": -1, "priceMethod": "cpr"},
        {"price": 1},
        "cpr",
        None,
        {"inputs": [1], "price": 1, "priceMethod": "cpr"},
    ],
)
def test_an_odd_tier_is_named_and_left_out(tier: object) -> None:
    price = ToolPrice.from_api({"dynamicprice": [tier], "cps": "0.002"})
    assert price.tiers == ()
    assert price.anomalies
    quote = price.quote(ROW)
    assert quote is not None
    assert quote.cps == Decimal("0.002"), "the per-second price still holds"


def test_a_tier_method_that_depends_on_the_run_is_not_a_fixed_price() -> None:
    price = ToolPrice.from_api({"dynamicprice": [{"inputs": {}, "price": 0.001, "priceMethod": "cpt"}], "cps": "0.1"})
    quote = price.quote(ROW)
    assert quote is not None
    assert (quote.fixed, quote.cps) == (None, Decimal("0.1"))


def test_the_emulator_publishes_and_bills_the_same_price(make_emulator: EmulatorFactory) -> None:
    """Tool/Detail over loopback gives the tiers; a run that matches one is billed its price,
    and one that matches none is billed elapsedseconds x cps."""
    emulator: EmulatorServer = make_emulator(dynamic_price=tuple(TIERS[:1]), price_as_text=True, cps=Decimal("0.01"))
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT) as wiro:
        tool = wiro.tool(TEXT_TO_VIDEO)
        assert tool.price.tiers[0].price == Decimal("0.13")
        assert tool.price.cps == Decimal("0.01")
        tiered = wiro.wait(wiro.run({"prompt": "tiered", "numFrames": 81}).task_id)
        timed = wiro.wait(wiro.run({"prompt": "timed", "numFrames": 9}).task_id)
    assert tiered.succeeded
    assert tiered.total_cost == Decimal("0.13")
    assert timed.total_cost == timed.elapsed_seconds * Decimal("0.01")
    assert timed.total_cost > 0


METHODS = ["cpr", "cpo", "cps", "cp-outputVideoLength", "cp-promptlength", "cp-pixel", "cp-tokens"]


@pytest.mark.parametrize("method", METHODS)
def test_a_quote_depends_on_the_inputs_its_price_reads_and_no_other(method: str) -> None:
    """`ToolPrice.reads` keys the dry run's quotes: a run differing only in an input it does not
    name must get the very same quote (a method that read more would price rows wrongly)."""
    import random

    price = ToolPrice.from_api({"dynamicprice": [{"inputs": {"steps": "25"}, "price": 0.2, "priceMethod": method},
                                                 {"inputs": {}, "price": 0.0015, "priceMethod": "cps"}],
                                "cps": "0.001", "approximatelycost": "0.05"})  # fmt: skip
    values: dict[str, list[object]] = {
        "prompt": ["a fox", "a much longer prompt about a boat", ""],
        "numFrames": [81, 121, "33", None],
        "fps": [16, 8, "24"],
        "steps": [25, "25", 30],
        "size": ["832*480", "480*832", "1280*720", None],
        "width": [None, 640, 1280],
        "height": [None, 480, 720],
        "inputImageUrl": [None, "https://x.invalid/a.png"],
        "seed": ["1", "2"],
        "negativePrompt": ["blurry", ""],
    }
    chance = random.Random(7)
    for _ in range(300):
        run = {name: chance.choice(options) for name, options in values.items()}
        other = {name: chance.choice(options) if name not in price.reads else run[name]
                 for name, options in values.items()}  # fmt: skip
        assert price.quote(run) == price.quote(other), (method, price.reads, run, other)
    assert "steps" in price.reads, "a tier's own inputs are read"


def test_rows_are_quoted_each_as_its_price_does(tmp_path: Any) -> None:
    """`quote_rows`, which the dry run and the budget guard price rows with."""
    import pandas as pd

    from flows.engine.rows import quote_inputs, quote_rows, records
    from flows.grid import expand_grid

    grid = pd.DataFrame({"prompt": [f"a fox number {n}" for n in range(40)], "seed": [str(n % 3) for n in range(40)],
                         "numFrames": [(81, 121)[n % 2] for n in range(40)]})  # fmt: skip
    rows = records(expand_grid(grid))
    for tiers in (TIERS, [{"inputs": {}, "price": 0.0001, "priceMethod": "cp-promptlength"}], []):
        price = ToolPrice.from_api({"dynamicprice": tiers, "cps": "0.001", "approximatelycost": "0.05"})
        expected = [price.quote(quote_inputs(r)) for r in rows]
        assert quote_rows(rows, {rows[0]["model"]: price}) == expected
    assert quote_rows(rows, {}) == quote_rows(rows, {rows[0]["model"]: None}) == [None] * len(rows)
