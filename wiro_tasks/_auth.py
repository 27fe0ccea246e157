"""Wiro request signing as an `httpx.Auth`, and the process-wide nonce source it draws from.

Signature mode sends `x-api-key`, `x-nonce` and `x-signature`, where the signature is the lowercase hex
HMAC-SHA256 keyed with the API key over `API_SECRET + NONCE`. Key-only mode sends `x-api-key` alone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
import weakref
from collections.abc import Generator

import httpx

from ._config import Credentials


def sign(api_key: str, api_secret: str, nonce: str) -> str:
    """The `x-signature` value for one nonce."""
    return hmac.new(api_key.encode(), (api_secret + nonce).encode(), hashlib.sha256).hexdigest()


class NonceSource:
    """Strictly increasing nonces, safe across threads and event loops of one process.

    A nonce is the unix time in milliseconds followed by three random digits chosen per process
    (and again after `fork`), so processes signing in the same millisecond almost surely differ;
    within a process each nonce is at least 1000 above the last, so hundreds of requests in one
    millisecond never repeat one. Nonces stay below 2**53, safe for servers that parse numbers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._salt = secrets.randbelow(1000)
        _SOURCES.add(self)

    def _reseed_after_fork(self) -> None:
        self._lock = threading.Lock()
        salt = secrets.randbelow(1000)
        while salt == self._salt:
            salt = secrets.randbelow(1000)
        self._salt = salt
        self._last = self._last // 1000 * 1000 + salt

    def next(self) -> str:
        with self._lock:
            candidate = time.time_ns() // 1_000_000 * 1000 + self._salt
            self._last = max(candidate, self._last + 1000)
            return str(self._last)


def _reseed_all() -> None:
    for source in list(_SOURCES):
        source._reseed_after_fork()


_SOURCES: weakref.WeakSet[NonceSource] = weakref.WeakSet()
os.register_at_fork(after_in_child=_reseed_all)
NONCES = NonceSource()


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
