"""What `wiro-sweep run` checks before Prefect starts, OUT is written or anything is paid for.

Each problem is one line naming the option, setting or file and what to do, with exit code 2
(`GridError`, or `JournalError` for a damaged journal): an OUT that is also a grid directory, an
OUT that cannot be written, a damaged journal under OUT, a `PREFECT_API_URL` that does not
answer. The flow checks OUT itself too (`check_out`), for runs started by a deployment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from flows.grid import GridError
from flows.store.journal import JOURNAL, read_events
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


def check_journals(out: Path) -> None:
    """Every journal under OUT (its own, and its shards') must be readable as records: a damaged
    line raises `JournalError` naming the file and the line."""
    from flows.store.shards import shard_dirs

    for journal in [out / JOURNAL, *(d / JOURNAL for d in shard_dirs(out))]:
        read_events(journal)


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
