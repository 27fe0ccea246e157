"""Wiro request signing as an `httpx.Auth`, and the process-wide nonce source it draws from.

Signature mode sends `x-api-key`, `x-nonce` and `x-signature`, where the signature is the lowercase hex
HMAC-SHA256 keyed with the API key over `API_SECRET + NONCE`. Key-only mode sends `x-api-key` alone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Generator

import httpx

from ._config import Credentials


def sign(api_key: str, api_secret: str, nonce: str) -> str:
    """The `x-signature` value for one nonce."""
    return hmac.new(api_key.encode(), (api_secret + nonce).encode(), hashlib.sha256).hexdigest()


class NonceSource:
    """Strictly increasing nonces, safe across threads and event loops of one process.

    A nonce is the unix time in milliseconds followed by three digits of the process id, so two
    processes signing in the same millisecond still differ; within a process each nonce is at least
    1000 above the last, so hundreds of requests in one millisecond never repeat one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._salt = os.getpid() % 1000

    def _reseed_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._salt = os.getpid() % 1000

    def next(self) -> str:
        with self._lock:
            candidate = time.time_ns() // 1_000_000 * 1000 + self._salt
            self._last = max(candidate, self._last + 1000)
            return str(self._last)


NONCES = NonceSource()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=NONCES._reseed_after_fork)


class WiroAuth(httpx.Auth):
    """Adds Wiro's auth headers to each request; does no I/O of its own."""

    def __init__(self, credentials: Credentials, nonces: NonceSource = NONCES) -> None:
        self._credentials = credentials
        self._nonces = nonces

    def __repr__(self) -> str:
        return f"WiroAuth({self._credentials!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-api-key"] = self._credentials.api_key
        secret = self._credentials.api_secret
        if secret:
            nonce = self._nonces.next()
            request.headers["x-nonce"] = nonce
            request.headers["x-signature"] = sign(self._credentials.api_key, secret, nonce)
        yield request
