"""What `wiro-sweep run` checks before Prefect starts, OUT is written or anything is paid for.

Each problem is one line naming the option, setting or file and what to do, with exit code 2
(`GridError`, or `JournalError` for a damaged journal): an OUT that is also a grid directory, an
OUT that cannot be written, a damaged journal under OUT, an OUT that holds paid rows another
grid swept there (`check_one_sweep`), a `PREFECT_API_URL` that does not answer. The flow checks
OUT itself too (`check_out`, `check_one_sweep`), for runs started by a deployment.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from flows.grid import SOURCE, GridError
from flows.store.journal import JOURNAL, folded, iter_events
from flows.store.rowstate import RowState
from wiro_tasks._config import shown_url


def check_out(out: Path, grid: Iterable[str | Path]) -> None:
    """Both checks of OUT below, as the flow makes them before anything else."""
    check_out_apart(out, grid)
    check_writable(out)


def check_out_apart(out: Path, grid: Iterable[str | Path]) -> None:
    """OUT must not be a grid directory: the manifest.csv a sweep writes there would be read as
    a grid on the next run. Checked before the grid is read, which would fail on that file."""
    resolved = out.resolve()
    for path in map(Path, grid):
        if path.is_dir() and path.resolve() == resolved:
            move = (" and move this sweep's journal.jsonl, manifest.csv, manifest.parquet, report.html and "
                    "videos/ into it to resume") if (out / "manifest.csv").exists() else ""  # fmt: skip
            raise GridError(
                "--out",
                f"{out} is also a grid directory of this sweep, where its manifest.csv would be read as a grid: "
                f"give --out a directory of its own{move}",
            )


def check_writable(out: Path) -> None:
    """OUT (or the directory it will be made in) must be writable, as must the journal and
    videos/ it already holds; videos/ must be a directory."""
    problem = _unwritable(out.resolve())
    if problem:
        raise GridError("--out", f"{problem}: the sweep writes its journal, videos and manifest there; "
                        "give --out a writable directory")  # fmt: skip


def _unwritable(out: Path) -> str | None:
    """Why the sweep could not write under `out` (made if missing), or None."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    videos = out / "videos"
    if videos.exists() and not videos.is_dir():  # its mkdir would fail with [Errno 17] once rows were paid for
        return f"{videos} is not a directory"
    targets = [existing, *(p for p in (out / JOURNAL, out / "videos") if p.exists())]
    for target in targets:
        if not os.access(target, os.W_OK):
            try:
                read_only = bool(os.statvfs(target).f_flag & os.ST_RDONLY)
            except OSError:
                read_only = False
            return f"{target} is on a read-only file system" if read_only else f"{target} is not writable"
    return None


def check_one_sweep(out: Path, grid: pd.DataFrame) -> None:
    """An OUT holds one sweep: the rows of one grid (with its axes), kept across reruns. A grid
    may grow there, but must keep every row OUT holds a task for: the manifest and the report are
    the grid's rows, so a row left out would drop from them with what it cost. Refused with both
    grids named, before anything is written or paid for."""
    from flows.store.shards import recorded_states

    rows = set(grid["row_id"])
    held = sorted(r for r, state in recorded_states(out).items() if r not in rows and _may_be_billed(state))
    if not held:
        return
    sources = _sources(out, set(held))
    before = _grid_files(sources) or "another grid"
    given = _grid_files(grid[SOURCE]) or "this grid"
    if sources and _file_names(sources) == _file_names(grid[SOURCE]):  # other --axis values, or rows removed
        raise GridError("--out", f"{out} holds {len(held)} paid row(s) of an earlier sweep of {given} that this "
                        "one does not have (other --axis values, or rows since removed); sweeping it there would "
                        "drop them from its manifest and report: give it an --out of its own, or keep those rows "
                        "in it")  # fmt: skip
    raise GridError("--out", f"{out} holds {len(held)} paid row(s) of {before} that {given} does not have; "
                    f"sweeping {given} there would drop them from its manifest and report: give {given} "
                    f"an --out of its own, or sweep it together with {before}")  # fmt: skip


def _may_be_billed(state: RowState) -> bool:
    """Whether a row has a task, or may (its Run request was sent): what it cost must stay in view."""
    return bool(state.task_ids) or state.cost > 0 or state.phase in ("intent", "unknown", "submitted")


def _sources(out: Path, row_ids: set[str]) -> list[str]:
    """The `source` cells (`file:row`) OUT's manifest gives these rows; none when it cannot say."""
    from flows.store.manifest import MANIFEST_PARQUET, read_manifest

    try:
        manifest = read_manifest(out) if (out / MANIFEST_PARQUET).is_file() else None
    except Exception:  # a damaged manifest: the journal is the record, and the message says less
        return []
    if manifest is None or SOURCE not in manifest:
        return []
    return [str(s) for r, s in zip(manifest["row_id"], manifest[SOURCE], strict=True) if r in row_ids]


def _grid_files(sources: Iterable[object]) -> str:
    """The grid files named by `source` cells (`a.csv:1 b.csv:4`), as one phrase."""
    files = sorted(_files(sources))
    return " and ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def _files(sources: Iterable[object]) -> set[str]:
    return {name for cell in sources for name in re.findall(r"(\S.*?):\d+(?=\s|$)", str(cell))}


def _file_names(sources: Iterable[object]) -> set[str]:
    return {Path(name).name for name in _files(sources)}


def check_journals(out: Path) -> None:
    """Every journal under OUT (its own, and its shards') must be readable as records: a damaged
    line raises `JournalError` naming the file and the line."""
    from flows.store.shards import shard_dirs

    folded(out / JOURNAL)  # read once for the checks after it too
    for journal in (d / JOURNAL for d in shard_dirs(out)):
        deque(iter_events(journal), maxlen=0)  # every line checked, none kept


def check_prefect_api() -> None:
    """A configured Prefect API (`PREFECT_API_URL`) must answer its health check."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            problem = client.api_healthcheck()
    except Exception as exc:
        problem = exc
    if problem is None:
        return
    response = getattr(problem, "response", None)
    why = f"HTTP {response.status_code}" if response is not None else f"{type(problem).__name__}: {problem}"
    why = why.splitlines()[0][:200] if why.strip() else type(problem).__name__
    raise GridError(
        "PREFECT_API_URL",
        f"the Prefect API at {shown_url(url)} does not answer ({why}): start that server, "
        "or unset PREFECT_API_URL to let the sweep run a temporary local one",
    )
