"""Money: estimates for tasks not yet billed, and the budget check before each submission.

Wiro bills after a task ends, so a budget must count tasks in flight at an estimate. A task's
cost grows with its work (frames x steps x pixels); the estimate per unit of work starts at a
prior (`estimate_usd` for a default-sized task) and becomes the highest rate actually billed
in this sweep once there is one, plus a margin: cautious, and right for the account's real
price. Until a first task has been billed, a budgeted sweep keeps one task in flight, so the
prior can never overspend by more than one task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Literal

Verdict = Literal["ok", "wait", "over"]

DEFAULT_ESTIMATE_USD = Decimal("0.10")
MARGIN = Decimal("1.2")
_REFERENCE_WORK = 121 * 25 * 832 * 480


def work_units(inputs: Mapping[str, object]) -> Decimal:
    """A task's work relative to the model page's default settings (1 for the defaults)."""
    width, height = (int(x) for x in str(inputs.get("size", "832*480")).split("*"))
    frames = int(str(inputs.get("numFrames", 121)))
    steps = int(str(inputs.get("steps", 25)))
    return Decimal(frames * steps * width * height) / _REFERENCE_WORK


class Budget:
    """Holds the work of every task in flight, priced at the current estimate; `limit=None` never refuses.

    Reservations are kept as work, not money, so when a first bill teaches the real rate every
    task already in flight is re-priced at once.
    """

    def __init__(
        self,
        limit: Decimal | None,
        *,
        spent: Decimal = Decimal(0),
        estimate_usd: Decimal = DEFAULT_ESTIMATE_USD,
        observed_rates: Iterable[Decimal] = (),
    ) -> None:
        self.limit = limit
        self.spent = spent
        self.prior = estimate_usd
        self.rate: Decimal | None = max(observed_rates, default=None)
        self.reserved: dict[str, Decimal] = {}  # row id -> work units in flight
        self.orphans: set[str] = set()

    def estimate(self, work: Decimal) -> Decimal:
        """What a task of `work` units may cost: the prior, or the highest billed rate plus margin."""
        return (self.rate * MARGIN if self.rate is not None else self.prior) * work

    @property
    def committed(self) -> Decimal:
        """Billed so far plus the estimates of everything in flight."""
        return self.spent + self.estimate(sum(self.reserved.values(), Decimal(0)))

    def hold(self, row_id: str, work: Decimal) -> None:
        """Count a task that is already in flight (found on resume), whatever the limit."""
        self.reserved[row_id] = work

    def reserve(self, row_id: str, work: Decimal) -> Verdict:
        """Hold an estimate for a submission: `ok`; `wait` until a task in flight is billed (the
        estimate may then fit, or a first bill sets the rate); `over` when nothing in flight
        could make it fit."""
        if self.limit is not None:
            others = sum((w for k, w in self.reserved.items() if k != row_id), Decimal(0))
            settling = any(k != row_id and k not in self.orphans for k in self.reserved)
            if self.spent + self.estimate(others + work) > self.limit:
                return "wait" if settling else "over"
            if self.rate is None and settling:
                return "wait"
        self.reserved[row_id] = work
        return "ok"

    def release(self, row_id: str) -> None:
        self.reserved.pop(row_id, None)
        self.orphans.discard(row_id)

    def orphan(self, row_id: str) -> None:
        """A task still runs but nobody waits for it here: keep its estimate, expect no bill."""
        if row_id in self.reserved:
            self.orphans.add(row_id)

    def settle(self, row_id: str, cost: Decimal, work: Decimal) -> None:
        """A task ended: its real cost replaces its estimate and teaches the rate."""
        self.release(row_id)
        self.spent += cost
        if cost > 0 and work > 0:
            rate = cost / work
            self.rate = rate if self.rate is None else max(self.rate, rate)
