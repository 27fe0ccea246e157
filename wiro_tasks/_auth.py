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
    """Nonces that fit every reading of Wiro's documents, safe across threads and event loops.

    Wiro-Docs asks for "a unix time or any random integer" and claims replay protection, without
    saying which unit of time, how fresh, or whether a repeat is refused. What Wiro's own clients
    send, and so what the real service accepts, is a unix time: in seconds, reused for a Run and
    all its polls (the n8n nodes, as the docs' examples), or in milliseconds, never repeated
    within a process (the WiroKit SDK). So a nonce here is WiroKit's kind:

    - the unix time in milliseconds (13 digits, within a few milliseconds of the clock), which
      any freshness check that lets WiroKit through lets through too, and which is an integer;
    - strictly increasing within a process (threads and event loops share one source), so no
      replay check can refuse two of its requests, however many are sent in one millisecond: a
      burst runs the nonces ahead of the clock by `STEP` ms a request, and the clock catches up;
    - ending in a digit of its own per process (`nonce % STEP`), drawn again after `fork`, so a
      process and its fork never send the same nonce, and two unrelated processes only when they
      drew the same digit and sign in the same 10 ms. Where Wiro refuses such a clash (HTTP 401
      "not valid"), the process moves to another digit (`avoid`) and a read is signed once more
      (`_base.nonce_refused`); a Run, which made no task, is sent again (`prefect_tasks.submit`).

    The older choice, milliseconds x 1000 plus a salt, is a unix time in no unit that any client
    of Wiro sends, and fails a freshness check that reads milliseconds.
    """

    STEP = 10

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._digit = secrets.randbelow(self.STEP)
        _SOURCES.add(self)

    def _reseed_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._other_digit()

    def avoid(self) -> None:
        """Change to another last digit: Wiro refused a nonce as seen before, so another process
        on the key likely drew this one (with four shards, one time in two), and would clash again."""
        with self._lock:
            self._other_digit()

    def _other_digit(self) -> None:
        digit = secrets.randbelow(self.STEP - 1)
        self._digit = digit if digit < self._digit else digit + 1  # any digit but this one
        self._last = self._last - self._last % self.STEP + self._digit

    def next(self) -> str:
        with self._lock:
            now = time.time_ns() // 1_000_000
            candidate = now - now % self.STEP + self._digit
            self._last = max(candidate, self._last + self.STEP)
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

    def avoid_clash(self) -> None:
        """A nonce of this process was refused as seen: draw the next ones from another digit."""
        self._nonces.avoid()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-api-key"] = self._credentials.api_key
        secret = self._credentials.api_secret
        if secret:
            nonce = self._nonces.next()
            request.headers["x-nonce"] = nonce
            request.headers["x-signature"] = sign(self._credentials.api_key, secret, nonce)
        yield request
