"""Following shards' journals while they grow (flows/store/follow.py): each look folds only the
new lines, a half-written line waits, and the states equal a whole fold of the same bytes."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

import flows.store.manifest
from flows.engine.rows import records
from flows.grid import load_grid
from flows.orchestrate import fanout
from flows.store.follow import Follower, ShardsFollower
from flows.store.journal import JOURNAL, Journal, JournalError, fold, iter_events
from flows.store.manifest import FINAL_STATUSES, MANIFEST_PARQUET, build_manifest, read_manifest
from flows.store.shards import merged_states, shard_dir

AT = "2026-01-02T03:04:05.000Z"


def write_rows(journal: Journal, first: int, last: int) -> None:
    """Rows `first` to `last` (excluded) as a sweep writes them: intent, submitted, finished, downloaded."""
    for n in range(first, last):
        row = f"row-{n:05d}"
        journal.append("intent", row, at=AT, inputs={"prompt": f"p{n}"}, model="m", account="a")
        journal.append("submitted", row, at=AT, task_id=str(1000 + n))
        journal.append("finished", row, at=AT, task_id=str(1000 + n), status="succeeded", cost="0.0036",
                       elapsed="3", output_url=f"http://x/{n}.mp4", output_bytes=10)  # fmt: skip
        journal.append("downloaded", row, at=AT, path=f"videos/{n}.mp4", sha256="0" * 64, bytes=10)
    journal.flush()


def counted_lines(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many journal lines are decoded, from now on."""
    seen: Counter[str] = Counter()
    decode = orjson.loads

    def counting(raw: bytes) -> object:
        seen["lines"] += 1
        return decode(raw)

    monkeypatch.setattr(orjson, "loads", counting)
    return seen


def test_each_look_folds_only_the_new_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    follower = Follower(tmp_path / JOURNAL)
    seen = counted_lines(monkeypatch)
    for start in range(0, 400, 100):
        write_rows(journal, start, start + 100)
        before = seen["lines"]
        changed = follower.read()
        assert seen["lines"] - before == 400, "the 100 new rows' lines, not the whole journal again"
        assert changed == {f"row-{n:05d}" for n in range(start, start + 100)}
    assert follower.read() == set()
    assert seen["lines"] == 1600, "nothing new: nothing read"
    journal.close()
    assert follower.states == fold(iter_events(tmp_path / JOURNAL)), "the same states as one whole fold"


def test_a_line_without_its_newline_waits_and_is_applied_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    write_rows(journal, 0, 1)
    journal.close()
    path = tmp_path / JOURNAL
    whole = path.read_bytes()
    line = (
        b'{"event": "finished", "row_id": "row-00001", "at": "%s", "task_id": "7", "status": "failed", "error": "x"}\n'
        % AT.encode()
    )
    follower = Follower(path)
    with path.open("ab") as handle:  # a write under way: half a line
        handle.write(line[:40])
    assert follower.read() == {"row-00000"}
    assert "row-00001" not in follower.states
    with path.open("ab") as handle:
        handle.write(line[40:])
    assert follower.read() == {"row-00001"}
    assert follower.states["row-00001"].status == "failed"
    assert follower.states["row-00001"].attempts <= 1
    assert follower.states == fold(iter_events(path))
    assert path.read_bytes() == whole + line


def followed(folder: Path, rows: int) -> tuple[Path, Follower]:
    """A journal of `rows` finished rows, and a follower that has read it."""
    journal = Journal(folder)
    write_rows(journal, 0, rows)
    journal.close()
    follower = Follower(folder / JOURNAL)
    follower.read()
    return folder / JOURNAL, follower


@pytest.mark.parametrize("how", ["cut", "replaced", "removed", "rewritten"])
def test_a_journal_cut_or_replaced_is_read_again_from_its_start(tmp_path: Path, how: str) -> None:
    path, follower = followed(tmp_path, 3)
    lines = path.read_bytes().splitlines(keepends=True)
    if how == "cut":
        path.write_bytes(b"".join(lines[:4]))
    elif how == "replaced":
        os.replace(_other_journal(tmp_path), path)
    elif how == "removed":
        path.unlink()
    else:  # the same file, as long and longer, but no newline where the last look stopped
        path.write_bytes(b"".join(lines[:4]) + b" " * 5 + b"".join(lines[4:]) + lines[0])
    changed = follower.read()
    assert follower.states == fold(iter_events(path)), how
    assert {"row-00000", "row-00001", "row-00002"} <= changed, f"{how}: every row read before is told as changed"


def test_a_line_that_is_no_record_is_named_at_every_look_and_never_half_applied(tmp_path: Path) -> None:
    path, follower = followed(tmp_path, 2)
    with path.open("ab") as handle:
        handle.write(b'{"event": "intent", "row_id": "row-00000", "at": "%s"}\n[1, 2]\n' % AT.encode())
    for _ in range(2):
        with pytest.raises(JournalError, match="line 10"):
            follower.read()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))  # the bad line mended away
    follower.read()
    assert follower.states == fold(iter_events(path))
    assert follower.states["row-00000"].attempts == 2, "the first try and the one line after it, once"


def _other_journal(tmp_path: Path) -> Path:
    other = tmp_path / "other"
    other.mkdir()
    journal = Journal(other)
    write_rows(journal, 5, 7)
    journal.close()
    return other / JOURNAL


def test_shards_are_merged_as_a_whole_merge_gives_them(tmp_path: Path) -> None:
    journals = []
    for k in range(3):
        shard_dir(tmp_path, k).mkdir(parents=True)
        journals.append(Journal(shard_dir(tmp_path, k)))
    shards = ShardsFollower([shard_dir(tmp_path, k) for k in range(3)], tmp_path)
    for step in range(3):
        for k, journal in enumerate(journals):
            write_rows(journal, 100 * k + 10 * step, 100 * k + 10 * step + 10)
        assert len(shards.read()) == 30
        assert shards.states == merged_states(tmp_path, 3)
    assert shards.states["row-00105"].output_path == "shards/1/videos/105.mp4"
    for journal in journals:
        journal.close()


def a_grid(tmp_path: Path, rows: int) -> pd.DataFrame:
    grid = tmp_path / f"grid-{rows}.csv"
    pd.DataFrame({"prompt": [f"p{n}" for n in range(rows)], "numFrames": 9}).to_csv(grid, index=False)
    return load_grid([str(grid)])


def step(journal: Journal, row_id: str, n: int) -> None:
    """The row's next line: an intent, a task, its end with a bill."""
    if n % 3 == 0:
        journal.append("intent", row_id, at=AT, inputs={"prompt": "p"}, model="m", account="a")
    elif n % 3 == 1:
        journal.append("submitted", row_id, at=AT, task_id=str(5000 + n))
    else:
        journal.append("finished", row_id, at=AT, task_id=str(5000 + n - 1), status="succeeded" if n % 2 else "failed",
                       cost=f"0.00{n % 7}1", elapsed="3")  # fmt: skip
    journal.flush()


def test_the_parents_look_tallies_as_a_whole_manifest_says_and_writes_it_now_and_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame, out = a_grid(tmp_path, 40), tmp_path / "out"
    shard_dir(out, 0).mkdir(parents=True)
    journal = Journal(shard_dir(out, 0))
    watched = fanout._Watched(frame, ShardsFollower([shard_dir(out, 0)], out))
    writes: list[float] = []
    write = flows.store.manifest.write_manifest

    def counted(*args: Any) -> None:
        writes.append(time.monotonic())
        write(*args)

    monkeypatch.setattr(fanout, "write_manifest", counted)
    ids = [r["row_id"] for r in records(frame)]
    for n in range(12):
        step(journal, ids[n // 3 + n % 2], n)  # rows move on, some twice in a look's time
        shown = asyncio.run(asyncio.to_thread(watched.look, out))
        whole = build_manifest(frame, merged_states(out, 1))
        assert shown.total == 40
        assert shown.by_status == whole["status"].value_counts().to_dict()
        assert shown.cost == sum(whole["cost_usd"], Decimal(0))
        assert shown.done == whole["status"].isin(FINAL_STATUSES).sum()
    assert shown.cost > 0
    assert len(writes) == 1, "twelve looks within a second: one write"
    assert read_manifest(out).shape[0] == 40
    assert (out / MANIFEST_PARQUET).is_file()
    journal.close()


def test_a_look_costs_the_rows_that_changed_not_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    computed: Counter[str] = Counter()
    dynamic = flows.store.manifest._dynamic

    def counting(*args: Any, **kwargs: Any) -> Any:
        computed["rows"] += 1
        return dynamic(*args, **kwargs)

    for rows in (1000, 4000):
        out = tmp_path / f"out-{rows}"
        shard_dir(out, 0).mkdir(parents=True)
        journal = Journal(shard_dir(out, 0))
        frame = a_grid(tmp_path, rows)
        watched = fanout._Watched(frame, ShardsFollower([shard_dir(out, 0)], out))
        watched.next_write = float("inf")  # the writes' own cadence is the test above's
        ids = [r["row_id"] for r in records(frame)]
        monkeypatch.setattr(flows.store.manifest, "_dynamic", counting)
        monkeypatch.setattr(watched.builder, "table", lambda *a, **k: computed.update(builds=1))
        computed.clear()
        for n in range(30):
            step(journal, ids[n], n)
            watched.look(out)
        monkeypatch.undo()
        assert computed["rows"] == 30, (rows, computed)  # one a changed row a look, whatever the grid's size
        assert computed["builds"] == 0, "every row's values, only to write them"
        journal.close()


def test_a_full_disk_at_a_look_warns_and_the_next_write_tries_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    frame, out = a_grid(tmp_path, 10), tmp_path / "out"
    shard_dir(out, 0).mkdir(parents=True)
    journal = Journal(shard_dir(out, 0))
    watched = fanout._Watched(frame, ShardsFollower([shard_dir(out, 0)], out))
    ids = [r["row_id"] for r in records(frame)]

    def full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fanout, "write_manifest", full)
    step(journal, ids[0], 0)
    with caplog.at_level(logging.WARNING, logger="flows.engine"):
        shown = watched.look(out)
    assert shown.by_status == {"pending": 10}, "the look's tally, written or not"
    assert "No space left on device" in caplog.text
    assert not (out / MANIFEST_PARQUET).exists()
    monkeypatch.undo()
    watched.next_write = 0.0  # the cadence's pause over
    watched.look(out)
    assert read_manifest(out).shape[0] == 10, "written at the next look once there is room"
    journal.close()
