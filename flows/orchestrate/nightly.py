"""After a sweep: compare it with the night before, say so in Prefect, fail the run on regressions.

The sweep flow's `baseline` parameter turns it on (the `nightly-regression` deployment sets it):

    baseline="previous"    the most recent earlier `{date}` OUT of the same `out` pattern
                           (runs/nightly-2026-01-01 for tonight's runs/nightly-2026-01-02)
    baseline="runs/x"      that OUT
    baseline=None          no comparison

It writes CURRENT/compare.{csv,parquet,html} (flows/view/compare.py), publishes a markdown artifact
(totals, the regressed and changed rows, a link to compare.html) under a key of the deployment
or the OUT pattern, and when something regressed emits the Prefect event `wiro-sweep.regression`
with the counts in its payload, for an automation to notify on (its resource reads as the OUT's
artifact keys do: `wiro-sweep.out.runs-nightly`, named after tonight's folder), and ends the run Failed with
the counts in its message. The first night, with nothing to compare with, says so and passes.
"""

from __future__ import annotations

import asyncio
import glob
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.events import emit_event
from prefect.states import Failed

from flows.orchestrate.artifacts import artifact_scope, page_link
from flows.store.files import MAX_MANIFEST_BYTES, UnreadableFileError, open_regular
from flows.store.manifest import MANIFEST_PARQUET
from flows.store.thumbnails import text
from flows.view.compare import (
    COMPARE_CSV,
    UNFINISHED,
    CompareError,
    Comparison,
    compare_outs,
    seconds_text,
)
from flows.view.compare_page import write_comparison

PREVIOUS = "previous"
EVENT = "wiro-sweep.regression"
_MARK = "WIRODATEMARK"
_RUN_MARK = "WIRORUNMARK"  # `{run}`: one OUT per flow run, any of them a night
_ROWS_SHOWN = 50
RAN = ("succeeded", "failed", "timed_out")  # a row that ran; cancelled and skipped rows say nothing of the model


def find_previous(pattern: str, tonight: Path) -> Path | None:
    """The OUT of `pattern` (with `{date}`, and maybe `{run}`) of the latest date before `tonight`'s whose sweep
    finished with a row that ran: a night killed mid-sweep (rows left pending or running) is passed
    over, and so is one whose every row was cancelled or skipped (tonight would read as all fixed)."""
    template = str(Path(pattern.replace("{date}", _MARK).replace("{run}", _RUN_MARK)).resolve())
    matcher = re.compile(re.escape(template).replace(_MARK, r"(\d{4}-\d{2}-\d{2})").replace(_RUN_MARK, r"(?:[0-9a-z]+)")
                         + r"\Z")  # fmt: skip
    found = matcher.match(str(tonight))
    tonight_date = found.group(1) if found else "9999-99-99"
    candidates = []
    for path in glob.glob(
        glob.escape(template).replace(_MARK, "[0-9]" * 4 + "-[0-9][0-9]-[0-9][0-9]").replace(_RUN_MARK, "*")
    ):
        match = matcher.match(path)
        same_date = match is not None and len(set(match.groups())) == 1
        if match and same_date and match.group(1) < tonight_date and (Path(path) / MANIFEST_PARQUET).is_file():
            candidates.append((match.group(1), Path(path)))
    for _date, night in sorted(candidates, reverse=True):
        if _finished(night):
            return night
    return None


def _finished(out: Path) -> bool:
    """Whether OUT's manifest is there, readable, has no row pending or running, and one that ran."""
    try:
        with open_regular(out / MANIFEST_PARQUET, MAX_MANIFEST_BYTES, "manifest") as handle:  # one open file
            statuses = pq.read_table(handle, columns=["status"]).column("status").to_pylist()
    except (OSError, pa.ArrowException, KeyError, UnreadableFileError):  # a FIFO would have blocked the nightly
        return False
    return not set(statuses) & set(UNFINISHED) and bool(set(statuses) & set(RAN))


def artifact_key(pattern: str) -> str:
    """`compare-<deployment>` in a deployment's run, else `compare-<the OUT pattern's name>`:
    lowercase letters, digits and dashes, as Prefect wants."""
    from prefect.runtime import deployment

    name = str(deployment.name or "") or Path(pattern.replace("{date}", "").replace("{run}", "")).name or "out"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "out"
    return f"compare-{slug}"[:64].rstrip("-")


async def compare_with_baseline(
    reported: dict[str, Any] | State[Any], pattern: str, out: Path, baseline: str | None
) -> dict[str, Any] | State[Any]:
    """What the sweep flow returns once its OUT is compared with `baseline` (see the module doc)."""
    if baseline is None:
        return reported
    logger = get_run_logger()
    key = artifact_key(pattern)
    base = find_previous(pattern, out) if baseline == PREVIOUS else Path(baseline).resolve()
    if base is None:
        where = pattern if "{date}" in pattern else f"{pattern} (no {{date}} in it)"
        said = f"No earlier OUT of {where} to compare {out.name} with: nothing to compare on this first night."
        logger.info(said)
        await acreate_markdown_artifact(f"# Nightly compare: {out.name}\n\n{said}\n", key=key,
                                        description="compare with the previous night")  # fmt: skip
        return reported
    try:
        comparison = await asyncio.to_thread(compare_outs, base, out)
        page = await asyncio.to_thread(write_comparison, comparison)
    except (CompareError, OSError) as exc:
        said = f"compare with {base} failed: {exc}"
        await acreate_markdown_artifact(f"# Nightly compare: {out.name}\n\n{_cell(said)}\n", key=key,
                                        description="compare with the previous night")  # fmt: skip
        return Failed(message=said)
    logger.info("compared with %s: %s; %s", base, comparison.message(), page)
    await acreate_markdown_artifact(markdown(comparison, page), key=key, description=f"{out.name} against {base.name}")
    counts = {"regressed": comparison.regressed, **comparison.counts}
    if not comparison.failed:
        return {**reported, "compare": {"baseline": str(base), **counts}} if isinstance(reported, dict) else reported
    about = {"prefect.resource.id": f"wiro-sweep.out.{artifact_scope(pattern)}", "prefect.resource.name": out.name}
    emit_event(
        event=EVENT,
        resource=about,
        related=_related(),
        payload={**counts, "rows": len(comparison.rows), "message": comparison.message(),
                 "baseline": str(base), "current": str(out), "compare_html": page_link(page)},
    )  # fmt: skip
    message = f"{comparison.message()} (against {base.name})"
    if isinstance(reported, State) and reported.message:
        message += f"; {reported.message}"
    return Failed(message=message)


def _related() -> list[dict[str, str]]:
    """This flow run (and its deployment), so the event shows on them in the UI."""
    from prefect.runtime import deployment, flow_run

    related = []
    for kind, run_id, name in (
        ("flow-run", flow_run.id, flow_run.name),
        ("deployment", deployment.id, deployment.name),
    ):
        if run_id:
            related.append({"prefect.resource.id": f"prefect.{kind}.{run_id}", "prefect.resource.role": kind,
                            "prefect.resource.name": str(name)})  # fmt: skip
    return related


def markdown(comparison: Comparison, page: Path) -> str:
    """The artifact: totals, the regressed and changed rows (what changed first, where a narrow
    window still shows it), links to the page and the table."""
    b, c = comparison.sides["baseline"], comparison.sides["current"]
    lines = [
        f"# Nightly compare: {comparison.current.name} against {comparison.baseline.name}",
        "",
        f"**{comparison.message()}.**",
        "",
        "| | baseline | current |",
        "| --- | ---: | ---: |",
        f"| succeeded | {b.counts.get('succeeded', 0)} of {b.total} | {c.counts.get('succeeded', 0)} of {c.total} |",
        f"| billed | ${b.cost:.4f} | ${c.cost:.4f} |",
        f"| elapsed p50 | {seconds_text(b.p50)} | {seconds_text(c.p50)} |",
        f"| elapsed p95 | {seconds_text(b.p95)} | {seconds_text(c.p95)} |",
        "",
        f"Both videos of every changed row, side by side: [compare.html]({page_link(page)}). "
        f"Every row: `{comparison.current / COMPARE_CSV}`.",
    ]
    rows = comparison.rows
    shown = rows[rows["regressed"] | rows["change"].isin(("gone", "undecodable", "changed", "new"))]
    if len(shown):
        lines += ["", "## Regressed and changed rows", "",
                  "| change | what | status | PSNR (dB) | prompt | seed | row |",
                  "| --- | --- | --- | ---: | --- | --- | --- |"]  # fmt: skip
        for r in shown.head(_ROWS_SHOWN).to_dict("records"):
            change = "regressed" if r["regressed"] else r["change"]
            status = f"{text(r['status_baseline']) or '—'} → {text(r['status_current']) or '—'}"
            psnr = f"{r['psnr_db']:.1f}" if text(r["psnr_db"]) else ""
            lines.append(f"| {change} | {_cell(r['note'], 120)} | {status} | {psnr} | {_cell(r['prompt'], 40)} | "
                         f"{_cell(r['seed'])} | `{r['row_id'][:8]}` |")  # fmt: skip
        if len(shown) > _ROWS_SHOWN:
            lines.append(f"\n…and {len(shown) - _ROWS_SHOWN} more in compare.html and {COMPARE_CSV}.")
    return "\n".join(lines)


def _cell(value: Any, limit: int = 200) -> str:
    """Text safe inside a markdown table cell: one line, no pipe, no HTML."""
    words = " ".join(text(value).split())
    words = words.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return words if len(words) <= limit else words[: limit - 1] + "…"
