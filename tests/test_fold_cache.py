"""A large journal's fold is kept beside it (OUT/.journal.fold), and a reopen folds only the
lines written since; a kept fold that is not exactly of the journal's first lines is never used."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flows.store import foldcache
from flows.store import journal as journal_module
from flows.store.foldcache import FOLD_CACHE
from flows.store.journal import Journal, JournalError, fold, folded, iter_events
from flows.store.rowstate import RowState
from wiro_tasks.emulator import EmulatorServer

from .conftest import EmulatorFactory

AT = "2026-01-02T03:04:05.000Z"


@pytest.fixture(autouse=True)
def any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Journals of a few kB are kept (the real threshold, 4 MiB, is for when folding them is slow)."""
    monkeypatch.setattr(foldcache, "MIN_BYTES", 0)


@pytest.fixture(autouse=True)
def new_process() -> Iterator[None]:
    """Each fold reads the files, as a new process does (not the fold this one keeps in memory)."""
    journal_module._FOLDED.clear()
    yield
    journal_module._FOLDED.clear()


def fresh() -> None:
    journal_module._FOLDED.clear()


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The journal lines folded (each `RowState.apply`), by event."""
    seen: list[str] = []
    original = RowState.apply

    def counting(self: RowState, event: dict[str, object]) -> None:
        seen.append(str(event["event"]))
        original(self, event)

    monkeypatch.setattr(RowState, "apply", counting)
    return seen


def rows(out: Path, count: int, start: int = 0) -> Path:
    """`count` rows through their life, as a sweep writes them."""
    journal = Journal(out)
    for n in range(start, start + count):
        row, task = f"row{n:06d}", str(70_000_000 + n)
        journal.append("intent", row, at=AT, inputs={"prompt": f"a fox {n}", "seed": str(n), "scale": 5.0},
                       model="Wan-AI/Wan2.2-TI2V-5B-text-to-video", account="acct", id_floor=task)  # fmt: skip
        journal.append("submitted", row, at=AT, task_id=task)
        journal.append("finished", row, at=AT, task_id=task, status="succeeded", cost="0.0036", elapsed="3.25",
                       output_url=f"https://cdn.example/{task}.mp4", output_bytes=52)  # fmt: skip
        journal.append("downloaded", row, at=AT, path=f"videos/{row}.mp4", sha256="0" * 64, bytes=52)
    journal.close()
    return out / "journal.jsonl"


def every_kind(out: Path) -> Path:
    """A journal with every kind of line and odd values: lost Runs, strays, uploads, a failed and a
    skipped row, costs to many places, text beyond ASCII, fields it does not know."""
    path = rows(out, 3)
    journal = Journal(out)
    journal.append("uploaded", "img", sha256="ab" * 32, url="https://cdn.example/a.png", account="acct")
    journal.append(
        "intent", "lost", at=AT, server_at="2026-01-02T03:04:04.000Z", id_floor="41", inputs={"prompt": "雪"}
    )
    journal.append("unknown", "lost", error="answer lost")
    journal.append("no_task", "lost", reason="not found")
    journal.append("intent", "lost", at=AT, id_floor="99999999999999999999")  # no number Wiro could give
    journal.append("submitted", "lost", task_id="43")
    journal.append("finished", "lost", task_id="43", status="failed", cost="0.123456789012345678", error="NaN latents",
                   ended=False)  # fmt: skip
    journal.append("stray", "lost", task_id="42")
    journal.append("stray_finished", "lost", task_id="42", status="succeeded", cost="0.25", output_bytes=9)
    journal.append("stray_saved", "lost", task_id="42", path="strays/42.mp4", sha256="cd", bytes=9)
    journal.append("intent", "open", at=AT, id_floor="7")
    journal.append("unknown", "open", error="answer lost")
    journal.append("no_task", "open", reason="not found yet")
    journal.append("skipped", "poor", reason="budget")
    journal.append("file_missing", "row000001", error="gone")
    journal.append("note", "row000002", error={"detail": [1, 2.5, None]})
    journal.append("from_a_newer_version", "row000002", anything=True)
    journal.close()
    return path


def test_a_kept_fold_gives_what_folding_every_line_gives(tmp_path: Path, applied: list[str]) -> None:
    path = every_kind(tmp_path)
    everything = fold(iter_events(path))
    first = Journal(tmp_path)
    assert first.load() == everything
    first.close()
    assert (tmp_path / FOLD_CACHE).is_file()
    fresh()
    applied.clear()
    again = Journal(tmp_path)
    assert again.load() == everything
    assert again.uploads == first.uploads
    assert list(again.uploads) == ["ab" * 32]
    assert applied == [], "every line was in the kept fold"
    states = again.load()
    lost, still_open = states["lost"], states["open"]
    assert lost.intent_id_floor is None
    assert lost.unended
    assert lost.strays["42"].path == "strays/42.mp4"
    assert [u.id_floor for u in still_open.unfound] == [7]
    assert still_open.stray_work


def test_a_reopen_folds_only_the_lines_written_since(tmp_path: Path, applied: list[str]) -> None:
    """The count that grew with the journal (400,000 lines at 100,000 rows, 3 s of every reopen)
    stays at the lines written since, at 1,000 rows and at 4,000."""
    for count in (1000, 4000):
        out = tmp_path / str(count)
        path = rows(out, count)
        assert len(folded(path)) == count  # the checks before a sweep: folded, and kept
        fresh()
        applied.clear()
        assert len(Journal(out).load()) == count
        assert applied == []
        rows(out, 2, start=count)  # a rerun's rows: too few to keep the fold again
        fresh()
        applied.clear()
        states = Journal(out).load()
        assert len(states) == count + 2
        assert states[f"row{count + 1:06d}"].downloaded
        assert applied == ["intent", "submitted", "finished", "downloaded"] * 2


def test_a_journal_changed_before_the_kept_fold_is_folded_again(tmp_path: Path, applied: list[str]) -> None:
    path = rows(tmp_path, 20)
    folded(path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"cost": "0.0036"', b'"cost": "0.0037"', 1))  # same size, another bill
    fresh()
    assert Journal(tmp_path).load()["row000000"].cost == Decimal("0.0037")
    path.write_bytes(data[: len(data) // 2])  # cut: rows after the cut were never recorded
    fresh()
    assert len(Journal(tmp_path).load()) == 10
    path.write_bytes(b"")
    fresh()
    assert Journal(tmp_path).load() == {}


@pytest.mark.parametrize(
    "damage",
    [
        "flip a byte",
        "cut",
        "empty",
        "not JSON",
        "another version",
        "another Python",
        "a directory",
        "a FIFO",
        "other fields",
    ],
)
def test_a_damaged_or_foreign_kept_fold_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, applied: list[str], damage: str
) -> None:
    path = rows(tmp_path, 10)
    everything = fold(iter_events(path))
    folded(path)
    kept = tmp_path / FOLD_CACHE
    data = kept.read_bytes()
    if damage == "flip a byte":
        kept.write_bytes(data[:-40] + bytes([data[-40] ^ 1]) + data[-39:])
    elif damage == "cut":
        kept.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "empty":
        kept.write_bytes(b"")
    elif damage == "not JSON":
        kept.write_bytes(b"\x00\xff" * 100)
    elif damage == "another version":
        monkeypatch.setattr(foldcache, "code_digest", lambda: b"another version of the code")
    elif damage == "another Python":
        monkeypatch.setattr(foldcache, "_RUNTIME", "python 3.99 orjson 9")
    elif damage == "a directory":
        kept.unlink()
        kept.mkdir()
    elif damage == "a FIFO":
        kept.unlink()
        os.mkfifo(kept)
    else:
        monkeypatch.setattr(foldcache, "_FIELDS", (*foldcache._FIELDS, "a_new_field"))
    applied.clear()
    fresh()
    journal = Journal(tmp_path)
    assert journal.load() == everything
    assert len(applied) == 40, "every line folded again"


def test_a_fold_that_would_not_come_back_exactly_is_not_kept(tmp_path: Path) -> None:
    path = rows(tmp_path, 3)
    with path.open("a") as handle:  # json writes NaN, which JSON cannot hold
        handle.write(
            json.dumps({"event": "intent", "row_id": "nan", "at": AT, "inputs": {"scale": float("nan")}}) + "\n"
        )
    states = folded(path)
    assert states["nan"].phase == "intent"
    assert not (tmp_path / FOLD_CACHE).exists()


def test_a_fold_that_cannot_be_kept_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = rows(tmp_path, 3)

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    assert len(folded(path)) == 3
    assert not (tmp_path / FOLD_CACHE).exists()
    assert not list(tmp_path.glob(".*.tmp")), "no partial copy is left behind"


def test_a_damaged_line_after_the_kept_fold_is_named_by_its_number(tmp_path: Path) -> None:
    path = rows(tmp_path, 5)
    folded(path)
    with path.open("a") as handle:
        handle.write('{"event": "finished", "row_id": "row000001"}\n')  # JSON, but no status
    fresh()
    with pytest.raises(JournalError) as raised:
        Journal(tmp_path).load()
    assert raised.value.line == 21


def test_a_line_still_being_written_is_folded_once_whole(tmp_path: Path, applied: list[str]) -> None:
    """A last line without its newline (a write under way, or cut by a kill) is folded if it is
    whole, but no fold is kept then: the next fold reads every line of the journal as it is then."""
    path = rows(tmp_path, 2)
    line = b'{"event": "skipped", "row_id": "late", "at": "%s", "reason": "budget"}' % AT.encode()
    with path.open("ab") as handle:
        handle.write(line)
    assert folded(path)["late"].phase == "skipped"
    assert not (tmp_path / FOLD_CACHE).exists()
    with path.open("ab") as handle:
        handle.write(b"\n")
    applied.clear()
    fresh()
    assert journal_module._fold_file(path)[0]["late"].phase == "skipped"
    assert applied.count("skipped") == 1
    assert (tmp_path / FOLD_CACHE).exists()


def test_row_state_fields_are_the_ones_a_kept_fold_lists() -> None:
    """A field added to `RowState` must be added to `foldcache._FIELDS`, `_encode` and the decoder
    (until then no fold is kept, and every reopen folds every line)."""
    assert foldcache.matches()


def test_a_sweep_keeps_its_journals_fold_for_the_next_run(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], prefect_api: str, tmp_path: Path,
    applied: list[str],
) -> None:  # fmt: skip
    """A sweep's end folds its journal once more and keeps the fold: the first reopen after it
    folds no line (a kept fold made by the next run's checks would cost that run the whole fold),
    and a reopen that wrote nothing new does not fold it again at its end."""
    from flows.orchestrate.flow import sweep

    wiro_env(make_emulator())
    grid = tmp_path / "grid.csv"
    grid.write_text("prompt,seed\na red fox,1\na red fox,2\na blue whale,3\n")
    out = tmp_path / "out"
    state: Any = asyncio.run(sweep(grid=[str(grid)], out=str(out), return_state=True))  # type: ignore[arg-type]
    assert state.is_completed(), state.message
    assert (out / FOLD_CACHE).is_file()
    fresh()
    applied.clear()
    states = folded(out / "journal.jsonl")
    assert [s.status for s in states.values()] == ["succeeded"] * 3
    assert applied == []
    fresh()
    again: Any = asyncio.run(sweep(grid=[str(grid)], out=str(out), return_state=True))  # type: ignore[arg-type]
    assert again.is_completed(), again.message
    assert applied == [], "a reopen with nothing new folds no line, nor keeps the fold again at its end"


def test_keeping_and_reading_a_fold_hold_a_chunk_of_it_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond the states, keeping a fold and reading it back hold one chunk of rows' lines, not the
    whole file (63 MB at 100,000 rows) nor a second copy of every state."""
    import tracemalloc

    monkeypatch.setattr(foldcache, "CHUNK_ROWS", 100)
    transient: dict[str, list[int]] = {"keep": [], "read": []}
    for count in (1000, 4000):
        path = rows(tmp_path / str(count), count)
        states = fold(iter_events(path))
        size = path.stat().st_size
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        tracemalloc.start()
        try:
            assert foldcache.keep(path, states, [], size, 4 * count, digest)
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        transient["keep"].append(peak - held)
        del states
        with path.open("rb") as handle:
            tracemalloc.start()
            try:
                kept = foldcache.start(path, handle)
                held, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert kept is not None
        assert len(kept.states) == count
        transient["read"].append(peak - held)
        del kept
    for step, (small, large) in transient.items():
        assert (large - small) / 3000 < 64, (step, small, large)


def test_a_last_line_without_its_newline_is_never_in_a_kept_fold(tmp_path: Path) -> None:
    """The checks before a sweep fold a journal whose last record has no newline yet (a kill, or a
    read racing a write); the sweep's `Journal` then ends that line. Had the kept fold held it, the
    next fold would apply it twice (two attempts), or keep it after a failed write cut it away."""
    path = rows(tmp_path, 2)
    with path.open("ab") as handle:
        handle.write(b'{"event": "intent", "row_id": "late", "at": "%s"}' % AT.encode())
    assert folded(path)["late"].attempts == 1
    Journal(tmp_path).close()  # its torn tail ended
    fresh()
    assert Journal(tmp_path).load() == fold(iter_events(path))
    assert fold(iter_events(path))["late"].attempts == 1


def test_a_kept_fold_damaged_into_other_valid_json_is_not_trusted(tmp_path: Path) -> None:
    """One flipped bit can leave the file JSON and its amount no number ("0.p036"): it is folded
    again from the journal, whatever the decoding of the damaged line raises."""
    path = rows(tmp_path, 3)
    folded(path)
    kept = tmp_path / FOLD_CACHE
    kept.write_bytes(kept.read_bytes().replace(b'"0.0036"', b'"0.p036"', 1))
    fresh()
    assert Journal(tmp_path).load() == fold(iter_events(path))
    fresh()
    journal_module.keep_fold(path)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 16])
def test_lines_read_in_chunks_are_the_lines_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """A journal read a chunk at a time gives the lines `for line in file` gives, wherever a chunk
    ends: in a line, at its newline, within a long one (a line longer than many chunks is joined
    once, not copied again for each chunk read)."""
    monkeypatch.setattr(foldcache, "READ_BYTES", chunk)
    path = tmp_path / "journal.jsonl"
    lines = [b'{"a": 1}\n', b"\n", b"\r\n", b"x" * 300 + b"\n", b'{"b": "\xc3\xa9"}\r\n', b"tail without newline"]
    path.write_bytes(b"".join(lines))
    with path.open("rb") as handle:
        read = journal_module.Lines(handle)
        got = [raw for _, raw in read]
    assert got == [line.rstrip(b"\n") for line in lines]
    assert read.size == path.stat().st_size - len(lines[-1])
    assert read.number == len(lines) - 1
    assert read.torn
