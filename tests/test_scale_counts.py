"""Planning and resuming cost the same per row at any size: work counted at 1,000 and 4,000 rows.

A 100,000-row grid must plan (`--dry-run`) in seconds and a finished 100,000-row OUT reopen in
seconds (`python -m bench.scale_plan` times them). Timings are too noisy on a shared machine to
fail a test; these counts are exact. What each test counts, and the growth it catches:

- the values checked while a grid is expanded: each distinct value once, not each cell;
- the row states made while a journal is folded, and the journal reads of one command: once
  per row (not once per line), one read (not one per check);
- on reopening a finished OUT: no manifest row built (it is read back), no grid expanded (OUT
  keeps it), no row priced, no file rewritten; a manifest is built again when its journal, grid
  or code changed; the work of each shape of task worked out once, not once per row; only the
  rows that did not succeed made into records for the UI's outcome pass;
- the rows a lost Run answer's lookup visits: none (an index, not a pass over every row).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

import flows.cli.console
import flows.engine.budget
import flows.grid
import flows.orchestrate.artifacts
import flows.orchestrate.flow
import flows.store.foldcache
import flows.store.journal
import flows.store.manifest
import flows.view.report
from bench.scale_plan import finished_out, write_grid
from flows.cli import main
from flows.engine.matching import TaskMatcher
from flows.orchestrate.flow import sweep
from flows.store.manifest import read_manifest
from flows.store.rowstate import RowState
from flows.view.stamp import stamp
from wiro_tasks import ToolPrice
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.inputs import Param

from .conftest import EmulatorFactory

SIZES = (1000, 4000)


class Calls:
    """Counts calls of the functions it wraps (`count`), by name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.seen: Counter[str] = Counter()

    def count(self, owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.seen[name] += 1
            return original(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, counted)


def per_row(small: Counter[str], large: Counter[str], name: str) -> float:
    """What one more row adds to a count, from the two sizes."""
    return (large[name] - small[name]) / (SIZES[1] - SIZES[0])


def dry_run(grid: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """`wiro-sweep run GRID --out OUT --dry-run` in this process (no key: nothing is asked of
    Wiro), with the per-row functions counted."""
    with monkeypatch.context() as patch:
        calls = Calls(patch)
        calls.count(Param, "coerce")
        calls.count(RowState, "__init__")
        calls.count(flows.store.journal, "line_records")
        result = CliRunner().invoke(main, ["run", str(grid), "--out", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Nothing was submitted (--dry-run)." in result.output
    return calls.seen


def test_planning_checks_each_distinct_value_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten seeds of each prompt: a row adds a tenth of a prompt's check, not eight checks."""
    small, large = (dry_run(write_grid(tmp_path / f"g{n}.csv", n), tmp_path / f"o{n}", monkeypatch) for n in SIZES)
    assert per_row(small, large, "coerce") <= 0.15, (small, large)


def test_reopening_a_finished_out_folds_its_journal_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counts, sizes = [], []
    for rows in SIZES:
        grid, out = write_grid(tmp_path / f"g{rows}.csv", rows), tmp_path / f"o{rows}"
        finished_out(grid, out)
        sizes.append((out / "journal.jsonl").stat().st_size / rows)
        counts.append(dry_run(grid, out, monkeypatch))
        assert (
            f"{rows} combinations; {rows} already done"
            in CliRunner().invoke(main, ["run", str(grid), "--out", str(out), "--dry-run"]).output
        )
    small, large = counts
    assert per_row(small, large, "__init__") <= 1.0, (small, large)  # one state a row, not one a line
    assert small["line_records"] == large["line_records"] == 1  # the command's checks and its estimate share it
    assert sizes[1] <= sizes[0] * 1.01, sizes  # the journal's bytes per row do not grow with the rows


def reopen(grid: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The sweep flow run again on a finished OUT, in this process, with the per-row work counted."""
    with monkeypatch.context() as patch:
        calls = Calls(patch)
        calls.count(RowState, "__init__")
        calls.count(flows.store.manifest, "_dynamic")
        calls.count(ToolPrice, "quote")
        calls.count(flows.store.journal, "line_records")
        calls.count(flows.store.manifest, "atomic_write")
        calls.count(flows.grid, "expand_grid")
        calls.count(flows.engine.budget, "work_units")
        whole_reads(patch, calls.seen)
        outcome_rows(patch, calls.seen)
        state: Any = asyncio.run(sweep(grid=[str(grid)], out=str(out), return_state=True))  # type: ignore[arg-type]
    assert state.is_completed(), state.message
    return calls.seen


def outcome_rows(patch: pytest.MonkeyPatch, seen: Counter[str]) -> None:
    """Counts the rows the outcome pass gets as records as `outcome_rows`."""
    original = flows.orchestrate.artifacts.summary_rows

    def rows(manifest: pd.DataFrame) -> list[dict[str, Any]]:
        seen["outcome_rows"] += len(manifest)
        return original(manifest)

    patch.setattr(flows.orchestrate.flow, "summary_rows", rows)


def whole_reads(patch: pytest.MonkeyPatch, seen: Counter[str]) -> None:
    """Counts the reads of a whole manifest (every column) as `whole_read`."""
    original = flows.store.manifest.read_manifest

    def read(out: Path, columns: Any = None) -> pd.DataFrame:
        seen["whole_read"] += columns is None
        return original(out, columns)

    for module in (flows.store.manifest, flows.view.report, flows.cli.console):
        patch.setattr(module, "read_manifest", read)


def test_a_finished_out_reopens_with_one_pass_per_row(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, prefect_api: str,
) -> None:  # fmt: skip
    wiro_env(make_emulator())
    counts = []
    for rows in SIZES:
        grid, out = write_grid(tmp_path / f"g{rows}.csv", rows), tmp_path / f"o{rows}"
        finished_out(grid, out)
        counts.append(reopen(grid, out, monkeypatch))
        assert (read_manifest(out)["status"] == "succeeded").sum() == rows
    small, large = counts
    assert per_row(small, large, "__init__") <= 1.0, (small, large)  # the Ledger takes the checks' fold
    assert small["_dynamic"] == large["_dynamic"] == 0, (small, large)  # read back: the same journal, grid and code
    assert large["quote"] == 0, large  # nothing to submit: nothing priced
    assert small["expand_grid"] == large["expand_grid"] == 0, (small, large)  # the grid OUT keeps, read back
    assert small["work_units"] == large["work_units"] == 1, (small, large)  # once per shape of task, not per row
    assert small["outcome_rows"] == large["outcome_rows"] == 0, (small, large)  # only rows that did not succeed
    assert small["line_records"] == large["line_records"] == 1, (small, large)
    assert small["atomic_write"] == large["atomic_write"] == 0, "nothing new: the manifests and report stay"
    assert small["whole_read"] == large["whole_read"] == 1, "the manifest read back serves the report's check too"


def test_a_lost_answers_lookup_visits_no_row(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, prefect_api: str,
) -> None:  # fmt: skip
    """One new row beside a finished OUT's rows loses its Run answer: looking for its task excludes
    every task the OUT holds, from an index, whatever the number of rows."""
    emulator = make_emulator(queue_seconds=0.0, task_seconds=0.0, preview=True)
    wiro_env(emulator)
    visited: list[int] = []
    claimed, original = [], TaskMatcher.claimed

    def counted(self: TaskMatcher) -> frozenset[str]:
        before = StatesVisits.count
        tasks = original(self)
        visited.append(StatesVisits.count - before)
        claimed.append(tasks)
        return tasks

    monkeypatch.setattr(TaskMatcher, "claimed", counted)
    load = flows.store.journal.Journal.load
    monkeypatch.setattr(flows.store.journal.Journal, "load", lambda self: StatesVisits(load(self)))
    for rows in (SIZES[0] // 10, SIZES[1] // 10):
        grid, out = write_grid(tmp_path / f"g{rows}.csv", rows + 1), tmp_path / f"o{rows}"
        finished_out(grid, out, rows)
        emulator.account.faults = emulator.account.faults.updated({"run_script": ["lost"]})
        state: Any = asyncio.run(sweep(grid=[str(grid)], out=str(out), return_state=True))  # type: ignore[arg-type]
        assert state.is_completed(), state.message
        assert (read_manifest(out)["status"] == "succeeded").sum() == rows + 1
    assert visited, "a lookup was made"
    assert not any(visited), visited  # no row visited by a lookup
    assert all(isinstance(c, frozenset) for c in claimed)  # Prefect walks a list parameter item by item


class StatesVisits(dict[str, RowState]):
    """The Ledger's row states, counting the entries every pass over them visits."""

    count = 0

    def values(self) -> Any:
        return self._counted(super().values())

    def items(self) -> Any:
        return self._counted(super().items())

    def __iter__(self) -> Any:
        return self._counted(super().__iter__())

    @classmethod
    def _counted(cls, entries: Any) -> Any:
        for entry in entries:
            cls.count += 1
            yield entry


def test_the_command_line_expands_its_grid_once_for_its_check_and_its_flow(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, prefect_api: str,
) -> None:  # fmt: skip
    """`wiro-sweep run` checks the grid, then its flow sweeps that very frame (2 s a load at
    100,000 rows); a flow run anywhere else reads its grid itself."""
    wiro_env(make_emulator())
    grid, out = write_grid(tmp_path / "g.csv", 20), tmp_path / "out"
    calls = Calls(monkeypatch)
    calls.count(flows.grid, "expand_grid")
    result = CliRunner().invoke(main, ["run", str(grid), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (read_manifest(out)["status"] == "succeeded").sum() == 20
    assert calls.seen["expand_grid"] == 1
    result = CliRunner().invoke(main, ["run", str(grid), "--out", str(tmp_path / "forced"), "--model", "t2v"])
    assert result.exit_code == 0, result.output
    assert calls.seen["expand_grid"] == 2, "a model given by its short name: the same handover"
    elsewhere = str(tmp_path / "elsewhere")
    state: Any = asyncio.run(sweep(grid=[str(grid)], out=elsewhere, return_state=True))  # type: ignore[arg-type]
    assert state.is_completed(), state.message
    assert calls.seen["expand_grid"] == 3, "outside the command line, the flow loads its grid"
    state = asyncio.run(sweep(grid=[str(grid)], out=str(out), return_state=True))  # type: ignore[arg-type]
    assert state.is_completed(), state.message
    assert calls.seen["expand_grid"] == 3, "...or reads the one its OUT keeps"
    whole_reads(monkeypatch, calls.seen)
    result = CliRunner().invoke(main, ["run", str(grid), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "20 of 20 rows succeeded" in result.output
    assert calls.seen["whole_read"] == 1, "a reopen reads its manifest whole once: the command's lines need 8 columns"


def test_a_manifest_is_written_again_only_when_its_table_or_a_file_beside_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    from flows.store.manifest import MANIFEST_CSV, MANIFEST_PARQUET, SUMMARY_JSON, write_manifest

    grid, out = write_grid(tmp_path / "g.csv", 20), tmp_path / "out"
    finished_out(grid, out)
    table = pq.read_table(out / MANIFEST_PARQUET)  # the table as the sweep wrote it
    calls = Calls(monkeypatch)
    calls.count(flows.store.manifest, "atomic_write")

    def writes(manifest: Any) -> int:
        before = calls.seen["atomic_write"]
        write_manifest(out, manifest)
        return calls.seen["atomic_write"] - before

    assert writes(table) == 0, "the same table"
    changed = read_manifest(out)
    assert writes(changed.assign(status=["failed", *changed["status"][1:]])) == 3, "a cell changed"
    assert read_manifest(out)["status"][0] == "failed"
    assert writes(table) == 3, "and back"
    assert writes(table) == 0
    (out / MANIFEST_CSV).unlink()
    assert writes(table) == 3, "a file beside it is gone"
    (out / SUMMARY_JSON).unlink()
    assert writes(table) == 3
    os.utime(out / SUMMARY_JSON, ns=(1, 1))  # older than the Parquet: a write stopped before it ended
    assert writes(table) == 3
    assert writes(table) == 0
    pq.write_table(table.replace_schema_metadata(None), out / MANIFEST_PARQUET)  # as an older version wrote it
    assert writes(table) == 3, "a manifest with no digest"
    assert writes(table) == 0


def test_a_reopen_reads_its_manifest_back_only_while_journal_grid_and_code_are_the_same(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, prefect_api: str,
) -> None:  # fmt: skip
    from flows.store.journal import Journal, folded
    from flows.store.manifest import build_manifest

    wiro_env(make_emulator())
    grid, out = write_grid(tmp_path / "g.csv", 20), tmp_path / "out"
    finished_out(grid, out)
    assert reopen(grid, out, monkeypatch)["_dynamic"] == 0, "nothing changed: read back"
    expected = build_manifest(flows.grid.load_grid([grid]), folded(out / "journal.jsonl"), final=True)
    assert read_manifest(out).equals(expected)
    journal = Journal(out)
    journal.append("note", expected["row_id"][3], error="a line from another run")
    journal.close()
    assert reopen(grid, out, monkeypatch)["_dynamic"] == 20, "the journal grew: built again"
    assert reopen(grid, out, monkeypatch)["_dynamic"] == 0
    monkeypatch.setattr(flows.store.manifest, "code_digest", lambda: b"another version")
    assert reopen(grid, out, monkeypatch)["_dynamic"] == 20, "other code: built again"
    grid.write_text(grid.read_text().replace(",9\n", ",9\n", 1) + "a scene number 2 of the sweep,0,17\n")
    assert reopen(grid, out, monkeypatch)["_dynamic"] >= 21, "another grid (a row more, sent now): built again"
    assert len(read_manifest(out)) == 21


def test_a_manifest_read_back_has_the_types_of_one_built(tmp_path: Path) -> None:
    """Whole numbers a row may lack (an image-to-video row's `width`) are nullable in a built
    manifest; read back from Parquet, where none is missing, they must not turn plain."""
    from flows.store.journal import folded
    from flows.store.manifest import build_manifest, kept_manifest, write_manifest

    grid, out = write_grid(tmp_path / "g.csv", 20), tmp_path / "out"
    finished_out(grid, out)
    built = build_manifest(flows.grid.load_grid([grid]), folded(out / "journal.jsonl"), final=True)
    built = built.assign(width=pd.array([832] * 20, dtype="Int64"), height=pd.array([480] * 20, dtype="Int64"))
    write_manifest(out, built, b"a source")
    kept = kept_manifest(out, b"a source")
    assert kept is not None
    assert kept.equals(built), (kept.dtypes, built.dtypes)
    assert stamp(kept) == stamp(built)  # the report a sweep wrote from its built manifest stays current on a reopen
    assert kept_manifest(out, b"another source") is None


def test_the_code_digest_covers_wiro_tasks_which_reads_the_journal_s_costs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import wiro_tasks
    from flows.store.code import code_digest

    copy = tmp_path / "wiro_tasks"
    shutil.copytree(Path(wiro_tasks.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(wiro_tasks, "__file__", str(copy / "__init__.py"))
    same = code_digest.__wrapped__()
    (copy / "types.py").write_text((copy / "types.py").read_text() + "\n# another version\n")
    assert code_digest.__wrapped__() != same


def test_a_journal_is_folded_line_by_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fold keeps each row's state, not every line read: what it holds at its peak beyond what
    it returns does not grow with the rows (it held all four records of every row: 100 MB at 100,000).
    Keeping the fold is tests/test_fold_cache.py's."""
    import tracemalloc

    monkeypatch.setattr(flows.store.foldcache, "MIN_BYTES", 1 << 40)
    transient = []
    for rows in SIZES:
        grid, out = write_grid(tmp_path / f"g{rows}.csv", rows), tmp_path / f"o{rows}"
        finished_out(grid, out)
        flows.store.journal._FOLDED.clear()
        tracemalloc.start()
        try:
            states = flows.store.journal.folded(out / "journal.jsonl")
            kept, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(states) == rows
        transient.append(peak - kept)
    per_row_bytes = (transient[1] - transient[0]) / (SIZES[1] - SIZES[0])
    assert per_row_bytes < 64, transient


def test_the_report_holds_a_row_once_while_it_is_built(tmp_path: Path) -> None:
    """What `build_report` holds at its peak, a row: its record, its compact JSON and the page's
    text, not also the card the JSON is made from (6.7 KiB a row with every card kept, 4.6 without)."""
    import tracemalloc

    from flows.view.report import build_report

    peaks = []
    for rows in SIZES:
        grid, out = write_grid(tmp_path / f"g{rows}.csv", rows), tmp_path / f"o{rows}"
        finished_out(grid, out)
        manifest = read_manifest(out)
        tracemalloc.start()
        try:
            page = build_report(manifest, posters=frozenset(manifest["output_path"]))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert all(row_id in page for row_id in manifest["row_id"])  # every row is in the page's JSON
    per_row_bytes = (peaks[1] - peaks[0]) / (SIZES[1] - SIZES[0])
    assert per_row_bytes < 5500, peaks


def test_what_a_sweep_keeps_a_row_shares_the_text_rows_repeat(tmp_path: Path) -> None:
    """What a sweep keeps a row for as long as it runs: the row's state folded from the journal,
    its grid record and the ledger's indexes. Each journal line and each grid cell was a copy of
    the text every row repeats (a model, an account, the default negative prompt), a state a dict
    of its fields, and a task's holders a set: 2.4 KiB, 1.0 and 0.5 a row, 100,000 rows 380 MiB."""
    import tracemalloc

    from flows.engine.ledger import Halt, Ledger
    from flows.engine.rows import records
    from flows.store.journal import Journal

    kept: dict[str, list[int]] = {"states": [], "records": [], "ledger": []}
    for rows in SIZES:
        grid, out = write_grid(tmp_path / f"g{rows}.csv", rows), tmp_path / f"o{rows}"
        finished_out(grid, out)
        frame = flows.grid.load_grid([grid])
        flows.store.journal._FOLDED.clear()
        journal = Journal(out)
        tracemalloc.start()
        try:
            states = journal.load()
            kept["states"].append(tracemalloc.get_traced_memory()[0])
            grid_rows = records(frame)
            kept["records"].append(tracemalloc.get_traced_memory()[0] - kept["states"][-1])
            before = tracemalloc.get_traced_memory()[0]
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(journal, "load", lambda held=states: held)  # the states above, not folded again
                ledger = Ledger(frame, [r["row_id"] for r in grid_rows], out, journal, Halt())
                kept["ledger"].append(tracemalloc.get_traced_memory()[0] - before)
                assert len(ledger.status) == rows
        finally:
            tracemalloc.stop()
            journal.close()
    per_row_bytes = {name: (sizes[1] - sizes[0]) / (SIZES[1] - SIZES[0]) for name, sizes in kept.items()}
    assert per_row_bytes["states"] < 2100, per_row_bytes
    assert per_row_bytes["records"] < 800, per_row_bytes
    assert per_row_bytes["ledger"] < 420, per_row_bytes


def test_a_manifest_write_holds_its_csv_text_once(tmp_path: Path) -> None:
    """The CSV text of a manifest is made in pyarrow's memory, hashed and written from there: it
    was copied into Python's, then copied again with the types in front to hash it (1 KiB a row of
    Python memory at the write's peak, 100 MB at 100,000 rows, every few seconds of a sweep)."""
    import tracemalloc

    from flows.store.manifest import to_table, write_manifest

    peaks = []
    for rows in SIZES:
        grid, out = write_grid(tmp_path / f"g{rows}.csv", rows), tmp_path / f"o{rows}"
        finished_out(grid, out)
        table, again = to_table(read_manifest(out)), tmp_path / f"again{rows}"
        again.mkdir()
        tracemalloc.start()
        try:
            write_manifest(again, table)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert (again / "manifest.csv").read_bytes() == (out / "manifest.csv").read_bytes()
    per_row_bytes = (peaks[1] - peaks[0]) / (SIZES[1] - SIZES[0])
    assert per_row_bytes < 400, peaks
