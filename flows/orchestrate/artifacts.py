"""What a sweep shows in the Prefect UI besides its task runs: its name and its artifacts.

- A flow run is named after what it sweeps: `demo-out · demo.csv · 20 rows`,
  `nightly-2026-11-30 · nightly.csv · 40 rows`, a child `demo-out · shards/1 of 4 · 10 rows`
  (numbered as its folder, `OUT/shards/1`).
- A sweep publishes one summary: its OUT and how it went, links to the report and the manifest,
  counts, cost, and the rows that did not succeed; a sharded sweep's parent says how each shard
  ended, and its shards publish none of their own. Its key is scoped by OUT as the run was given
  it (`runs/nightly-{date}` -> `runs-nightly-summary`), so the Artifacts index keeps each OUT's,
  or each scheduled deployment's, latest summary, and only what the latest run published.
- Links go to the report server (`wiro-sweep serve`, `WIRO_SWEEP_REPORT_URL`) when one is set:
  a browser does not open file:// links from an http page.

- `ProgressArtifact` keeps a run's progress artifact current while it sweeps (the live bar on
  the run's page; unkeyed, so never in the index; a shard's run has none, its parent's shows all).

The same `publish_artifacts` serves the flow at its end and the cancellation hook, which runs in the
worker after a cancelled run's process is gone, with its own client and the run's id.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
from prefect.artifacts import aupdate_progress_artifact
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

from flows.engine.progress import Progress
from flows.engine.rows import records
from flows.store.manifest import FINAL_STATUSES, MANIFEST_CSV
from flows.store.summary import Summary, summarize
from flows.view.report import REPORT
from flows.view.serve import REPORT_URL_ENV, ReportURLError, link, report_base


def artifact_scope(out: str) -> str:
    """The key prefix of an OUT, readable: its parent folder's name and its own, `{date}` and
    `{run}` left out (`runs/nightly-{date}` reads `runs-nightly`), so a scheduled OUT keeps one key
    across nights and two OUTs of one name in two folders keep two."""
    template = Path(os.path.abspath(os.path.expanduser(out)))
    words = f"{template.parent.name} {template.name}".replace("{date}", " ").replace("{run}", " ")
    return re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-")[:48].strip("-") or "out"


def run_name(out: Path, grid: list[str], *, rows: int | None = None, shard: int | None = None, shards: int = 1) -> str:
    """`demo-out · demo.csv · 20 rows`: the OUT folder, the grid files (a child: its shard, numbered
    as its folder `OUT/shards/<k>` is: `demo-out · shards/0 of 2 · 10 rows`), the rows."""
    files = [Path(g).name or str(g) for g in grid]
    what = f"shards/{shard} of {shards}" if shard is not None else " + ".join(files[:2]) + (
        f" +{len(files) - 2}" if len(files) > 2 else "")  # fmt: skip
    parts = [out.name or str(out), what or "no grid"]
    if shard is None and shards > 1:
        parts.append(f"{shards} shards")
    if rows is not None:
        parts.append(f"{rows} row{'' if rows == 1 else 's'}")
    return " · ".join(parts)


def page_link(path: Path) -> str:
    """Where a browser opens `path`: on the report server when one is set (an http page does not
    open file:// links), else as a file:// URI."""
    try:
        return link(path)
    except ReportURLError:
        return path.resolve().as_uri()


def links(out: Path) -> tuple[str, str, str]:
    """The report's and the manifest's links, and a note on where they open."""
    try:
        served = bool(report_base())
    except ReportURLError:
        served = False
    report, manifest = out / REPORT, out / MANIFEST_CSV
    if served:
        return link(report), link(manifest), "on the report server"
    note = f"file:// links; run `wiro-sweep serve` and set {REPORT_URL_ENV} to open them from the UI"
    return report.resolve().as_uri(), manifest.resolve().as_uri(), note


def summary_markdown(out: Path, summary: Summary, shards: Mapping[int, str] | None = None) -> str:
    """The one card a sweep shows: the OUT and how it went, its links, then the summary's body
    (counts, cost, the rows that did not succeed); a sharded sweep's shards and how they ended."""
    report, manifest, where = links(out)
    lines = [f"# {out.name}: {summary.message}", "",
             f"**[Open report.html]({report})** · [manifest.csv]({manifest}) · {where}", ""]  # fmt: skip
    if shards:
        ended = ", ".join(f"`shards/{k}` {state}" for k, state in sorted(shards.items()))
        lines += [f"Swept in {len(shards)} shards, merged here: {ended}.", ""]
    return "\n".join(lines) + summary.markdown(out)


async def publish_artifacts(
    client: PrefectClient,
    flow_run_id: UUID,
    out: Path,
    manifest: pd.DataFrame,
    scope: str | None,
    strays: tuple[str, ...] = (),
    kept: tuple[str, ...] = (),
    shards: Mapping[int, str] | None = None,
) -> None:
    """One summary of the sweep (links, counts, cost, failures, any paid task no sweep claimed) under
    `scope`'s key: the Artifacts index keeps the latest run's. A shard's run (`scope` None) adds no
    card of its own (its rows are in its parent's) unless it found such paid tasks, or kept strays."""
    summary = summarize(manifest, strays, kept)
    if scope is None and not strays and not kept:
        return
    await client.create_artifact(ArtifactCreate(
        type="markdown", key=f"{scope}-summary" if scope else None, data=summary_markdown(out, summary, shards),
        description=f"{summary.message} · {out}", flow_run_id=flow_run_id))  # fmt: skip


def progress_description(out: Path, rows: int) -> str:
    return f"Rows finished, of {rows}, sweeping into {out}"


async def final_progress(client: PrefectClient, flow_run_id: UUID, manifest: pd.DataFrame) -> None:
    """Set the run's progress artifacts to the share of rows the final manifest has finished."""
    done = int(manifest["status"].isin(FINAL_STATUSES).sum())
    share = 100.0 * done / max(1, len(manifest))
    mine = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                          type=ArtifactFilterType(any_=["progress"]))  # fmt: skip
    found = await client.read_artifacts(artifact_filter=mine)
    for artifact in found:
        await client.update_artifact(artifact.id, ArtifactUpdate(data=share))


def summary_rows(manifest: pd.DataFrame) -> list[dict[str, Any]]:
    """The manifest's rows as the outcome pass reads them."""
    return records(manifest[["row_id", "prompt", "seed", "status", "error"]])


class ProgressArtifact:
    """Keeps the run's progress artifact current: at most one update a second, one at a time (none
    when `artifact_id` is None: a run that shows no progress bar)."""

    def __init__(self, artifact_id: Any) -> None:
        self.artifact_id = artifact_id
        self.share = 0.0
        self._sent = 0.0
        self._task: asyncio.Task[None] | None = None

    def update(self, progress: Progress) -> None:
        self.share = 100.0 * progress.done / max(1, progress.total)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        await asyncio.sleep(1.0)  # gathers the rows that finish meanwhile into one update
        if self.artifact_id is not None and self.share != self._sent:
            share = self.share
            await aupdate_progress_artifact(self.artifact_id, share)
            self._sent = share

    async def flush(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.artifact_id is not None and self._sent != self.share:
            await aupdate_progress_artifact(self.artifact_id, self.share)
            self._sent = self.share
