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
so. A lease goes back whole: rows pack into the fullest lease with a slot free, so the others fall
idle. A run asks for as many slots as rows wait, up to `BATCH`; refused (the server has fewer
free), it asks for one, and doubles back up as asks succeed.

Other runs on the account get their turn: a lease that has served this run for `SHARE_SECONDS`
takes no new row and goes back as its rows end, one lease at a time, and one slot's worth in
each `SHARE_EVERY` seconds at most. (Every slot in turn, as each aged, was 10 requests a second
for a shard of 100 slots and instant tasks: a quarter of what the Prefect server did under four
shards, docs/benchmarks.md section 16.) The server hands a free slot to whoever asks first, so
this run then asks again after a random pause of up to `POLL_SECONDS`, and a run the server
turned away asks again within as long: each has its chance, where an immediate ask would
always win.

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
HANDOFF_SECONDS = 0.5  # a slot no row of this run asked for in this long goes back to the server
SHARE_SECONDS = 20.0  # a slot held this long goes back as its row ends
SHARE_EVERY = 2.0  # ...one slot in this long at most, per run
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
    """`size` slots of the limit, taken, renewed and given back together; `rows` of them in use."""

    id: UUID
    size: int = 1
    rows: int = 0
    since: float = field(default_factory=time.monotonic)
    expires: float = field(default_factory=lambda: time.time() + LEASE_SECONDS)  # wall clock: it runs on in a suspend
    idle_since: float = 0.0
    lapsed: bool = False  # its renewal was refused: the server counts it no more
    draining: bool = False  # it has served its share: no new row, and back to the server as its rows end

    def usable(self) -> bool:
        """Still counted by the server, with a renewal's margin to spare."""
        return not self.lapsed and time.time() < self.expires - RENEW_EVERY

    def open(self) -> bool:
        """A slot of it may serve one more row."""
        return self.rows < self.size and not self.draining and self.usable()


class AccountSlots:
    """One slot of the limit `name` for each row that holds one, shared out across this run's rows."""

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
        self._held: set[_Lease] = set()  # every lease this run holds, in use or idle
        self._waiting: deque[asyncio.Future[_Lease]] = deque()  # rows that asked and have none yet
        self._background: set[asyncio.Task[None]] = set()  # slots on their way back
        self._asking = False  # the loop that asks the server is on (set and cleared without a pause)
        self._renewer: asyncio.Task[None] | None = None
        self._shared = False  # a slot went back for others' turn since this run last paused to ask
        self._paused_at = -POLL_SECONDS
        self._closed = False

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        lease = await self._take()
        try:
            yield
        finally:
            self._give(lease)

    @property
    def held(self) -> int:
        """Slots this run holds on the server, in use or not."""
        return sum(lease.size for lease in self._held)

    async def close(self) -> None:
        """Give every slot back and stop, once the rows have ended: a row that still waits fails, and
        one that still holds a slot gives it back as it ends, if the event loop lives that long."""
        self._closed = True
        self._fail_waiting(RuntimeError(f"the run's slots of {self.name!r} were closed"))
        for lease in [lease for lease in self._held if lease.rows == 0]:
            self._release(lease)
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._renewer:
            self._renewer.cancel()

    async def _take(self) -> _Lease:
        if self._closed:
            raise RuntimeError(f"the run's slots of {self.name!r} are closed")
        lease = self._open_lease()
        if lease is not None:
            lease.rows += 1
            return lease
        waiter: asyncio.Future[_Lease] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if not self._asking:
            self._asking = True
            self._spawn(self._ask_for_waiters())
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give(waiter.result())  # handed over as the row was stopped
            raise

    def _open_lease(self) -> _Lease | None:
        """The fullest lease with a slot free: rows pack into few leases, so the others fall idle
        and go back. A lease past use with no row on it goes back on the way."""
        best = None
        for lease in list(self._held):
            if not lease.usable() and lease.rows == 0:
                self._release(lease)
            elif lease.open() and (best is None or lease.rows > best.rows):
                best = lease
        return best

    def _give(self, lease: _Lease) -> None:
        """A row is through with its slot of `lease`: to a row that waits, kept a moment, or back."""
        lease.rows -= 1
        if not lease.draining and self._share_due(lease):
            lease.draining = self._shared = True
        if self._closed or lease.draining or not lease.usable():
            if lease.rows == 0:
                self._release(lease)
            return
        self._hand_out(lease)

    def _share_due(self, lease: _Lease) -> bool:
        """Whether `lease` goes back for others' turn: it has served this run `share_seconds`, no
        other lease of this run is on its way back, and `share_every` a slot has passed."""
        now = time.monotonic()
        if now - lease.since < self.share_seconds or now - self._last_shared < self.share_every * lease.size:
            return False
        if any(other.draining for other in self._held):
            return False
        self._last_shared = now
        return True

    def _hand_out(self, lease: _Lease) -> None:
        """`lease`'s free slots to the rows that wait; if no row is on it then, it idles a moment."""
        while self._waiting and lease.open():
            waiter = self._waiting.popleft()
            if not waiter.done():
                lease.rows += 1
                waiter.set_result(lease)
        if lease.rows == 0:
            lease.idle_since = time.monotonic()
            asyncio.get_running_loop().call_later(self.handoff_seconds, self._expire)

    def _expire(self) -> None:
        now = time.monotonic()
        for lease in [lease for lease in self._held if lease.rows == 0]:
            if now - lease.idle_since >= self.handoff_seconds * 0.99:
                self._release(lease)

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
                        lease = await self._ask(client, min(wanted, self._ask_size, self.batch))
                    except Exception as exc:  # the row it was asked for fails, as `concurrency()` failed it
                        self._fail_waiting(exc, rows=1)
                        continue
                    if lease:
                        self._hand_out(lease)
                self._asking = False  # before the client closes: a row that asks from here starts another loop
        except Exception as exc:  # no client: every row that waits fails rather than waits for nothing
            self._fail_waiting(exc)
        finally:
            self._asking = False

    async def _ask(self, client: Any, slots: int) -> _Lease | None:
        """A lease of `slots` slots of the limit, or None after a wait while the server has not as
        many free (423): the next ask is for one slot, and asks double back up as they succeed."""
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
        if not self._closed and (self._renewer is None or self._renewer.done()):
            self._renewer = asyncio.get_running_loop().create_task(self._renew())
        return lease

    def _release(self, lease: _Lease) -> None:
        if lease in self._held:
            self._held.discard(lease)
            self._spawn(self._send_release(lease))

    async def _send_release(self, lease: _Lease) -> None:
        self.requests["give"] += 1
        try:
            async with get_client() as client:
                await client.release_concurrency_slots_with_lease(lease_id=lease.id)
        except Exception as exc:  # the server frees it when its lease lapses
            logger.warning("a slot of %r could not be given back (%s); it is free in %.0f s at the latest",
                           self.name, exc, LEASE_SECONDS)  # fmt: skip

    async def _renew(self) -> None:
        """Every lease held, renewed every RENEW_EVERY seconds; it ends with the slots (the next lease restarts it)."""
        try:
            async with get_client() as client:
                while self._held and not self._closed:
                    await asyncio.sleep(RENEW_EVERY)
                    for lease in [lease for lease in self._held if not lease.lapsed]:
                        if lease in self._held:  # not given back while the ones before it were renewed
                            await self._renew_one(client, lease)
        except Exception as exc:
            logger.warning("the slots of %r could not be renewed: %s", self.name, exc)

    async def _renew_one(self, client: Any, lease: _Lease) -> None:
        self.requests["renew"] += 1
        try:
            await client.renew_concurrency_lease(lease_id=lease.id, lease_duration=LEASE_SECONDS)
            lease.expires = time.time() + LEASE_SECONDS
        except Exception as exc:  # tried again in RENEW_EVERY, well before it lapses
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else 0
            lease.lapsed = status in (404, 410)  # gone: no row takes it after its own
            if lease.lapsed and lease not in self._held:  # given back while its renewal was on its way
                return
            logger.warning("a slot of %r could not be renewed%s: %s", self.name,
                           " and is no longer held" if lease.lapsed else "", exc)  # fmt: skip


def retry_after(header: str | None) -> float:
    """The server's Retry-After in seconds, within reason whatever it says."""
    try:
        seconds = float(header or "")
    except ValueError:
        return 1.0
    return min(max(seconds, 0.1), 30.0) if seconds == seconds else 1.0  # NaN: the default
