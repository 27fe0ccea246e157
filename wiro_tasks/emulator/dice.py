"""The emulator's one weighted draw: which of several outcomes, each with its share, a draw lands on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def weighted_pick(draw: float, shares: Iterable[tuple[T, float]]) -> T | None:
    """The outcome whose share covers `draw` (a number in [0, 1)), with the shares laid end to end
    in order; None when `draw` falls past them all (the rest of the unit interval: nothing happens).

    weighted_pick(0.25, [("a", 0.2), ("b", 0.1)]) == "b"   # 0.2 <= 0.25 < 0.2 + 0.1
    """
    for outcome, share in shares:
        if draw < share:
            return outcome
        draw -= share
    return None
