"""What a model's runs cost, from `Tool/Detail`: its `dynamicprice` tiers, `cps` and `approximatelycost`.

    price = ToolPrice.from_api(tool)             # one entry of Tool/Detail's `tool` list
    price.quote({"prompt": "...", "numFrames": 81, "fps": 16, ...})

A tier whose `inputs` all equal the run's (an empty `inputs` matches every run) gives the price
before the run, when its `priceMethod` can be computed from the inputs (`cpr`, `cpo`,
`cp-outputVideoLength`, `cp-promptlength`, `cp-pixel`); a `cps` tier sets the per-second rate.
Otherwise Wiro bills per second: `elapsedseconds x cps`, with `approximatelycost` (average
elapsed x cps) as the typical cost. Wiro's `pricing.md` describes these methods; the emulator
bills by the same rules, from this module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from .types import MAX_CPS, MAX_TASK_COST, finite_decimal

PIXEL_TIER = 1024 * 1024  # cp-pixel: each started 1,048,576 pixels of output is one tier


PRICED_BY = {  # the inputs each method's cost reads (`PriceTier.cost`); a fixed price reads none
    "cp-outputVideoLength": ("numFrames", "fps"),
    "cp-promptlength": ("prompt",),
    "cp-pixel": ("size", "width", "height", "inputImageUrl"),
}


@dataclass(frozen=True)
class PriceTier:
    """One entry of `dynamicprice`: a price for runs with these inputs (all runs when empty)."""

    inputs: Mapping[str, str]
    price: Decimal
    method: str
    extra: Decimal = Decimal(0)  # cp-pixel: each pixel tier past the first
    per_input: Decimal = Decimal(0)  # cp-pixel: per input image

    @property
    def reads(self) -> frozenset[str]:
        """The inputs this tier's price depends on: its own, and what its method prices by."""
        return frozenset(self.inputs).union(PRICED_BY.get(self.method, ()))

    def matches(self, inputs: Mapping[str, object]) -> bool:
        return all(k in inputs and _same(inputs[k], v) for k, v in self.inputs.items())

    def cost(self, inputs: Mapping[str, object]) -> Decimal | None:
        """The run's price by this tier, or None when it depends on the run (cps, tokens, ...)."""
        if self.method in ("cpr", "cpo"):  # a video model makes one output file
            return self.price
        if self.method == "cp-outputVideoLength":
            frames, fps = _number(inputs.get("numFrames")), _number(inputs.get("fps"))
            return self.price * frames / fps if frames and fps else None
        if self.method == "cp-promptlength":
            return self.price * len(str(inputs.get("prompt", "")))
        if self.method == "cp-pixel":
            width, height = _pixels(inputs)
            if not width or not height:
                return None
            tiers = math.ceil(width * height / PIXEL_TIER)
            images = 1 if inputs.get("inputImageUrl") else 0
            return self.price + self.extra * (tiers - 1) + self.per_input * images
        return None


@dataclass(frozen=True)
class Quote:
    """What one run costs, as far as it is known before it runs.

    One of the two is always set: `fixed` is its exact price; else `cps` is the rate it is billed
    per second while it runs (its cost grows without bound until it ends or is stopped).
    `typical` is the cost to plan with; `source` says where the figures came from, for people.
    """

    fixed: Decimal | None
    cps: Decimal | None
    typical: Decimal
    source: str


@dataclass(frozen=True)
class ToolPrice:
    """A model's price as Tool/Detail gives it; every field parsed defensively (see `anomalies`)."""

    tiers: tuple[PriceTier, ...] = ()
    cps: Decimal | None = None
    approximate_cost: Decimal | None = None
    anomalies: tuple[str, ...] = field(default=())

    @property
    def known(self) -> bool:
        return bool(self.tiers) or self.cps is not None

    @property
    def reads(self) -> tuple[str, ...]:
        """Every input a `quote` depends on (none for a price per second or per run): runs that
        agree on these get the same quote."""
        return tuple(sorted(frozenset().union(*(tier.reads for tier in self.tiers))))

    @classmethod
    def from_api(cls, tool: Mapping[str, Any]) -> ToolPrice:
        anomalies: list[str] = []
        raw = tool.get("dynamicprice")
        if isinstance(raw, str) and raw.strip():  # some answers hold the array as a JSON string
            try:
                raw = json.loads(raw)
            except ValueError:
                anomalies.append(f"dynamicprice {raw[:40]!r} is not JSON")
                raw = None
        tiers = []
        for entry in raw if isinstance(raw, Sequence) and not isinstance(raw, str) else ():
            tier = _tier(entry)
            if tier is None:
                anomalies.append(f"dynamicprice tier {str(entry)[:60]!r} is not a price")
            else:
                tiers.append(tier)
        cps = _amount(tool.get("cps"), MAX_CPS)
        approximate = _amount(tool.get("approximatelycost"), MAX_TASK_COST)
        return cls(tuple(tiers), cps or None, approximate or None, tuple(anomalies))

    def quote(self, inputs: Mapping[str, object]) -> Quote | None:
        """The run's quote; None when the API gave no price at all."""
        matching = [t for t in self.tiers if t.matches(inputs)]
        # The most specific tier wins; between equals, the dearest (never under-count).
        matching.sort(key=lambda t: (len(t.inputs), t.price), reverse=True)
        for tier in matching:
            where = f"dynamicprice tier {dict(tier.inputs) or '{}'} ({tier.method})"
            if tier.method == "cps":
                typical = self.approximate_cost or Decimal(0)
                return Quote(None, tier.price, typical, f"{where}: ${tier.price}/s")
            cost = tier.cost(inputs)
            if cost is not None:
                return Quote(cost, None, cost, f"{where}: ${cost:.6f} a run")
        if self.cps is not None:
            typical = self.approximate_cost or Decimal(0)
            return Quote(None, self.cps, typical, f"cps ${self.cps}/s from Tool/Detail, typical ${typical:.6f}")
        return None


def _tier(entry: object) -> PriceTier | None:
    if not isinstance(entry, Mapping):
        return None
    inputs = entry.get("inputs") or {}
    price = _amount(entry.get("price"), MAX_TASK_COST)
    method = entry.get("priceMethod")
    if not isinstance(inputs, Mapping) or price is None or not isinstance(method, str):
        return None
    return PriceTier(
        inputs=MappingProxyType({str(k): str(v) for k, v in inputs.items()}),
        price=price,
        method=method,
        extra=_amount(entry.get("priceExtra"), MAX_TASK_COST) or Decimal(0),
        per_input=_amount(entry.get("priceInput"), MAX_TASK_COST) or Decimal(0),
    )


def _amount(value: object, limit: Decimal) -> Decimal | None:
    number = finite_decimal(value) if value not in (None, "") else None
    return number if number is not None and 0 <= number < limit else None


def _number(value: object) -> Decimal | None:
    number = finite_decimal(value)
    return number if number is not None and number > 0 else None


def _same(value: object, wanted: str) -> bool:
    """Input equality as Wiro compares it: as text, with numbers compared as numbers ("5" == 5.0)."""
    if str(value) == wanted:
        return True
    a, b = finite_decimal(value), finite_decimal(wanted)
    return a is not None and b is not None and a == b


def _pixels(inputs: Mapping[str, object]) -> tuple[int, int]:
    size = str(inputs.get("size") or "")
    if "*" in size:
        width, _, height = size.partition("*")
        return int(_number(width) or 0), int(_number(height) or 0)
    return int(_number(inputs.get("width")) or 0), int(_number(inputs.get("height")) or 0)


@dataclass(frozen=True)
class Tool:
    """A model as Tool/Detail describes it: its slug and its price."""

    slug: str
    price: ToolPrice

    @classmethod
    def from_api(cls, payload: Mapping[str, Any], slug: str) -> Tool | None:
        """The first tool of the answer, or None when it holds none."""
        tools = payload.get("tool")
        first = tools[0] if isinstance(tools, Sequence) and not isinstance(tools, str) and tools else None
        if not isinstance(first, Mapping):
            return None
        return cls(slug=slug, price=ToolPrice.from_api(first))
