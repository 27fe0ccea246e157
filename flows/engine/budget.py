"""Money: what each task may cost, and a budget that the bill never passes.

Before anything is submitted the model's price comes from Tool/Detail (`wiro_tasks.pricing`): a
row has a fixed price (a `dynamicprice` tier that matches it), or is billed per second at `cps`.
For every task in flight the budget holds the most it can have cost so far:

    fixed price             the price
    per second              cps x (now - the moment its Run request was sent), and while it runs
                            at least cps x its typical seconds (`approximatelycost / cps`, or the
                            longest seen so far + 20%), both `horizon + period` ahead
    no price from the API   the prior (`estimate_usd` per default-sized task), then the highest rate
                            billed x 1.2; one task at a time until a first bill

A task whose Run answer is late (or lost) cannot be stopped before its task is found in
Task/List (`RUN_LATE_SECONDS` after the Run, then a scan): `to_stop` counts a task it cannot
stop yet as billing until at least `unanswered + horizon` after its Run, so other tasks are
stopped first to make room. Admission does not hold that much for a task quoted shorter: when
every task in flight is such a one, they may together bill past the limit by what their holds
lacked (see docs/budget.md's conditions).

A submission goes ahead only when what was billed, what the tasks in flight hold and its own
hold fit in the limit. A per-second task has no price ceiling of its own, so `to_stop` looks
ahead by the time a Kill takes to land (`horizon`) and names the youngest running tasks to stop
before the worst case could pass the limit. So the bill never passes the limit, provided the API
gave a price, Wiro bills no more than it says (a tier's price; cps x seconds, the seconds no more
than the wall-clock time since the Run request) and a Kill lands within `horizon`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from wiro_tasks import Quote

Verdict = Literal["ok", "wait", "over"]

DEFAULT_ESTIMATE_USD = Decimal("0.10")
MARGIN = Decimal("1.2")
HORIZON_SECONDS = 2.0  # how long a Kill may take to stop a task's billing, from the moment it is decided
PERIOD_SECONDS = 0.25  # how often the guard looks (`to_stop`)
RUN_LATE_SECONDS = 3.0  # a Run answer this late: its task is looked for in Task/List (`RowDriver`)
UNANSWERED_SECONDS = RUN_LATE_SECONDS + 1.0  # ... and found within a second's scan: then it can be stopped
_REFERENCE_WORK = 121 * 25 * 832 * 480


def work_units(inputs: Mapping[str, object]) -> Decimal:
    """A task's work relative to the model page's default settings (1 for the defaults)."""
    size = inputs.get("size")
    if isinstance(size, str) and "*" in size:
        width, height = (int(x) for x in size.split("*"))
    else:  # image-to-video: width and height, where 0 (or none) follows the image: counted as the default size
        width, height = (_dimension(inputs.get(name), default) for name, default in (("width", 832), ("height", 480)))
    frames = int(str(inputs.get("numFrames", 121)))
    steps = int(str(inputs.get("steps", 25)))
    return Decimal(frames * steps * width * height) / _REFERENCE_WORK


def work_by_row(rows: Iterable[Mapping[str, object]]) -> dict[str, Decimal]:
    """Each row's `work_units`, worked out once per shape (the inputs it reads): 100,000 rows have a few."""
    shapes: dict[tuple[object, ...], Decimal] = {}
    work: dict[str, Decimal] = {}
    for row in rows:
        shape = (row.get("size"), row.get("width"), row.get("height"), row.get("numFrames"), row.get("steps"))
        try:
            units = shapes.get(shape)
        except TypeError:  # a value that cannot be a key
            units = work_units(row)
        if units is None:
            units = shapes[shape] = work_units(row)
        work[str(row["row_id"])] = units
    return work


def least_bill(
    status: str, recorded: Decimal, seconds: Decimal | None, rate: Decimal, *, per_second: bool = True
) -> tuple[Decimal, str]:
    """What a final task is counted at, and why when that is not its record's `totalcost`.

    A task billed per second that ran (a success, or one stopped while running) never costs less
    than its rate x its seconds: a record that leaves `totalcost` out or says less is counted at
    that. Where the billing method is not known (`per_second` False: no price from Tool/Detail),
    only a record that says nothing (0) is: a tier's price may well be below rate x seconds.
    Failed tasks are free (Wiro-Docs), so their record stands."""
    if status == "failed" or rate <= 0 or seconds is None or seconds <= 0 or (recorded and not per_second):
        return recorded, ""
    floor = rate * seconds
    if recorded >= floor:
        return recorded, ""
    return floor, (f"Wiro's record says ${recorded.normalize():f}; counted at ${floor:.6f} "
                   f"({seconds.normalize():f} s at ${rate.normalize():f}/s)")  # fmt: skip


def _dimension(value: object, default: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        return default
    return number if number > 0 else default


@dataclass
class Flight:
    """A task the budget holds money for: its quote (None: priced by the prior), its work, and when
    its Run request went out (None: not yet), when the guard decided to stop it, its own rate."""

    quote: Quote | None
    work: Decimal
    sent: float | None = None
    stopping_at: float | None = None
    cps: Decimal | None = None
    resumed: bool = False  # sent by an earlier run: `sent` is its intent's time, an upper bound on its age

    @property
    def rate(self) -> Decimal | None:
        """The per-second rate it is billed at (the higher of the quote's and its own), if per-second."""
        if self.quote is None or self.quote.fixed is not None or self.quote.cps is None:
            return None
        return max(self.quote.cps, self.cps or Decimal(0))


class Budget:
    """Holds what every task in flight may cost; `limit=None` never refuses and never stops a task."""

    def __init__(
        self,
        limit: Decimal | None,
        *,
        spent: Decimal = Decimal(0),
        estimate_usd: Decimal = DEFAULT_ESTIMATE_USD,
        observed_rates: Iterable[Decimal] = (),
        horizon: float = HORIZON_SECONDS,
        period: float = PERIOD_SECONDS,
        unanswered: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.spent = spent
        self.prior = estimate_usd
        self.rate: Decimal | None = max(observed_rates, default=None)  # dearest billed cost per work unit
        self.seconds: Decimal | None = None  # longest a per-second task took, Run request to its bill
        self.horizon = Decimal(str(horizon))
        self.period = period
        self.unanswered = Decimal(str(unanswered))  # how long a task may bill before its id can be known
        self.clock = clock
        self.flights: dict[str, Flight] = {}
        self.orphans: set[str] = set()

    # What things cost.

    def estimate(self, work: Decimal) -> Decimal:
        """What a task of `work` units may cost with no price from the API: the prior, or the
        highest billed rate plus margin."""
        return (self.rate * MARGIN if self.rate is not None else self.prior) * work

    @property
    def lookahead(self) -> Decimal:
        """How far ahead a per-second task's cost is counted: a Kill's time to land, plus a look's."""
        return self.horizon + Decimal(str(self.period))

    def plan(self, quote: Quote | None, work: Decimal) -> Decimal:
        """The cost a task is expected to reach, counted as the guard counts it: what a submission
        must find room for, so that a task of typical length is never stopped."""
        if quote is None:
            return self.estimate(work)
        if quote.fixed is not None:
            return quote.fixed
        assert quote.cps is not None
        seconds = quote.typical / quote.cps if quote.cps else Decimal(0)
        if self.seconds is not None:
            seconds = max(seconds, self.seconds * MARGIN)
        return quote.cps * (seconds + self.lookahead)

    def exposure(self, flight: Flight, at: float) -> Decimal:
        """The most a per-second task can have been billed by `at` (frozen once it is being stopped)."""
        rate = flight.rate
        if rate is None or flight.sent is None:
            return Decimal(0)
        end = min(at, flight.stopping_at + float(self.horizon)) if flight.stopping_at is not None else at
        return rate * Decimal(str(max(0.0, end - flight.sent)))

    def held(self, flight: Flight, now: float) -> Decimal:
        """What a task in flight counts for: its price, its exposure `lookahead` ahead (at least its
        plan, until it is being stopped), or the prior."""
        if flight.rate is None:
            return self.plan(flight.quote, flight.work)
        ahead = self.exposure(flight, now + float(self.lookahead))
        return ahead if flight.stopping_at is not None else max(ahead, self.plan(flight.quote, flight.work))

    @property
    def committed(self) -> Decimal:
        """Billed so far plus what every task in flight holds."""
        now = self.clock()
        return self.spent + sum((self.held(f, now) for f in self.flights.values()), Decimal(0))

    # A task's life.

    def reserve(self, row_id: str, work: Decimal, quote: Quote | None = None) -> Verdict:
        """Hold a submission's plan: `ok`; `wait` until a task in flight ends (it may then fit, or a
        first bill sets the rate); `over` when nothing in flight could make it fit."""
        flight = Flight(quote, work)
        if self.limit is not None:
            now = self.clock()
            others = sum((self.held(f, now) for k, f in self.flights.items() if k != row_id), Decimal(0))
            settling = any(k != row_id and k not in self.orphans for k in self.flights)
            if self.spent + others + self.plan(quote, work) > self.limit:
                return "wait" if settling else "over"
            if (quote is None) and self.rate is None and settling:
                return "wait"
        self.flights[row_id] = flight
        return "ok"

    def launch(self, row_id: str) -> None:
        """Its Run request is about to be sent: a per-second task may be billed from now on."""
        if row_id in self.flights:
            self.flights[row_id].sent = self.clock()

    def hold(self, row_id: str, work: Decimal, quote: Quote | None = None, age: float = 0.0) -> None:
        """Count a task that is already in flight (found on resume, its Run sent `age` s ago), whatever the limit."""
        self.flights[row_id] = Flight(quote, work, sent=self.clock() - max(0.0, age), resumed=True)

    def observe(self, row_id: str, cps: Decimal) -> None:
        """A running task's own record gave its rate: count it from now on when it is higher."""
        flight = self.flights.get(row_id)
        if flight is not None and cps > 0:
            flight.cps = max(cps, flight.cps or Decimal(0))

    def age(self, row_id: str) -> Decimal | None:
        """Seconds since a task's Run request went out (an upper bound on what it can be billed for)."""
        flight = self.flights.get(row_id)
        if flight is None or flight.sent is None:
            return None
        return Decimal(str(round(max(0.0, self.clock() - flight.sent), 3)))

    def release(self, row_id: str) -> None:
        self.flights.pop(row_id, None)
        self.orphans.discard(row_id)

    def orphan(self, row_id: str) -> None:
        """A task still runs but nobody waits for it here: keep its hold, expect no bill."""
        if row_id in self.flights:
            self.orphans.add(row_id)

    def settle(self, row_id: str, cost: Decimal, work: Decimal) -> None:
        """A task ended: its real cost replaces its hold and teaches the rate (and, for a per-second
        task that ran to its end, how long such tasks take)."""
        flight = self.flights.get(row_id)
        if (
            flight is not None
            and flight.rate is not None
            and flight.sent is not None
            and not flight.resumed
            and flight.stopping_at is None
        ):
            took = Decimal(str(max(0.0, self.clock() - flight.sent)))
            self.seconds = took if self.seconds is None else max(self.seconds, took)
        self.release(row_id)
        self.spent += cost
        if cost > 0 and work > 0:
            rate = cost / work
            self.rate = rate if self.rate is None else max(self.rate, rate)

    def unstop(self, row_id: str) -> None:
        """A stop that could not be sent: the task runs on, counted as running, and may be chosen again."""
        flight = self.flights.get(row_id)
        if flight is not None:
            flight.stopping_at = None

    def to_stop(self, stoppable: Callable[[str], bool]) -> list[str]:
        """The running per-second tasks to stop now, youngest first, so that by the next look
        (`period` s on) plus the time a Kill takes, the worst case stays within the limit.
        Marks them as being stopped; only `stoppable` rows (a known task id) are chosen, and one
        that is not is counted as billing at least until `unanswered + horizon` after its Run."""
        if self.limit is None:
            return []
        now, period = self.clock(), self.period
        look = now + float(self.lookahead)
        worst = self.spent
        running: list[tuple[str, Flight]] = []
        for row_id, flight in self.flights.items():
            if flight.rate is None:
                worst += self.plan(flight.quote, flight.work)
            elif flight.stopping_at is None and flight.sent is not None and stoppable(row_id):
                worst += self.exposure(flight, look)
                running.append((row_id, flight))
            else:
                unknown = flight.sent + float(self.unanswered + self.horizon) if flight.sent is not None else look
                worst += self.exposure(flight, look if flight.stopping_at is not None else max(look, unknown))
        victims = []
        for row_id, flight in sorted(running, key=lambda item: -(item[1].sent or 0.0)):
            if worst <= self.limit:
                break
            assert flight.rate is not None
            worst -= flight.rate * Decimal(str(period))  # stopped now, it stops growing after `horizon`
            flight.stopping_at = now
            victims.append(row_id)
        return victims
