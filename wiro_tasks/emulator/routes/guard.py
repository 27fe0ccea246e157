"""What stands before every API route: counting, injected faults, authentication and the body limit.

`api(...)` wraps Wiro's endpoints, `operator` the emulator's own test endpoints. Both hand the
wrapped route the request and its `Emulator`.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..._auth import sign
from ..config import EmulatorConfig, FaultKind
from ..context import Emulator, emulator_of
from ..dice import weighted_pick
from ..state import Account
from ..wire import API_BODY_LIMIT, NEEDS_SIGNATURE, NOT_FOUNDED, NOT_VALID, BodyTooLarge, Drop, file_base, wiro_error

Handler = Callable[[Request, Emulator], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def _has_key(config: EmulatorConfig, request: Request) -> bool:
    key = request.headers.get("x-api-key", "")
    return bool(key) and hmac.compare_digest(key.encode(), config.api_key.encode())


def authenticate(config: EmulatorConfig, account: Account, request: Request) -> Response | None:
    """Wiro's refusal of a request without the project's key (and, with a secret, a signed nonce,
    one not seen before unless `repeat_nonces`), or None when it may pass."""
    if not _has_key(config, request):
        return wiro_error(NOT_FOUNDED, status=401)
    if not config.api_secret:
        return None
    nonce = request.headers.get("x-nonce", "")
    signature = request.headers.get("x-signature", "")
    if not nonce or not signature:
        return wiro_error(NEEDS_SIGNATURE, status=401)
    expected = sign(config.api_key, config.api_secret, nonce)
    with account.lock:
        valid = hmac.compare_digest(expected.encode(), signature.lower().encode())
        repeated = nonce in account.seen_nonces and not config.repeat_nonces
        if not valid or repeated:
            account.count("auth_refused")
            return wiro_error(NOT_VALID, status=401)
        account.seen_nonces.add(nonce)
    return None


def next_fault(account: Account, run: bool) -> FaultKind:
    """What happens to the next request: the scripts' next step, else a draw of the fault rates."""
    faults = account.faults
    with account.lock:
        if run and faults.run_script:
            account.faults = faults.updated({"run_script": faults.run_script[1:]})
            return faults.run_script[0]
        if faults.script:
            account.faults = faults.updated({"script": faults.script[1:]})
            return faults.script[0]
        draw = account.random.random()
    shares: tuple[tuple[FaultKind, float], ...] = (
        ("503", faults.error_5xx_rate),
        ("429", faults.rate_429),
        ("drop", faults.drop_rate),
        ("slow", faults.slow_rate),
    )
    drawn = weighted_pick(draw, shares)
    if drawn is not None:
        return drawn
    if run and account.random.random() < faults.lost_run_rate:
        return "lost"  # the task is created, its answer never arrives
    return "ok"


def api(name: str, *, run: bool = False, body_limit: int = API_BODY_LIMIT) -> Callable[[Handler], Endpoint]:
    """Wraps an endpoint with counting, injected faults, authentication and its body limit
    (`read_body` and `bounded_stream` enforce it; a body past it is answered 413)."""

    def wrap(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            emulator = emulator_of(request)
            account = emulator.account
            account.count(name)
            fault = next_fault(account, run)
            if fault != "ok":
                account.count(f"fault_{fault}")
            if fault in ("500", "503"):
                return PlainTextResponse("<html>Service Unavailable</html>", int(fault))
            if fault == "429":
                retry_after = f"{account.faults.retry_after:g}"
                limited = wiro_error("Too many requests.", status=429)
                limited.headers["Retry-After"] = retry_after
                return limited
            if fault == "drop":
                return Drop()
            refused = authenticate(emulator.config, account, request)
            if refused is not None:
                return refused
            request.state.fault = fault
            request.state.body_limit = body_limit
            emulator.renderer.public_base = emulator.renderer.public_base or file_base(request)
            try:
                response = await handler(request, emulator)
            except BodyTooLarge as exc:
                account.count("body_too_large")
                return wiro_error(str(exc), status=413)
            if fault == "slow":  # the work is done; only the answer is late
                await asyncio.sleep(account.faults.slow_seconds)
            if run and account.faults.run_latency:  # the task exists and bills; its answer is late
                await asyncio.sleep(account.faults.run_latency)
            return response

        return endpoint

    return wrap


def operator(handler: Handler) -> Endpoint:
    """The test endpoints: the emulator's own key (`x-api-key`), as any API request needs."""

    async def endpoint(request: Request) -> Response:
        emulator = emulator_of(request)
        if not _has_key(emulator.config, request):
            return wiro_error(NOT_FOUNDED, status=401)
        return await handler(request, emulator)

    return endpoint
