"""The bar's rate and time left: from the durations seen so far and the rows in flight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from flows.cli.pace import Pace, pace_of, time_left


def test_time_left_counts_the_rows_in_flight_and_the_queue_over_the_slots() -> None:
    assert time_left(100.0, [], [], queued=5, slots=2) is None, "no estimate before a row has finished"
    assert time_left(100.0, [], [10.0], queued=0, slots=2) == 0.0
    # Two in flight (started 4 s and 8 s ago, rows take 10 s): they end in 6 s and 2 s; four queued
    # rows then take two rounds of 10 s on each slot: the last ends 6 + 10 + 10 = 26 s from now.
    assert time_left(100.0, [96.0, 92.0], [9.0, 10.0, 11.0], queued=4, slots=2) == pytest.approx(26.0)
    assert time_left(100.0, [50.0], [10.0], queued=0, slots=1) == 0.0, "an overdue row ends any moment"


def test_pace_reads_rate_and_time_left_off_the_manifest() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    at = [since + timedelta(seconds=s) for s in (0, 10, 20, 30)]
    manifest = pd.DataFrame({
        "status": ["succeeded", "failed", "running", "pending"],
        "submitted_at": [at[0], at[0], at[2], None],
        "finished_at": [at[1], at[1], None, None],
    })  # fmt: skip
    pace = pace_of(manifest, since, at[3], slots=1)
    assert pace.rows_per_minute == pytest.approx(4.0), "2 rows in 30 s"
    assert pace.seconds_left == pytest.approx(10.0), "the running row needs none more than 10 s; then 10 s"
    assert pace.by_status == {"succeeded": 1, "failed": 1, "running": 1, "pending": 1}
    assert pace.done == 2
    assert pace.text() == "4.0 rows/min · 10s left"
    assert Pace(None, None).text() == "— rows/min · — left"
    assert Pace(1.0, 3725).text() == "1.0 rows/min · 1h 02m left"


def test_a_stall_says_how_long_no_row_has_finished_instead_of_a_time_left_that_never_moves() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    at = [since + timedelta(seconds=s) for s in (0, 10, 60)]
    manifest = pd.DataFrame({
        "status": ["succeeded", "running", "pending"],
        "submitted_at": [at[0], at[1], None],
        "finished_at": [at[1], None, None],
    })  # fmt: skip
    pace = pace_of(manifest, since, at[2], slots=1)
    assert pace.text() == "1.0 rows/min · no row finished for 50s", "rows take 10 s; none finished for 50 s"
    assert pace_of(manifest, since, at[1] + timedelta(seconds=15), slots=1).text().endswith(" left"), "not yet"


def test_a_finished_bar_shows_its_rate_and_no_time_left() -> None:
    assert Pace(4.0, 0.0).text(finished=True) == "4.0 rows/min"
    assert Pace(-37.0, None).text() == "0.0 rows/min · — left", "never a negative rate"


def test_a_look_at_a_large_manifest_waits_in_proportion_to_what_it_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """A look reads every row: every second at 100,000 rows it took a fifth of a core from the sweep."""
    import time
    from pathlib import Path

    import flows.cli.pace as pace

    looks: list[float] = []

    def costly(manifest: pd.DataFrame, since: datetime, now: datetime, slots: int) -> Pace:
        began = time.thread_time()
        while time.thread_time() - began < 0.03:  # the CPU a look at a large manifest takes
            pass
        looks.append(time.monotonic())
        return Pace(None, None)

    monkeypatch.setattr(pace, "REFRESH_SECONDS", 0.001)
    monkeypatch.setattr(pace, "read_manifest", lambda out, columns: pd.DataFrame())
    monkeypatch.setattr(pace, "pace_of", costly)
    with pace.watch_pace(Path("."), lambda: datetime.now(UTC), 1, lambda p: None):
        time.sleep(1.0)
    assert 1 <= len(looks) <= 4, f"{len(looks)} looks in 1 s, each 0.03 s of CPU (about 30 without a pause)"
