"""The Wiro account's limit, a Prefect global concurrency limit, held across a run's rows
(`flows/engine/account.py`), against a real Prefect server: the limit holds across runs, a row
costs no request once the run holds its slots, slots go back when a run is through with them or
has held them its share, and a row stopped while it waits leaves nothing held."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from flows.engine.account import AccountSlots, NoAccountLimit, retry_after


def new_limit(size: int) -> tuple[str, int]:
    """A global concurrency limit of `size` slots of its own, on the test server."""
    name = f"account-{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        async with get_client() as client:
            await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=size))

    asyncio.run(create())
    return name, size


@pytest.fixture
def limit(prefect_api: str) -> tuple[str, int]:
    """A global concurrency limit of 3 slots of its own."""
    return new_limit(3)


async def active_slots(name: str) -> int:
    async with get_client() as client:
        return (await client.read_global_concurrency_limit_by_name(name)).active_slots


class Rows:
    """Rows that each hold a slot for `seconds`, counting how many hold one at once."""

    def __init__(self) -> None:
        self.inside = self.peak = 0

    async def row(self, slots: AccountSlots, seconds: float) -> None:
        async with slots.slot():
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            await asyncio.sleep(seconds)
            self.inside -= 1


def test_two_runs_never_hold_more_than_the_limit_and_give_every_slot_back(limit: tuple[str, int]) -> None:
    name, size = limit
    rows = Rows()

    async def main() -> int:
        runs = [AccountSlots(name), AccountSlots(name)]
        rng = random.Random(7)
        await asyncio.gather(*(rows.row(runs[n % 2], rng.uniform(0.0, 0.03)) for n in range(60)))
        for run in runs:
            await run.close()
        return await active_slots(name)

    assert asyncio.run(main()) == 0, "every slot back on the server once the runs close"
    assert rows.peak == size, f"{rows.peak} rows held a slot at once; the limit is {size}"


@pytest.mark.parametrize("rows", [20, 80])
def test_a_row_costs_no_request_once_the_run_holds_its_slots(limit: tuple[str, int], rows: int) -> None:
    name, size = limit

    async def main() -> AccountSlots:
        slots = AccountSlots(name)
        await asyncio.gather(*(Rows().row(slots, 0.005) for _ in range(rows)))
        await slots.close()
        return slots

    slots = asyncio.run(main())
    # Prefect's `concurrency()` took and gave back a slot for every row: 2 requests a row, and a renewal.
    assert slots.requests["take"] <= 2 * size, dict(slots.requests)  # the rows that asked at first, at most
    assert slots.requests["give"] == slots.requests["take"], dict(slots.requests)
    assert slots.requests["too many"] <= 1, "a batch bigger than the limit is asked for once, then never"


@pytest.mark.parametrize("size", [3, 30])  # leases of 1 slot, and of 3
def test_a_busy_run_lets_another_run_on_the_account_in(prefect_api: str, size: int) -> None:
    """A lease held its share goes back to the server once the rows fit in the others, though
    this run has more rows: another run that waits on the account gets its turn, as it did when
    each row took and gave back its own."""
    name, _ = new_limit(size)

    async def main() -> tuple[float, set[int]]:
        busy, other = AccountSlots(name, share_seconds=0.2), AccountSlots(name)
        loop = asyncio.get_running_loop()
        started, let_in = loop.time(), asyncio.Event()

        async def rows_one_after_another() -> None:
            while not let_in.is_set() and loop.time() < started + 20:
                await Rows().row(busy, 0.01)

        rows = [asyncio.create_task(rows_one_after_another()) for _ in range(size)]
        while busy.held < size:  # the busy run holds every slot
            await asyncio.sleep(0.05)
        sizes = {lease.size for lease in busy._held}
        async with other.slot():
            waited = loop.time() - started
            let_in.set()
        await asyncio.gather(*rows)
        await busy.close()
        await other.close()
        return waited, sizes

    waited, sizes = asyncio.run(main())
    assert sizes == {size // 10 or 1}
    assert waited < 15, "the other run waited as long as the busy run had rows"


def test_a_busy_run_gives_one_aged_slot_back_in_each_share_period_at_most(limit: tuple[str, int]) -> None:
    """Slots that have served their share go back one at a time, not each as it ages: with instant
    rows every slot in turn was two requests per row past its share (a quarter of the server's work
    under four shards)."""
    name, size = limit

    async def main() -> AccountSlots:
        slots = AccountSlots(name, share_seconds=0.1, share_every=1.0)
        loop = asyncio.get_running_loop()
        until = loop.time() + 3.0

        async def rows_one_after_another() -> None:
            while loop.time() < until:
                await Rows().row(slots, 0.005)

        await asyncio.gather(*(rows_one_after_another() for _ in range(size)))
        given = slots.requests["give"]
        await slots.close()
        slots.requests["during"] = given
        return slots

    slots = asyncio.run(main())
    # one slot's worth a second for 3 s (a lease of 3 slots back once, maybe twice), not one a row
    assert 1 <= slots.requests["during"] <= 4, dict(slots.requests)


async def rows_in_flight(slots: AccountSlots, count: int, name: str) -> tuple[list[int], int]:
    """`count` rows that hold their slots at once: the run's lease sizes and the server's count
    meanwhile, and one renewal round (what the renewer sends every 75 s)."""
    inside, go = asyncio.Event(), asyncio.Event()
    rows = Rows()

    async def row() -> None:
        async with slots.slot():
            rows.inside += 1
            if rows.inside == count:
                inside.set()
            await go.wait()

    running = [asyncio.create_task(row()) for _ in range(count)]
    await asyncio.wait_for(inside.wait(), timeout=30)
    sizes = sorted(lease.size for lease in slots._held)
    on_server = await active_slots(name)
    async with get_client() as client:
        for lease in list(slots._held):
            await slots._renewals.renew_one(client, lease)
    go.set()
    await asyncio.gather(*running)
    await slots.close()
    return sizes, on_server


def test_slots_come_in_leases_of_a_batch(prefect_api: str) -> None:
    """100 rows at once take their slots in 10 leases, and those 10 are what is renewed and given
    back: a lease a slot, 100 requests each, was 80 a minute for a shard in renewals alone."""
    name, _ = new_limit(100)
    slots = AccountSlots(name, batch=10)
    sizes, on_server = asyncio.run(rows_in_flight(slots, 100, name))
    assert sizes == [10] * 10
    assert on_server == 100
    assert dict(slots.requests) == {"take": 10, "renew": 10, "give": 10}


def test_a_small_run_takes_its_slots_one_lease_each(prefect_api: str) -> None:
    """A lease is at most a tenth of what the run holds: the lease that goes back for another
    run's turn leaves the rest of a run of 10 going, not all of it stopped until it drains."""
    name, _ = new_limit(10)
    slots = AccountSlots(name, batch=10)
    sizes, on_server = asyncio.run(rows_in_flight(slots, 10, name))
    assert sizes == [1] * 10
    assert on_server == 10


def test_rows_that_come_and_go_keep_their_leases(prefect_api: str) -> None:
    """20 rows in step: each does 100 ms of other work (a download), then holds its slot 50 ms.
    Half a second never passes without every slot in use, so no lease goes back: leases given back
    whenever their slots happened to be free at the half second's end came back at the next row."""
    name, _ = new_limit(20)

    async def main() -> tuple[int, AccountSlots]:
        slots = AccountSlots(name, batch=10)
        first, everyone = Rows(), asyncio.Event()

        async def row_after_row() -> None:
            async with slots.slot():
                first.inside += 1
                if first.inside == 20:
                    everyone.set()
                await everyone.wait()  # every slot taken: from here on, the rows go in step
            until = asyncio.get_running_loop().time() + 3.0
            while asyncio.get_running_loop().time() < until:
                await asyncio.sleep(0.1)
                await Rows().row(slots, 0.05)

        rows = [asyncio.create_task(row_after_row()) for _ in range(20)]
        await asyncio.wait_for(everyone.wait(), timeout=30)
        at_start = slots.requests["take"]
        await asyncio.gather(*rows)
        await slots.close()
        return at_start, slots

    at_start, slots = asyncio.run(main())
    assert slots.requests["take"] == at_start, dict(slots.requests)


def test_a_batch_the_server_has_no_room_for_becomes_one_slot(prefect_api: str) -> None:
    """Another run holds 2 of 3 slots: asking for 5 at once would be refused as long as it holds
    them. This run asks for one slot instead, and its 5 rows go through it in turn."""
    name, size = new_limit(3)
    rows = Rows()

    async def main() -> AccountSlots:
        other, this = AccountSlots(name), AccountSlots(name)
        holding, done = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with other.slot():
                rows.inside += 1
                if rows.inside == 2:
                    holding.set()
                await done.wait()
                rows.inside -= 1

        held = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.wait_for(holding.wait(), timeout=30)
        await asyncio.wait_for(asyncio.gather(*(rows.row(this, 0.05) for _ in range(5))), timeout=60)
        done.set()
        await asyncio.gather(*held)
        await other.close()
        await this.close()
        return this

    this = asyncio.run(main())
    assert rows.peak == size, f"{rows.peak} rows held a slot at once; the limit is {size}"
    assert this.requests["full"] >= 1, dict(this.requests)  # it asked for more first, and was refused


def test_a_slot_given_back_as_its_renewal_is_sent_is_not_reported_lost(
    limit: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """Renewals go through every slot held, one request each: a slot given back meanwhile is
    refused (410) when its turn comes. That is no slot lost, and no warning: sweeps of 10,000
    rows logged a dozen."""
    name, _ = limit

    async def main() -> None:
        slots = AccountSlots(name)
        async with slots.slot():
            pass
        [lease] = list(slots._held)
        slots._release(lease)  # as a share or a handoff's end gives it back
        await asyncio.gather(*slots._background)
        async with get_client() as client:
            await slots._renewals.renew_one(client, lease)
        await slots.close()

    with caplog.at_level(logging.WARNING, logger="flows.engine"):
        asyncio.run(main())
    assert "could not be renewed" not in caplog.text


def test_a_row_stopped_while_it_waits_leaves_no_slot_held(limit: tuple[str, int]) -> None:
    name, size = limit

    async def main() -> tuple[int, int]:
        slots = AccountSlots(name)
        holders = [asyncio.create_task(Rows().row(slots, 0.5)) for _ in range(size)]
        await asyncio.sleep(0.2)
        waiting = asyncio.create_task(Rows().row(slots, 0.0))  # the limit is full: it waits
        await asyncio.sleep(0.2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.gather(*holders)
        held = slots.held
        await slots.close()
        await asyncio.sleep(0.1)
        return held, await active_slots(name)

    held, active = asyncio.run(main())
    assert held <= size
    assert active == 0, f"{active} slot(s) still taken on the server"


def test_a_limit_that_does_not_exist_fails_the_row(prefect_api: str) -> None:
    async def main() -> None:
        slots = AccountSlots(f"missing-{uuid.uuid4().hex[:8]}")
        try:
            await Rows().row(slots, 0.0)
        finally:
            await slots.close()

    with pytest.raises(NoAccountLimit):
        asyncio.run(main())


@pytest.mark.parametrize(("header", "seconds"), [("2.5", 2.5), (None, 1.0), ("soon", 1.0), ("nan", 1.0),
                                                 ("-4", 0.1), ("1e9", 30.0), ("inf", 30.0)])  # fmt: skip
def test_the_server_s_retry_after_is_read_within_reason(header: str | None, seconds: float) -> None:
    assert retry_after(header) == seconds


async def refused_at_renewal(slots: AccountSlots) -> None:
    """The server drops the lease while its row runs (as when it is not renewed in time): the
    renewer's next try is refused (410)."""
    holder = asyncio.create_task(Rows().row(slots, 0.8))
    await asyncio.sleep(0.2)
    (lease,) = slots._held
    async with get_client() as client:
        await client.release_concurrency_slots_with_lease(lease_id=lease.id)
    await holder


async def slept_past_renewal(slots: AccountSlots) -> None:
    """The machine slept past a renewal: the wall clock moved on, the event loop's did not."""
    await Rows().row(slots, 0.0)
    (lease,) = slots._held
    lease.expires = time.time()  # as after a suspend of five minutes


@pytest.mark.parametrize("lapse", [refused_at_renewal, slept_past_renewal])
def test_a_slot_whose_lease_lapsed_serves_no_other_row(
    limit: tuple[str, int], monkeypatch: pytest.MonkeyPatch, lapse: Callable[[AccountSlots], Awaitable[None]]
) -> None:
    """A lapsed lease's slot may be another run's by now: the next row asks the server again,
    though the slot is still this run's to hand over (a long hand-off keeps it idle)."""
    name, _ = limit
    monkeypatch.setattr("flows.engine.account.RENEW_EVERY", 0.2)

    async def main() -> AccountSlots:
        slots = AccountSlots(name, handoff_seconds=5.0)
        await lapse(slots)
        await Rows().row(slots, 0.0)
        await slots.close()
        return slots

    slots = asyncio.run(main())
    assert slots.requests["take"] == 2, dict(slots.requests)


def test_rows_still_waiting_when_the_run_closes_fail_rather_than_hang(limit: tuple[str, int]) -> None:
    name, size = limit

    async def main() -> tuple[BaseException | None, int]:
        slots = AccountSlots(name)
        holders = [asyncio.create_task(Rows().row(slots, 0.6)) for _ in range(size)]
        while slots.held < size:
            await asyncio.sleep(0.05)
        waiting = asyncio.create_task(Rows().row(slots, 0.0))
        await asyncio.sleep(0.2)
        closing = asyncio.create_task(slots.close())
        await asyncio.wait_for(asyncio.gather(*holders, closing), timeout=30)
        (ended,) = await asyncio.wait_for(asyncio.gather(waiting, return_exceptions=True), timeout=30)
        await asyncio.sleep(0.2)
        return ended, await active_slots(name)

    ended, active = asyncio.run(main())
    assert isinstance(ended, RuntimeError), ended
    assert active == 0, "the slots of rows that ended after the close went back too"
