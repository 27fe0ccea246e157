"""Slots of the Wiro account's limit, which every run on the account shares as a Prefect global
concurrency limit, held by this run across its rows.

Prefect's `concurrency()` costs each use three requests (take, renew at once, give back), a
thread with a client of its own for the renewals, and two events. Held for one row each, that
was most of what a shard's row cost the server. Here a slot a row gives back goes to a row of
this run that asks for one within `HANDOFF_SECONDS`, and only then goes back to the server. One
request at a time asks for slots while rows wait, and one task renews every lease held.

Slots come in leases of up to `BATCH`, one request each to take, renew and give back: a lease is
what the server renews and frees, so 100 slots held a sweep long were 100 renewals every
`RENEW_EVERY` (80 requests a minute, an eighth of Prefect Cloud's free tier) and are now 10 or
so. A run asks for as many slots as rows wait, up to `BATCH` and a `LEASE_SHARE`th of what it
will hold (a run of 10 takes them one by one, as before); refused (the server has fewer free,
423, or its limit is smaller, 422), it asks for one, and doubles back up as asks succeed. A row
holds a slot of the run, not of one lease, so a lease goes back whole as soon as the rows left
fit in the others.

Other runs on the account get their turn: the oldest lease, once it has served this run for
`SHARE_SECONDS`, takes no new row and goes back as soon as the rows fit without it, one lease at
a time and one slot's worth in each `SHARE_EVERY` seconds at most; this run asks for more only
once it has gone. (Every slot in turn, as each aged, was 10 requests a second for a shard of
100 slots and instant tasks: a quarter of what the Prefect server did under four shards,
docs/benchmarks.md section 16.) The server hands a free slot to whoever asks first, so this run
then asks again after a random pause of up to `POLL_SECONDS`, and a run the server turned away
asks again within as long: each has its chance, where an immediate ask would always win.

The limit holds as before: a row sends its Run request only while it holds a slot of a lease
the server counts, and no slot serves two rows at once. A lease not renewed in time (a machine
suspended for minutes) serves no further row. If the server drops a lease some other way, its
slot may serve one more row while another run has it: Wiro itself then refuses the extra task
(code 96, "account full"), which the row waits out, so no promise about money is at stake.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse

from flows.errors import InputError

BATCH = 10  # slots asked for in one lease at most: taken, renewed and given back in one request each
LEASE_SHARE = 10  # ...and at most a tenth of the run's slots: a lease going back drains that many
HANDOFF_SECONDS = 0.5  # a slot no row of this run asked for in this long goes back to the server
SHARE_SECONDS = 20.0  # a lease held this long goes back for others' turn once the rows fit the rest
SHARE_EVERY = 2.0  # ...a slot's worth in this long at most, per run (a lease of 10: every 20 s)
LEAVING_POLL_SECONDS = 0.05  # how often an ask looks whether the lease going back has gone
POLL_SECONDS = 2.0  # a run turned away asks again within this long, whatever the server's Retry-After
LEASE_SECONDS = 300.0  # what the server waits for a renewal before it frees a slot (a killed run's)
RENEW_EVERY = LEASE_SECONDS / 4

logger = logging.getLogger("flows.engine")


class NoAccountLimit(InputError):
    """The global concurrency limit named for the account does not exist on the server: it was
    deleted during the run (the flow creates a missing one before its rows start). It fails the
    row that asked, before its Run request, as any row's error does; a command it ends exits 2."""


@dataclass(eq=False)
class _Lease:
    """`size` slots of the limit, taken, renewed and given back together."""

    id: UUID
    size: int = 1
    since: float = field(default_factory=time.monotonic)
    expires: float = field(default_factory=lambda: time.time() + LEASE_SECONDS)  # wall clock: it runs on in a suspend
    lapsed: bool = False  # its renewal was refused: the server counts it no more

    def usable(self) -> bool:
        """Still counted by the server, with a renewal's margin to spare."""
        return not self.lapsed and time.time() < self.expires - RENEW_EVERY


class _Renewals:
    """Renews every lease in `held` every RENEW_EVERY seconds, one request each, while there are
    any; `start` again once a lease comes after it ended."""

    def __init__(self, name: str, held: set[_Lease], requests: Counter[str]) -> None:
        self.name, self.held, self.requests = name, held, requests
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._renew())

    def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _renew(self) -> None:
        try:
            async with get_client() as client:
                while self.held:
                    await asyncio.sleep(RENEW_EVERY)
                    for lease in [lease for lease in self.held if not lease.lapsed]:
                        if lease in self.held:  # not given back while the ones before it were renewed
                            await self.renew_one(client, lease)
        except Exception as exc:
            logger.warning("the slots of %r could not be renewed: %s", self.name, exc)

    async def renew_one(self, client: Any, lease: _Lease) -> None:
        self.requests["renew"] += 1
        try:
            await client.renew_concurrency_lease(lease_id=lease.id, lease_duration=LEASE_SECONDS)
            lease.expires = time.time() + LEASE_SECONDS
        except Exception as exc:  # tried again in RENEW_EVERY, well before it lapses
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else 0
            lease.lapsed = status in (404, 410)  # gone: no row takes it after its own
            if lease.lapsed and lease not in self.held:  # given back while its renewal was on its way
                return
            logger.warning("a slot of %r could not be renewed%s: %s", self.name,
                           " and is no longer held" if lease.lapsed else "", exc)  # fmt: skip


class AccountSlots:
    """One slot of the limit `name` for each row that holds one, shared out across this run's rows.

    A row holds a slot of the run, not of one lease: the leases are what the server counts, and
    the rows in flight never outnumber the slots of the usable ones, bar a lease going back,
    that rows started on before it lapsed or was chosen to go."""

    def __init__(
        self,
        name: str,
        handoff_seconds: float = HANDOFF_SECONDS,
        share_seconds: float = SHARE_SECONDS,
        share_every: float = SHARE_EVERY,
        batch: int = BATCH,
    ) -> None:
        self.name = name
        self.handoff_seconds = handoff_seconds
        self.share_seconds = share_seconds
        self.share_every = share_every
        self.batch = max(1, batch)
        self._ask_size = self.batch  # one slot after a refusal, doubling back up to `batch` as asks succeed
        self._last_shared = -share_every * self.batch
        self.requests: Counter[str] = Counter()  # "take", "full" (423), "too many" (422), "give", "renew"
        self._held: set[_Lease] = set()  # every lease this run holds
        self._in_use = 0  # rows that hold a slot
        self._leaving: _Lease | None = None  # the lease going back for others' turn, once its rows fit the rest
        self._idle_since: float | None = None  # since when a slot has been free with no row waiting
        self._unasked = 0  # ...and how many have been free all along since then
        self._waiting: deque[asyncio.Future[None]] = deque()  # rows that asked and have none yet
        self._background: set[asyncio.Task[None]] = set()  # slots on their way back
        self._asking = False  # the loop that asks the server is on (set and cleared without a pause)
        self._renewals = _Renewals(name, self._held, self.requests)
        self._shared = False  # a slot went back for others' turn since this run last paused to ask
        self._paused_at = -POLL_SECONDS
        self._closed = False

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._take()
        try:
            yield
        finally:
            self._give()

    @property
    def held(self) -> int:
        """Slots this run holds on the server, in use or not."""
        return sum(lease.size for lease in self._held)

    async def close(self) -> None:
        """Give every slot back and stop, once the rows have ended: a row that still waits fails, and
        one that still holds a slot gives it back as it ends, if the event loop lives that long."""
        self._closed = True
        self._fail_waiting(RuntimeError(f"the run's slots of {self.name!r} were closed"))
        self._settle()
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._renewals.stop()

    def _capacity(self) -> int:
        """Slots a new row may use: those of every usable lease but the one going back."""
        return sum(lease.size for lease in self._held if lease is not self._leaving and lease.usable())

    async def _take(self) -> None:
        if self._closed:
            raise RuntimeError(f"the run's slots of {self.name!r} are closed")
        capacity = self._capacity()
        if not self._waiting and self._in_use < capacity:
            self._in_use += 1
            self._unasked = min(self._unasked, capacity - self._in_use)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if not self._asking:
            self._asking = True
            self._spawn(self._ask_for_waiters())
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give()  # handed over as the row was stopped
            raise

    def _give(self) -> None:
        """A row is through with its slot: to a row that waits, kept a moment, or back."""
        self._in_use -= 1
        if self._leaving is None and not self._closed:
            self._leaving = self._share_due()
        self._settle()

    def _share_due(self) -> _Lease | None:
        """The lease that goes back for others' turn, if one is due: the oldest, once it has served
        this run `share_seconds`, and `share_every` a slot after the last one."""
        now = time.monotonic()
        if now - self._last_shared < self.share_every:
            return None
        aged = [lease for lease in self._held if lease.usable() and now - lease.since >= self.share_seconds]
        oldest = min(aged, key=lambda lease: lease.since, default=None)
        if oldest is None or now - self._last_shared < self.share_every * oldest.size:
            return None
        self._last_shared, self._shared = now, True
        return oldest

    def _settle(self) -> None:
        """Leases the rows no longer need go back (the one leaving, one past use, every spare one
        once closed); free slots go to the rows that wait; spare ones are watched a moment."""
        capacity = self._capacity()
        for lease in [lease for lease in self._held if lease is self._leaving or not lease.usable()]:
            if self._in_use <= capacity or lease.lapsed:
                self._release(lease)
        if self._closed:  # every lease the rows still in flight do not need
            for lease in [lease for lease in self._held if lease is not self._leaving and lease.usable()]:
                if capacity - lease.size >= self._in_use:
                    self._release(lease)
                    capacity -= lease.size
        while self._waiting and self._in_use < capacity:
            waiter = self._waiting.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)
        if self._in_use >= capacity or self._waiting or self._closed:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since, self._unasked = time.monotonic(), capacity - self._in_use
            asyncio.get_running_loop().call_later(self.handoff_seconds, self._expire)

    def _expire(self) -> None:
        """Slots free all along for `handoff_seconds`, no row asking: the leases they add up to go back,
        and what is still spare is watched anew. (Slots spare only now and then are not: rows that
        come and go would take a lease back and forth.)"""
        if self._idle_since is None or time.monotonic() - self._idle_since < self.handoff_seconds * 0.99:
            return
        self._idle_since = None
        spare = min(self._unasked, self._capacity() - self._in_use)
        for lease in sorted(self._held, key=lambda lease: lease.since):
            if lease is not self._leaving and lease.usable() and lease.size <= spare:
                self._release(lease)
                spare -= lease.size
        self._settle()  # a smaller lease may fit what is spare by the next look

    def _fail_waiting(self, exc: BaseException, rows: int | None = None) -> None:
        while self._waiting and rows != 0:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
                rows = None if rows is None else rows - 1

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _ask_for_waiters(self) -> None:
        """One request at a time, as Prefect's own service does, while rows wait for a slot."""
        try:
            async with get_client() as client:
                while (wanted := sum(not waiter.done() for waiter in self._waiting)) and not self._closed:
                    try:
                        lease = await self._ask(client, self._ask_for(wanted))
                    except Exception as exc:  # the row it was asked for fails, as `concurrency()` failed it
                        self._fail_waiting(exc, rows=1)
                        continue
                    if lease:
                        self._settle()
                self._asking = False  # before the client closes: a row that asks from here starts another loop
        except Exception as exc:  # no client: every row that waits fails rather than waits for nothing
            self._fail_waiting(exc)
        finally:
            self._asking = False

    def _ask_for(self, wanted: int) -> int:
        """How many slots the next lease has: as many as rows wait, up to `batch`, and at most a
        `LEASE_SHARE`th of what the run will hold, so a lease going back leaves most of its slots."""
        return max(1, min(wanted, self._ask_size, self.batch, (self.held + wanted) // LEASE_SHARE))

    async def _ask(self, client: Any, slots: int) -> _Lease | None:
        """A lease of `slots` slots of the limit, or None after a wait while the server has not as
        many free (423): the next ask is for one slot, and asks double back up as they succeed."""
        while self._leaving is not None and not self._closed:  # its slots go to others first, then to this run
            await asyncio.sleep(LEAVING_POLL_SECONDS)
        if self._background:  # a slot this run gave back is free on the server before it asks
            await asyncio.gather(*self._background - {asyncio.current_task()}, return_exceptions=True)
        if self._shared and time.monotonic() - self._paused_at >= POLL_SECONDS:  # at most once a poll
            self._shared, self._paused_at = False, time.monotonic()
            await asyncio.sleep(random.uniform(0.0, POLL_SECONDS))
        request = asyncio.ensure_future(client.increment_concurrency_slots_with_lease(
            names=[self.name], slots=slots, mode="concurrency", lease_duration=LEASE_SECONDS))  # fmt: skip
        try:
            response = await asyncio.shield(request)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 422 and slots > 1:  # more than the limit's size: ask again for one
                self.requests["too many"] += 1
                self._ask_size = 1
                return None
            if exc.response.status_code != 423:
                raise
            self.requests["full"] += 1
            self._ask_size = 1
            await asyncio.sleep(min(retry_after(exc.response.headers.get("Retry-After")), POLL_SECONDS))
            return None
        except asyncio.CancelledError:  # stopped while asking: a slot granted meanwhile goes back
            with suppress(Exception):
                self._release(self._lease(await request, slots))
            raise
        self._ask_size = min(self.batch, 2 * self._ask_size)
        return self._lease(response, slots)

    def _lease(self, response: httpx.Response, slots: int) -> _Lease:
        answer = ConcurrencyLimitWithLeaseResponse.model_validate(response.json())
        if not answer.limits:
            raise NoAccountLimit(f"no global concurrency limit {self.name!r}: create it before a run shares it")
        self.requests["take"] += 1
        self.batch = min([self.batch, *(limit.limit for limit in answer.limits if limit.limit > 0)])
        lease = _Lease(answer.lease_id, size=slots)
        self._held.add(lease)
        if not self._closed:
            self._renewals.start()
        return lease

    def _release(self, lease: _Lease) -> None:
        if lease is self._leaving:
            self._leaving = None
        if lease in self._held:
            self._held.discard(lease)
            if not lease.lapsed:  # a lapsed one the server has freed already
                self._spawn(self._send_release(lease))

    async def _send_release(self, lease: _Lease) -> None:
        self.requests["give"] += 1
        try:
            async with get_client() as client:
                await client.release_concurrency_slots_with_lease(lease_id=lease.id)
        except Exception as exc:  # the server frees it when its lease lapses
            logger.warning("a slot of %r could not be given back (%s); it is free in %.0f s at the latest",
                           self.name, exc, LEASE_SECONDS)  # fmt: skip


def retry_after(header: str | None) -> float:
    """The server's Retry-After in seconds, within reason whatever it says."""
    try:
        seconds = float(header or "")
    except ValueError:
        return 1.0
    return min(max(seconds, 0.1), 30.0) if seconds == seconds else 1.0  # NaN: the default
