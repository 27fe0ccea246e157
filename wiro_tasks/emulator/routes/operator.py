"""The emulator's own endpoints for tests and benchmarks (`/_emulator/...`, with its key), and
Wiro's answer to any other path."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..context import Emulator
from ..wire import API_BODY_LIMIT, BodyTooLarge, bounded_body, wiro_error
from .guard import operator


@operator
async def stats(request: Request, emulator: Emulator) -> Response:
    return JSONResponse(emulator.account.stats())


@operator
async def tasks(request: Request, emulator: Emulator) -> Response:
    return JSONResponse(emulator.account.intervals())


@operator
async def faults(request: Request, emulator: Emulator) -> Response:
    """The fault settings (GET), after applying a JSON object of changes (POST)."""
    account = emulator.account
    if request.method == "POST":
        try:
            changes = json.loads(await bounded_body(request, API_BODY_LIMIT))
            if not isinstance(changes, dict):
                raise TypeError(f"the body must be a JSON object of fault settings (got {type(changes).__name__})")
            with account.lock:
                account.faults = account.faults.updated(changes)
        except BodyTooLarge as exc:
            return JSONResponse({"error": str(exc)}, 413)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse(dict(vars(account.faults).items()))


async def unknown(request: Request) -> Response:
    return wiro_error("Error parsing url.", status=404)
