"""`POST /v1/Tool/Detail`: a model's parameters and, unless configured away, its price."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...inputs import MODELS
from ..context import Emulator
from ..wire import read_body, wiro_error
from .guard import api


@api("tool_detail")
async def tool_detail(request: Request, emulator: Emulator) -> Response:
    config = emulator.config
    body = await read_body(request) or {}
    slug = f"{body.get('slugowner', '')}/{body.get('slugproject', '')}"
    spec = MODELS.get(slug)
    if spec is None:
        return wiro_error("Tool is not found.", code=1)
    params = [
        {
            "id": p.name,
            "type": p.kind,
            "default": "" if p.default is None else str(p.default),
            "required": p.required,
            "choices": list(p.choices),
        }
        for p in spec.params
    ]
    tool: dict[str, Any] = {
        "slugowner": slug.split("/")[0],
        "slugproject": slug.split("/")[1],
        "parameters": params,
    }
    if config.publish_price:
        tiers = [dict(t) for t in config.dynamic_price]
        tool["cps"] = str(config.advertised_cps or config.cps)
        tool["approximatelycost"] = str(config.approximate_cost)
        tool["dynamicprice"] = json.dumps(tiers) if config.price_as_text else tiers
    return JSONResponse({"errors": [], "tool": [tool], "result": True})
