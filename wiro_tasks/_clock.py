"""The server's clock, as its answers tell it: a client must not judge Wiro's times by its own clock.

Every answer carries a `Date` header: the server's time, to the second, at some instant between
sending the request and receiving the answer. So each answer bounds the offset (server time less
local time) from both sides, and the bounds narrow as answers come in. Lost-answer scans compare
`createtime` (server clock) with the time an intent was written (local clock) through these
bounds, so a server whose clock is an hour off cannot hide a task that was paid for.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class Offset:
    """The server's clock less the local one lies in [low, high] seconds."""

    low: float
    high: float


class ServerClock:
    """Bounds on the server's clock offset, from the `Date` headers of its answers; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset: Offset | None = None

    @property
    def offset(self) -> Offset | None:
        """The current bounds, or None before any answer carried a readable `Date`."""
        return self._offset

    def observe(self, date_header: str | None, sent: float, received: float) -> None:
        """Learn from one answer: its `Date` header, and the local wall times (`time.time()`) at which
        the request was sent and the answer received."""
        server = _parse(date_header)
        if server is None or received < sent:
            return
        sample = Offset(low=server - received, high=server + 1.0 - sent)
        with self._lock:
            known = self._offset
            if known is None or sample.low > known.high or sample.high < known.low:
                self._offset = sample  # the first answer, or either clock jumped: start again from this one
            else:
                self._offset = Offset(max(known.low, sample.low), min(known.high, sample.high))


def _parse(header: str | None) -> float | None:
    if not header:
        return None
    try:
        when = parsedate_to_datetime(header)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
