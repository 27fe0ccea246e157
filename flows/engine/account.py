"""Slots of the Wiro account's limit, which every run on the account shares as a Prefect global
concurrency limit, held by this run across its rows.

Prefect's `concurrency()` costs each use three requests (take, renew at once, give back), a
thread with a client of its own for the renewals, and two events. Held for one row each, that
was most of what a shard's row cost the server. Here a slot a row gives back goes to a row of
this run that asks for one within `HANDOFF_SECONDS`, and only then goes back to the server; a
slot that has served this run for `SHARE_SECONDS` goes back when its row ends, so other runs
waiting on the account get their turn. One request at a time asks for slots while rows wait,
and one task renews every slot held.

The limit holds as before: a row sends its Run request only while it holds a slot of a lease
the server counts, and no slot serves two rows at once. If a renewal fails, the lease may lapse
and the server may hand its slot to another run: Wiro itself then refuses the extra task (code
96, "account full"), which the row waits out, so the promise that costs money is not at stake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse

HANDOFF_SECONDS = 0.5  # a slot no row of this run asked for in this long goes back to the server
SHARE_SECONDS = 20.0  # a slot held this long goes back as its row ends: the other runs' turn
LEASE_SECONDS = 300.0  # what the server waits for a renewal before it frees a slot (a killed run's)
RENEW_EVERY = LEASE_SECONDS / 4

logger = logging.getLogger("flows.engine")


class NoAccountLimit(RuntimeError):
    """The global concurrency limit named for the account does not exist on the server."""


@dataclass(eq=False)
class _Lease:
    id: UUID
    since: float = field(default_factory=time.monotonic)
    idle_since: float | None = None
    lapsed: bool = False  # its renewal was refused: the server counts it no more


class AccountSlots:
    """One slot of the limit `name` for each row that holds one, shared out across this run's rows."""

    def __init__(
        self, name: str, handoff_seconds: float = HANDOFF_SECONDS, share_seconds: float = SHARE_SECONDS
    ) -> None:
        self.name = name
        self.handoff_seconds = handoff_seconds
        self.share_seconds = share_seconds
        self.requests: Counter[str] = Counter()  # "take", "full" (423), "give", "renew": the Prefect API's answers
        self._held: set[_Lease] = set()  # every lease this run holds, in use or idle
        self._idle: deque[_Lease] = deque()  # held, no row on it
        self._waiting: deque[asyncio.Future[_Lease]] = deque()  # rows that asked and have none yet
        self._background: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._asking: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        lease = await self._take()
        try:
            yield
        finally:
            self._give(lease)

    @property
    def held(self) -> int:
        return len(self._held)

    async def close(self) -> None:
        """Give every slot back (the rows have ended) and stop renewing."""
        for loop in (self._asking, self._renewer):
            if loop and not loop.done():
                loop.cancel()
                await asyncio.gather(loop, return_exceptions=True)
        while self._idle:
            self._release(self._idle.popleft())
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _take(self) -> _Lease:
        if self._idle:
            return self._idle.pop()  # the newest: the oldest go back to the server first
        waiter: asyncio.Future[_Lease] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if self._asking is None or self._asking.done():
            self._asking = asyncio.create_task(self._ask_for_waiters())
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give(waiter.result())  # handed over as the row was stopped
            raise

    async def _ask_for_waiters(self) -> None:
        """One request at a time, as Prefect's own service does, while rows wait for a slot."""
        async with get_client() as client:
            while any(not waiter.done() for waiter in self._waiting):
                try:
                    lease = await self._ask(client)
                except Exception as exc:  # every row that waits fails as `concurrency()` failed it
                    while self._waiting:
                        waiter = self._waiting.popleft()
                        if not waiter.done():
                            waiter.set_exception(exc)
                    return
                if lease:
                    self._give(lease)

    async def _ask(self, client: Any) -> _Lease | None:
        """A slot of the limit, or None after the wait the server asks for while it is full (423)."""
        if self._background:  # a slot this run gave back is free on the server before it asks
            await asyncio.gather(*self._background, return_exceptions=True)
        request = asyncio.ensure_future(client.increment_concurrency_slots_with_lease(
            names=[self.name], slots=1, mode="concurrency", lease_duration=LEASE_SECONDS))  # fmt: skip
        try:
            response = await asyncio.shield(request)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 423:
                raise
            self.requests["full"] += 1
            await asyncio.sleep(retry_after(exc.response.headers.get("Retry-After")))
            return None
        except asyncio.CancelledError:  # closed while asking: a slot granted meanwhile goes back
            with contextlib.suppress(Exception):
                self._release(self._lease(await request))
            raise
        self.requests["take"] += 1
        return self._lease(response)

    def _lease(self, response: httpx.Response) -> _Lease:
        answer = ConcurrencyLimitWithLeaseResponse.model_validate(response.json())
        if not answer.limits:
            raise NoAccountLimit(f"no global concurrency limit {self.name!r}: create it before a run shares it")
        lease = _Lease(answer.lease_id)
        self._held.add(lease)
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew())
        return lease

    def _give(self, lease: _Lease) -> None:
        """A row is through with `lease`: to a row that waits, kept a moment for the next, or back."""
        if lease.lapsed or time.monotonic() - lease.since >= self.share_seconds:
            self._release(lease)
            return
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(lease)
                return
        lease.idle_since = time.monotonic()
        self._idle.append(lease)
        asyncio.get_running_loop().call_later(self.handoff_seconds, self._expire)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._idle and now - (self._idle[0].idle_since or now) >= self.handoff_seconds * 0.99:
            self._release(self._idle.popleft())

    def _release(self, lease: _Lease) -> None:
        self._held.discard(lease)
        task = asyncio.get_running_loop().create_task(self._send_release(lease))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_release(self, lease: _Lease) -> None:
        self.requests["give"] += 1
        try:
            async with get_client() as client:
                await client.release_concurrency_slots_with_lease(lease_id=lease.id)
        except Exception as exc:  # the server frees it when its lease lapses
            logger.warning("a slot of %r could not be given back (%s); it is free in %.0f s at the latest",
                           self.name, exc, LEASE_SECONDS)  # fmt: skip

    async def _renew(self) -> None:
        async with get_client() as client:
            while True:
                await asyncio.sleep(RENEW_EVERY)
                for lease in [lease for lease in self._held if not lease.lapsed]:
                    self.requests["renew"] += 1
                    try:
                        await client.renew_concurrency_lease(lease_id=lease.id, lease_duration=LEASE_SECONDS)
                    except Exception as exc:  # tried again in RENEW_EVERY, well before it lapses
                        status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else 0
                        lease.lapsed = status in (404, 410)  # gone: no row takes it after its own
                        logger.warning("a slot of %r could not be renewed%s: %s", self.name,
                                       " and is no longer held" if lease.lapsed else "", exc)  # fmt: skip


def retry_after(header: str | None) -> float:
    """The server's Retry-After in seconds, within reason whatever it says."""
    try:
        seconds = float(header or "")
    except ValueError:
        return 1.0
    return min(max(seconds, 0.1), 30.0) if seconds == seconds else 1.0  # NaN: the default
