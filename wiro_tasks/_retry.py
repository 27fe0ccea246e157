"""When to try a request again, and how long to wait between polls.

The rule, in one place: reads (Task/Detail, Task/List, Kill, Cancel, downloads) and uploads
(File/Upload) are retried on errors whose `retryable` is true (429, 5xx, broken connections),
honouring `Retry-After`. Uploads are not billed, so repeating one whose answer was lost costs
nothing (it leaves an unused file behind at most). A Run request is never retried here: whether
to submit again is the caller's decision, because a Run whose answer was lost may already have
created a paid task.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from ._config import DEFAULT_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_RETRIES
from ._exceptions import APIError, WiroError


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter; `backoff=0` makes retries immediate (tests)."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF

    def should_retry(self, error: WiroError, attempt: int) -> bool:
        return error.retryable and attempt < self.max_retries

    def delay(self, error: WiroError, attempt: int) -> float:
        """Seconds to sleep before retry number `attempt + 1`."""
        if isinstance(error, APIError) and error.retry_after is not None:
            return min(error.retry_after, self.max_backoff * 4)
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        return random.uniform(ceiling / 2, ceiling) if ceiling > 0 else 0.0


@dataclass(frozen=True)
class PollSchedule:
    """Delays between status polls: `first`, then growing by `factor` up to `cap`, with jitter.

    Long video tasks take minutes; a fixed short interval would spend most polls learning
    nothing, while a cap keeps the lag between a task's end and noticing it bounded.
    """

    first: float = 3.0
    factor: float = 1.5
    cap: float = 30.0
    jitter: float = 0.1

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            spread = delay * self.jitter
            yield max(0.0, delay + random.uniform(-spread, spread))
            delay = min(self.cap, delay * self.factor)
