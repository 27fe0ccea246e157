"""`POST /v1/Tool/Detail`: a model's parameters, in the groups Wiro-Docs shows, and unless configured
away, its price."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...inputs import IMAGE_TO_VIDEO, MODELS, TEXT_TO_VIDEO, Param
from ..context import Emulator
from ..records import MODEL_DESCRIPTIONS
from ..wire import NO_MODEL, read_body, wiro_error
from .guard import api

TOOL_IDS = {TEXT_TO_VIDEO: "1911", IMAGE_TO_VIDEO: "1912"}  # the emulator's own ids
_TYPES = {"text": "textarea", "choice": "select", "url": "text", "seed": "text", "int": "range", "float": "range"}


def _item(param: Param) -> dict[str, Any]:
    """One input as Wiro-Docs' Tool/Detail lists it (`models.md`, `model-parameters.md`)."""
    item: dict[str, Any] = {
        "id": param.name,
        "type": "textarea" if param.name.lower().endswith("prompt") else _TYPES[param.kind],
        "label": param.name,
        "required": param.required,
        "default": "" if param.default is None else str(param.default),
    }
    if param.choices:
        item["options"] = [{"label": choice, "value": choice} for choice in param.choices]
    if param.minimum is not None and param.maximum is not None:
        item.update(min=param.minimum, max=param.maximum, step=1 if param.kind == "int" else 0.1)
    return item


@api("tool_detail")
async def tool_detail(request: Request, emulator: Emulator) -> Response:
    config = emulator.config
    body = await read_body(request) or {}
    slug = f"{body.get('slugowner', '')}/{body.get('slugproject', '')}"
    spec = MODELS.get(slug)
    if spec is None:
        return wiro_error(NO_MODEL, code=1)
    owner, project = slug.split("/")
    tool: dict[str, Any] = {
        "id": TOOL_IDS.get(slug, "0"),
        "title": project,
        "slugowner": owner,
        "slugproject": project,
        "cleanslugowner": owner.lower(),
        "cleanslugproject": project.lower(),
        "description": MODEL_DESCRIPTIONS.get(slug, ""),
        "categories": ["video", "image-to-video" if slug == IMAGE_TO_VIDEO else "text-to-video"],
        "parameters": [{"title": "", "subtitle": "", "items": [_item(p) for p in spec.params]}],
    }
    if config.publish_price:
        tiers = [dict(t) for t in config.dynamic_price]
        tool["cps"] = str(config.advertised_cps or config.cps)
        tool["approximatelycost"] = str(config.approximate_cost)
        tool["dynamicprice"] = json.dumps(tiers) if config.price_as_text else tiers
    return JSONResponse({"errors": [], "tool": [tool], "result": True})
