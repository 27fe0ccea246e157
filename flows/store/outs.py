"""Where a run's OUT is: its `out` parameter with `{date}` and `{run}` filled in.

An OUT holds one sweep: one grid's rows (with its axes), its journal, manifest, report and
videos, kept across reruns. `{date}` makes one OUT per day (a nightly run and the night before
it), `{run}` one per flow run (an ad-hoc run, never mixed with another).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path


def expand_out(out: str, when: datetime | None, run_id: object) -> Path:
    """`out` as an absolute path: `{date}` is `when`'s date (UTC; today's without one), `{run}` the
    first 8 characters of the flow run's id (of the moment, without one)."""
    if "{date}" in out:
        out = out.replace("{date}", (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d"))
    if "{run}" in out:
        out = out.replace("{run}", str(run_id or "").replace("-", "")[:8] or datetime.now(UTC).strftime("%H%M%S%f"))
    return Path(out).resolve()
