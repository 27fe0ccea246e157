"""Settings of the local Wiro emulator: account, timings, outcomes and injected faults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import Any, Literal

from .._config import ENV_API_KEY, ENV_API_SECRET

DEFAULT_CPS = Decimal("0.0012")
DEMO_API_KEY = "emulator"

FaultKind = Literal["ok", "500", "503", "429", "drop", "slow", "lost"]


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often. Rates are probabilities per request, from 0 to 1.

    `script` forces the outcome of the next requests in order ("ok", "500", "503", "429", "drop",
    "slow", and for Run also "lost": the task is created, then the connection drops unanswered).
    """

    error_5xx_rate: float = 0.0
    rate_429: float = 0.0
    retry_after: float = 1.0
    drop_rate: float = 0.0
    lost_run_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 2.0
    download_fault_rate: float = 0.0
    socket_drop_rate: float = 0.0
    script: tuple[FaultKind, ...] = ()
    run_script: tuple[FaultKind, ...] = ()

    def updated(self, changes: dict[str, Any]) -> Faults:
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        clean: dict[str, Any] = {k: tuple(v) if k in ("script", "run_script") else float(v) for k, v in changes.items()}
        return replace(self, **clean)


@dataclass(frozen=True)
class EmulatorConfig:
    """An emulated account and model.

    Times are in model seconds; `time_scale` real seconds pass per model second (0.01 runs a
    100 s task in one real second while `elapsedseconds` and the bill still say 100 s).
    `task_seconds` is the time from accept to the end of post-processing; with
    `task_seconds_max` each task draws its own duration uniformly between the two.
    `list_page_cap` makes Task/List answer at most that many tasks per page whatever `limit`
    asks (Wiro's own cap is undocumented), so clients are tested against short pages.
    `image_fetch_timeout` bounds the fetch of an image-to-video task's `inputImageUrl` when it is
    not one of the emulator's own uploads (a task whose image does not arrive in time fails).
    """

    api_key: str = DEMO_API_KEY
    api_secret: str | None = field(default=None, repr=False)
    balance: Decimal = Decimal("100.00")
    concurrency_limit: int | None = None
    cps: Decimal = DEFAULT_CPS
    queue_seconds: float = 0.5
    task_seconds: float = 3.0
    task_seconds_max: float | None = None
    time_scale: float = 1.0
    fail_rate: float = 0.0
    error_interim_rate: float = 0.0
    hang_rate: float = 0.0
    preview: bool = False
    image_fetch_timeout: float = 10.0
    seed: int = 0
    list_page_cap: int | None = None
    faults: Faults = Faults()

    @classmethod
    def from_env(cls, **overrides: Any) -> EmulatorConfig:
        """Credentials from `WIRO_API_KEY` / `WIRO_API_SECRET`, like a client started beside it."""
        key = os.environ.get(ENV_API_KEY) or DEMO_API_KEY
        secret = os.environ.get(ENV_API_SECRET) or None
        return cls(api_key=key, api_secret=secret, **overrides)

    def limit_for(self, balance: Decimal) -> int | None:
        """Wiro's rule: max(1, floor(10% of the balance)) up to $250, no limit above."""
        if self.concurrency_limit is not None:
            return self.concurrency_limit
        if balance > 250:
            return None
        return max(1, int(balance * Decimal("0.10")))
