"""How a sweep runs: the engine's settings."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Settings:
    """How a sweep runs; every field is a flow parameter too."""

    max_concurrency: int = 4
    poll_interval: float = 3.0
    poll_cap: float = 30.0
    timeout: float = 3600.0
    budget: Decimal | None = None
    retry_failed: bool = False
    error_grace: float = 120.0
    estimate_usd: Decimal = Decimal("0.10")
    manifest_interval: float = 1.0
    concurrency_limit_name: str | None = None
