"""Progress of a running sweep, for whoever listens in this process (the CLI's progress bar).

Listeners are plain callables registered here, not flow parameters, so nothing unpicklable
or secret ever becomes part of a Prefect run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Progress:
    """Counts after a row changed: how many rows are done out of `total`, and the bill so far."""

    total: int
    done: int
    by_status: dict[str, int]
    cost: Decimal
    last_row: str = ""
    last_status: str = ""


Listener = Callable[[Progress], None]
_listeners: list[Listener] = []


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def publish(progress: Progress) -> None:
    for listener in list(_listeners):
        listener(progress)
