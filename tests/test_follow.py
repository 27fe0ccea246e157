"""Following shards' journals while they grow (flows/store/follow.py): each look folds only the
new lines, a half-written line waits, and the states equal a whole fold of the same bytes."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
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
from flows.store.manifest import MANIFEST_PARQUET, ManifestBuilder, build_manifest, read_manifest
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
    assert {"row-00000", "row-00001", "row-00002"} <= changed | set(follower.states), how


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


def test_the_parents_look_writes_the_manifest_at_most_every_few_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": [f"p{n}" for n in range(40)], "numFrames": 9}).to_csv(grid, index=False)
    frame = load_grid([str(grid)])
    out = tmp_path / "out"
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
    for n in range(4):
        journal.append("intent", ids[n], at=AT, inputs={"prompt": f"p{n}"}, model="m", account="a")
        journal.flush()
        table = asyncio.run(asyncio.to_thread(watched.look, out))
        assert table.num_rows == 40
    assert len(writes) == 1, "four looks within a second: one write"
    assert read_manifest(out).shape[0] == 40
    assert (out / MANIFEST_PARQUET).is_file()
    states = merged_states(out, 1)
    assert table.equals(ManifestBuilder(frame).table(states))
    assert build_manifest(frame, states).shape[0] == 40
    journal.close()
