"""The budget's arithmetic on a clock the test moves: what tasks hold, what is admitted, what is stopped."""

from __future__ import annotations

from decimal import Decimal

from flows.engine.budget import Budget
from wiro_tasks import Quote

PER_SECOND = Quote(fixed=None, cps=Decimal("0.01"), typical=Decimal("0.02"), source="cps")  # 2 s typical
FIXED = Quote(fixed=Decimal("0.05"), cps=None, typical=Decimal("0.05"), source="tier")
UNIT = Decimal(1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def budget(limit: str, clock: Clock) -> Budget:
    return Budget(Decimal(limit), horizon=2.0, period=0.25, clock=clock)


def test_a_per_second_task_holds_its_typical_seconds_plus_the_time_a_kill_takes() -> None:
    clock = Clock()
    money = budget("0.10", clock)
    assert money.plan(PER_SECOND, UNIT) == Decimal("0.01") * Decimal("4.25")
    assert money.reserve("a", UNIT, PER_SECOND) == "ok"
    assert money.reserve("b", UNIT, PER_SECOND) == "ok"
    assert money.reserve("c", UNIT, PER_SECOND) == "wait", "3 x $0.0425 is more than $0.10"
    money.launch("a")
    clock.now += 10  # a ran long: it now holds what 12.25 s may cost, more than its plan
    assert money.committed == Decimal("0.01") * Decimal("12.25") + Decimal("0.0425")


def test_the_guard_stops_the_youngest_running_tasks_before_the_worst_case_passes() -> None:
    """Looking every `period`, the guard stops tasks so that what they cost by the time a Kill lands
    never passes the limit, youngest first, and not one more than needed at each look."""
    clock = Clock()
    money = budget("0.20", clock)
    for row in "abc":
        assert money.reserve(row, UNIT, PER_SECOND) == "ok"
        money.launch(row)
        clock.now += 1.0
    sent = {row: f.sent for row, f in money.flights.items()}
    stopped: dict[str, float] = {}
    while clock.now < 160:
        for row in money.to_stop(lambda row: row not in stopped):
            stopped[row] = clock.now
        clock.now += 0.25
    assert list(stopped) == ["c", "b", "a"]
    assert stopped["c"] <= stopped["b"] <= stopped["a"]
    # Each is billed at most until its Kill lands (`horizon` after the decision): together within $0.20.
    worst = sum(Decimal("0.01") * Decimal(str(stopped[r] + 2.0 - (sent[r] or 0))) for r in "abc")
    assert Decimal("0.19") < worst <= Decimal("0.20")
    assert money.committed <= Decimal("0.20")


def test_a_task_without_a_known_id_is_never_chosen_but_still_counted() -> None:
    clock = Clock()
    money = budget("0.10", clock)
    for row in "ab":
        money.reserve(row, UNIT, PER_SECOND)
        money.launch(row)
    clock.now += 8.0
    assert money.to_stop(lambda row: row == "a") == ["a"], "b's Run answer is not back: it cannot be stopped"


def test_a_task_whose_answer_is_late_counts_until_it_can_be_found_and_stopped() -> None:
    """b's Run answer is not back and its task cannot be found before `unanswered` s: it is counted
    as billing until a Kill sent then could land, so a is stopped now to make room. Counted only
    `lookahead` ahead, both would run on and together pass the limit before b could be stopped."""
    clock = Clock()
    money = Budget(Decimal("0.10"), horizon=2.0, period=0.25, unanswered=4.0, clock=clock)
    money.reserve("a", UNIT, PER_SECOND)
    money.launch("a")
    clock.now += 3.0
    money.reserve("b", UNIT, PER_SECOND)
    money.launch("b")
    assert money.to_stop(lambda row: row == "a") == ["a"], "a (5.25 s) + b (6 s) may pass $0.10"
    blind = Budget(Decimal("0.10"), horizon=2.0, period=0.25, clock=clock)
    blind.flights = {row: type(f)(f.quote, f.work, sent=f.sent) for row, f in money.flights.items()}
    assert blind.to_stop(lambda row: row == "a") == [], "counted 2.25 s ahead only, nothing is stopped yet"


def test_a_stop_that_could_not_be_sent_is_counted_as_running_and_chosen_again() -> None:
    clock = Clock()
    money = budget("0.05", clock)
    assert money.reserve("a", UNIT, PER_SECOND) == "ok"
    money.launch("a")
    clock.now += 10
    assert money.to_stop(lambda row: True) == ["a"]
    stopped = money.exposure(money.flights["a"], clock.now + 60)
    assert money.to_stop(lambda row: True) == [], "being stopped: not chosen twice"
    money.unstop("a")  # Wiro did not take the Kill: the task runs on
    assert money.exposure(money.flights["a"], clock.now + 60) > stopped, "it grows again"
    assert money.to_stop(lambda row: True) == ["a"], "and the guard tries again"


def test_fixed_prices_are_held_exactly_and_never_stopped() -> None:
    clock = Clock()
    money = budget("0.12", clock)
    assert [money.reserve(r, UNIT, FIXED) for r in "abc"] == ["ok", "ok", "wait"]
    for row in "ab":
        money.launch(row)
    clock.now += 3600
    assert money.to_stop(lambda row: True) == []
    money.settle("a", Decimal("0.05"), UNIT)
    assert money.reserve("c", UNIT, FIXED) == "wait", "0.05 billed + 0.05 held + 0.05 > 0.12"
    money.settle("b", Decimal("0.05"), UNIT)
    assert money.reserve("c", UNIT, FIXED) == "over"


def test_a_tasks_own_dearer_rate_counts_from_when_it_is_seen() -> None:
    clock = Clock()
    money = budget("1.00", clock)
    money.reserve("a", UNIT, PER_SECOND)
    money.launch("a")
    clock.now += 10
    money.observe("a", Decimal("0.05"))
    assert money.exposure(money.flights["a"], clock.now) == Decimal("0.5")


def test_the_time_tasks_really_take_is_learned_from_those_that_ran_to_their_end() -> None:
    clock = Clock()
    money = budget("1.00", clock)
    money.reserve("a", UNIT, PER_SECOND)
    money.launch("a")
    clock.now += 5.0
    money.settle("a", Decimal("0.05"), UNIT)
    assert money.plan(PER_SECOND, UNIT) == Decimal("0.01") * (Decimal("6.0") + Decimal("2.25")), "5 s + 20%"
    money.hold("b", UNIT, PER_SECOND, age=30.0)  # resumed: its age is an upper bound, not a run time
    clock.now += 1.0
    money.settle("b", Decimal("0.05"), UNIT)
    assert money.plan(PER_SECOND, UNIT) == Decimal("0.01") * (Decimal("6.0") + Decimal("2.25"))


def test_a_resumed_guard_starts_from_every_cost_and_the_dearest_rate_any_finished_task_was_billed() -> None:
    """Worked out once per shape of task (`work_by_row`), not once per row, as it was per row."""
    from types import SimpleNamespace
    from typing import cast

    from flows.engine.budget import work_units
    from flows.engine.guard import BudgetGuard
    from flows.engine.ledger import Ledger
    from flows.engine.settings import Settings
    from flows.store.rowstate import RowState

    rows = [{"row_id": f"r{n}", "size": "832*480", "numFrames": (121, 61, 33)[n % 3], "steps": 25} for n in range(9)]
    costs = [Decimal(c) for c in ("0.40", "0.30", "0.05", "0.20", "0.31", "0", "0.10", "0.90", "0.01")]
    states = {str(r["row_id"]): RowState(str(r["row_id"]), phase="finished", costs={"t": c})
              for r, c in zip(rows, costs, strict=True)}  # fmt: skip
    states["r7"].phase = "submitted"  # running: billed so far, no rate yet
    states["elsewhere"] = RowState("elsewhere", phase="finished", costs={"u": Decimal("5")})  # not this grid's
    guard = BudgetGuard(cast(Ledger, SimpleNamespace(states=states)), rows, Settings(), {})
    assert guard.spent == sum(costs) + 5
    rates = [c / work_units(r) for r, c in zip(rows, costs, strict=True) if c > 0 and r["row_id"] != "r7"]
    assert guard.budget.rate == max(rates) == Decimal("0.31") / work_units(rows[4])
