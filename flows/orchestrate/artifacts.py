"""What a sweep shows in the Prefect UI besides its task runs: its name and its artifacts.

- A flow run is named after what it sweeps: `demo-out · demo.csv · 20 rows`,
  `nightly-2026-11-30 · nightly.csv · 40 rows`, a child `demo-out · shard 2/4 · 10 rows`.
- Artifact keys are scoped by OUT as the run was given it (`{date}` and all, plus a hash of
  its absolute path), so the Artifacts index keeps each OUT's, or each scheduled deployment's,
  latest summary instead of only the last sweep's. Every artifact has a description.
- Links go to the report server (`wiro-sweep serve`, `WIRO_SWEEP_REPORT_URL`) when one is set:
  a browser does not open file:// links from an http page.

- `ProgressArtifact` keeps a run's progress artifact current while it sweeps.

The same `publish_artifacts` serves the flow at its end and the cancellation hook, which runs in the
worker after a cancelled run's process is gone, with its own client and the run's id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
from prefect.artifacts import aupdate_progress_artifact
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

from flows.engine.progress import Progress
from flows.store.manifest import FINAL_STATUSES, MANIFEST_CSV, MANIFEST_PARQUET
from flows.store.summary import summarize
from flows.view.report import REPORT
from flows.view.serve import REPORT_URL_ENV, ReportURLError, link, report_base


def artifact_scope(out: str, shard: int | None = None) -> str:
    """The key prefix of an OUT: its folder's name (`{date}` reads `date`) and a hash of its path."""
    template = os.path.abspath(os.path.expanduser(out))
    name = Path(template).name.replace("{date}", "date").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:40].strip("-") or "out"
    scope = f"{slug}-{hashlib.sha256(template.encode()).hexdigest()[:6]}"
    return f"{scope}-shard-{shard}" if shard is not None else scope


def run_name(out: Path, grid: list[str], *, rows: int | None = None, shard: int | None = None, shards: int = 1) -> str:
    """`demo-out · demo.csv · 20 rows`: the OUT folder, the grid files (a child: its shard), the rows."""
    files = [Path(g).name or str(g) for g in grid]
    what = f"shard {shard + 1}/{shards}" if shard is not None else " + ".join(files[:2]) + (
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
    if served:
        return link(out / REPORT), link(out / MANIFEST_CSV), "on the report server"
    note = f"a file:// link; run `wiro-sweep serve` and set {REPORT_URL_ENV} to open it from the UI"
    return (out / REPORT).resolve().as_uri(), (out / MANIFEST_PARQUET).resolve().as_uri(), note


async def publish_artifacts(
    client: PrefectClient,
    flow_run_id: UUID,
    out: Path,
    manifest: pd.DataFrame,
    scope: str,
    strays: tuple[str, ...] = (),
    kept: tuple[str, ...] = (),
) -> None:
    """The summary (with any paid task no sweep claimed), the failures, and links to the report and
    the manifest, under `scope`'s keys."""
    summary = summarize(manifest, strays, kept)
    report, manifest_link, where = links(out)

    async def create(kind: str, key: str, data: str, description: str) -> None:
        await client.create_artifact(ArtifactCreate(type=kind, key=f"{scope}-{key}", data=data,
                                                    description=description, flow_run_id=flow_run_id))  # fmt: skip

    await create("markdown", "report", f"[{out.name} · report.html]({report})",
                 f"Contact sheet of every video with its inputs, status and cost ({where})")  # fmt: skip
    await create("markdown", "summary", summary.markdown(out), f"{summary.message} · {out}")
    if summary.failures:
        await create("table", "failures", json.dumps(summary.failures),
                     f"{len(summary.failures)} row(s) that did not succeed, and why")  # fmt: skip
    await create("markdown", "manifest", f"[{out.name} · manifest]({manifest_link})",
                 f"Manifest, one row per combination: {out / MANIFEST_CSV} and {out / MANIFEST_PARQUET}")  # fmt: skip


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
    return [{k: r[k] for k in ("row_id", "prompt", "seed", "status", "error")} for r in manifest.to_dict("records")]


class ProgressArtifact:
    """Keeps the run's progress artifact current: at most one update a second, one at a time."""

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
        if self.share != self._sent:
            share = self.share
            await aupdate_progress_artifact(self.artifact_id, share)
            self._sent = share

    async def flush(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sent != self.share:
            await aupdate_progress_artifact(self.artifact_id, self.share)
            self._sent = self.share
