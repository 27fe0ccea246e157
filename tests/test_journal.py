"""The journal folds back into row states, survives torn writes, and drives the manifest."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from flows.engine.budget import Budget, work_units
from flows.engine.rows import needs_work, video_name
from flows.grid import expand_grid
from flows.store.journal import Journal, JournalError, JournalWriteError
from flows.store.manifest import MANIFEST_CSV, build_manifest, read_manifest, row_status, write_manifest


def test_fold_follows_a_row_through_its_life(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("intent", "r1")
    journal.append("unknown", "r1", error="lost")
    journal.append("adopted", "r1", task_id="7")
    journal.append("finished", "r1", task_id="7", status="succeeded", cost="0.0036", elapsed="3.0", output_url="u")
    journal.append("downloaded", "r1", path="videos/x.mp4", sha256="ab", bytes=10)
    journal.close()
    state = Journal(tmp_path).load()["r1"]
    assert (state.phase, state.status, state.task_ids, state.attempts) == ("finished", "succeeded", ["7"], 1)
    assert state.cost == Decimal("0.0036")
    assert row_status(state) == ("succeeded", "")
    assert not needs_work(state, retry_failed=True)


def test_a_torn_last_line_is_ignored_and_sealed(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("intent", "r1")
    journal.append("submitted", "r1", task_id="5")
    journal.close()
    with (tmp_path / "journal.jsonl").open("ab") as handle:
        handle.write(b'{"event": "finished", "row_id": "r1", "sta')  # killed mid-write
    reopened = Journal(tmp_path)
    reopened.append("note", "r2", error="after the tear")
    states = reopened.load()
    assert states["r1"].has_live_task, "the torn 'finished' never happened"
    assert "r2" in states


def test_states_decide_what_a_rerun_does(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("intent", "failed")
    journal.append("submitted", "failed", task_id="1")
    journal.append("finished", "failed", task_id="1", status="failed", error="OOM", cost="0")
    journal.append("intent", "paid-not-saved")
    journal.append("submitted", "paid-not-saved", task_id="2")
    journal.append("finished", "paid-not-saved", task_id="2", status="succeeded", cost="0.5")
    journal.append("download_failed", "paid-not-saved", error="disk full")
    states = journal.load()
    assert not needs_work(states["failed"], retry_failed=False)
    assert needs_work(states["failed"], retry_failed=True)
    assert needs_work(states["paid-not-saved"], retry_failed=False), "a paid output is always fetched"
    assert row_status(states["paid-not-saved"]) == ("failed", "disk full")


def test_resubmitted_rows_add_up_their_costs(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    for task_id, status, cost in (("1", "cancelled", "0.25"), ("2", "succeeded", "0.5")):
        journal.append("intent", "r")
        journal.append("submitted", "r", task_id=task_id)
        journal.append("finished", "r", task_id=task_id, status=status, cost=cost)
    state = journal.load()["r"]
    assert state.cost == Decimal("0.75")
    assert state.task_ids == ["1", "2"]


def test_a_stray_folds_into_its_rows_cost_and_tasks_once_per_lost_run(tmp_path: Path) -> None:
    """A lost Run whose task was not found leaves the row open to one stray; the stray's cost is the
    row's, its id among the row's tasks, and once saved it asks for no more work."""
    journal = Journal(tmp_path)
    journal.append("intent", "r", id_floor=40)
    journal.append("unknown", "r", error="lost")
    journal.append("no_task", "r", reason="the lost Run answer created no task")
    journal.append("intent", "r", id_floor=41)
    journal.append("submitted", "r", task_id="43")
    journal.append("finished", "r", task_id="43", status="succeeded", cost="0.5")
    journal.append("downloaded", "r", path="videos/x.mp4", sha256="ab", bytes=10)
    journal.close()
    state = Journal(tmp_path).load()["r"]
    assert [lost.id_floor for lost in state.unfound] == [40], "the lost Run may still have made a task"
    assert state.stray_work
    assert not needs_work(state, retry_failed=False)
    journal = Journal(tmp_path)
    journal.append("stray", "r", task_id="42")
    journal.append("stray", "r", task_id="42")  # recorded twice (a rerun): one stray
    journal.append("stray_finished", "r", task_id="42", status="succeeded", cost="0.25", output_bytes=9)
    journal.append("stray_saved", "r", task_id="42", path="strays/42.mp4", sha256="cd", bytes=9)
    state = journal.load()["r"]
    assert not state.unfound
    assert not state.stray_work
    assert state.cost == Decimal("0.75")
    assert state.every_task_id == ["43", "42"]
    assert state.task_ids == ["43"]
    journal.append("stray_missing", "r", task_id="42")
    assert journal.load()["r"].stray_work, "a saved stray gone from disk is fetched again"


def test_a_stray_saved_without_whole_bytes_stops_the_sweep(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").write_text(
        '{"event": "stray_saved", "row_id": "r", "task_id": "4", "path": "strays/4.mp4", "sha256": "a", "bytes": "x"}\n'
    )
    with pytest.raises(JournalError, match="'stray_saved' record whose 'bytes'"):
        Journal(tmp_path).load()


def test_manifest_round_trips_exact_money_and_iso_times(tmp_path: Path) -> None:
    grid = expand_grid(pd.DataFrame({"prompt": ["a", "b"], "source": ["g.csv:1", "g.csv:2"]}, dtype=object))
    first = grid["row_id"].iloc[0]
    journal = Journal(tmp_path)
    journal.append("intent", first, at="2026-01-02T03:04:05.678Z")
    journal.append("submitted", first, task_id="9", at="2026-01-02T03:04:06.000Z")
    journal.append("finished", first, task_id="9", status="succeeded", cost="0.000000000001", elapsed="1.5")
    journal.append("downloaded", first, path="videos/a.mp4", sha256="cd", bytes=3)
    write_manifest(tmp_path, build_manifest(grid, journal.load()))
    back = read_manifest(tmp_path)
    assert back["cost_usd"].tolist() == [Decimal("1E-12"), Decimal("0")]
    assert back["status"].tolist() == ["succeeded", "pending"]
    csv_text = (tmp_path / MANIFEST_CSV).read_text()
    assert "0.000000000001" in csv_text
    assert "2026-01-02T03:04:06.000Z" in csv_text
    assert not list(tmp_path.glob(".*.tmp"))


def test_video_names_stay_inside_videos() -> None:
    name = video_name({"prompt": "../../etc/passwd; rm -rf / ÄÖ", "seed": "7", "row_id": "abc"})
    assert name == "etc-passwd-rm-rf-seed7-abc.mp4"
    assert "/" not in video_name({"prompt": "////", "seed": "1", "row_id": "x"})


def test_budget_counts_tasks_in_flight_and_learns_the_rate() -> None:
    budget = Budget(Decimal("1.00"), estimate_usd=Decimal("0.30"))
    unit = work_units({})
    assert unit == 1
    assert budget.reserve("a", unit) == "ok"
    assert budget.reserve("b", unit) == "wait", "until a first bill, one task at a time"
    budget.settle("a", Decimal("0.20"), unit)
    assert budget.estimate(unit) == Decimal("0.240"), "highest billed rate plus 20%"
    assert [budget.reserve(r, unit) for r in "bcd"] == ["ok", "ok", "ok"]
    assert budget.reserve("e", unit) == "wait", "0.2 spent + 3 x 0.24 in flight leaves no room"
    for row in "bcd":
        budget.settle(row, Decimal("0.24"), unit)
    assert budget.reserve("e", unit) == "over"
    assert budget.spent == Decimal("0.92")


def test_work_units_scale_with_frames_steps_and_pixels() -> None:
    assert work_units({"numFrames": 61, "steps": 50, "size": "480*832"}) == Decimal(61 * 50) / Decimal(121 * 25)


def test_costs_with_more_decimals_than_wiro_sends_still_write(tmp_path: Path) -> None:
    grid = expand_grid(pd.DataFrame({"prompt": ["a"], "source": ["g.csv:1"]}, dtype=object))
    row = grid["row_id"].iloc[0]
    journal = Journal(tmp_path)
    journal.append("submitted", row, task_id="1")
    journal.append("finished", row, task_id="1", status="failed", cost="0.0070199999999999993")
    write_manifest(tmp_path, build_manifest(grid, journal.load(), final=True))
    assert read_manifest(tmp_path)["cost_usd"].tolist() == [Decimal("0.007019999999999999")]


def test_a_final_manifest_never_says_pending_or_running(tmp_path: Path) -> None:
    grid = expand_grid(pd.DataFrame({"prompt": ["a", "b", "c"], "source": ["g.csv:1", "g.csv:2", "g.csv:3"]},
                                    dtype=object))  # fmt: skip
    journal = Journal(tmp_path)
    journal.append("submitted", grid["row_id"].iloc[0], task_id="77")
    journal.append("intent", grid["row_id"].iloc[2])
    manifest = build_manifest(grid, journal.load(), final=True)
    assert manifest["status"].tolist() == ["failed", "not_started", "failed"]
    assert "task 77 not seen to finish" in manifest["error"].iloc[0]
    assert manifest["error"].iloc[1] == "the sweep stopped before its Run request; a rerun submits it"
    assert "Run request was sent but not answered" in manifest["error"].iloc[2], (
        "it may have a task: never 'not_started'"
    )
    assert needs_work(journal.load()[grid["row_id"].iloc[0]], retry_failed=False), "a rerun re-attaches"
    assert needs_work(journal.load().get(grid["row_id"].iloc[1]), retry_failed=False), "a rerun submits it"


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` until only about `leave` bytes are free; returns the filler file."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler


def test_a_full_disk_never_leaves_a_torn_intent_and_says_so(small_disk: Callable[[int], Path]) -> None:
    disk = small_disk(64 * 1024)
    journal = Journal(disk)
    journal.append("intent", "r0", inputs={"prompt": "fits"})
    journal.flush(durable=True)
    filler = fill(disk, leave=0)
    journal.append("intent", "r1", inputs={"prompt": "p" * 20_000})  # more than the last page holds
    with pytest.raises(JournalWriteError) as caught:
        journal.flush(durable=True)
    assert "No space left on device" in str(caught.value)
    assert str(disk / "journal.jsonl") in str(caught.value)
    lines = (disk / "journal.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["row_id"] for line in lines] == ["r0"], "no torn line, only the whole first intent"
    with pytest.raises(JournalWriteError):
        journal.flush(durable=True)  # a journal that failed once never claims durability again
    filler.unlink()
    reopened = Journal(disk)
    assert set(reopened.load()) == {"r0"}, "what failed to be written never happened"
    reopened.append("intent", "r1", inputs={"prompt": "p" * 20_000})
    reopened.flush(durable=True)
    assert set(reopened.load()) == {"r0", "r1"}
    reopened.close()
    journal.close()  # its failure was raised already: closing does not raise it again


def test_a_stray_recorded_twice_answers_for_one_lost_run_only(tmp_path: Path) -> None:
    """A rerun may record the same stray again: it stands for one lost Run, and the row's other
    lost Run may still have made a task of its own."""
    journal = Journal(tmp_path)
    for floor in (40, 41):
        journal.append("intent", "r", id_floor=floor)
        journal.append("unknown", "r", error="lost")
        journal.append("no_task", "r", reason="the lost Run answer created no task")
    journal.append("stray", "r", task_id="42")
    journal.append("stray", "r", task_id="42")
    state = journal.load()["r"]
    assert list(state.strays) == ["42"]
    assert [lost.id_floor for lost in state.unfound] == [41]
    assert state.stray_work
