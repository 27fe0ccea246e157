"""What `wiro-sweep run` shows: the dry-run estimate, a live progress bar, the closing summary."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from prefect.client.schemas.objects import State
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar

from wiro_tasks import ToolPrice

from .budget import Budget, work_units
from .journal import JOURNAL, fold, read_events
from .local_prefect import prefect_api
from .manifest import MANIFEST_CSV, MANIFEST_PARQUET, build_manifest, read_manifest, write_manifest
from .progress import Progress, listening
from .report import write_report
from .runner import VIDEOS, needs_work, records
from .shards import recorded_states, stop_children
from .summary import summarize

console = Console(stderr=True, highlight=False)


def dry_run_report(
    frame: pd.DataFrame,
    out: Path,
    estimate_usd: Decimal,
    limit: Decimal | None,
    retry_failed: bool = False,
    price: ToolPrice | None = None,
    no_price: str = "no price asked for",
) -> str:
    """How many combinations, how many are left to submit in OUT, the price used and where it came
    from, and what the rows left may cost (and how many fit in the budget)."""
    states = recorded_states(out)
    rows = records(frame)
    left = [r for r in rows if needs_work(states.get(r["row_id"]), retry_failed=retry_failed)]
    rates = [s.cost / work_units(r) for r in rows
             if (s := states.get(r["row_id"])) is not None and s.cost > 0]  # fmt: skip
    spent = sum((s.cost for s in states.values()), Decimal(0))
    budget = Budget(None, estimate_usd=estimate_usd, observed_rates=rates)
    quotes = [price.quote(r) if price is not None else None for r in left]
    typical = [q.typical if q is not None and q.known else budget.estimate(work_units(r)) for q, r in
               zip(quotes, left, strict=True)]  # fmt: skip
    lines = [f"{len(frame)} combinations; {len(frame) - len(left)} already done in {out}, {len(left)} to submit."]
    lines += [f"Price: {source}." for source in sorted({q.source for q in quotes if q is not None})]
    if price is None or any(q is None for q in quotes):
        basis = "the highest rate billed so far in OUT" if rates else f"${estimate_usd} per default-sized task"
        why = no_price if price is None else "Tool/Detail has none for some rows"
        lines.append(f"Price: {why}; estimated at {basis} (--estimate-usd).")
    if not left:
        lines.append("Nothing to submit: every row is done" + (" (--retry-failed resubmits failed ones)."
                                                               if not retry_failed else "."))  # fmt: skip
    else:
        lines.append(f"Estimated cost of the {len(left)} to submit: ${sum(typical, Decimal(0)):.4f}.")
    if limit is not None and left:
        running, fits = spent, 0
        for quote, row, cost in zip(quotes, left, typical, strict=True):
            if running + budget.plan(quote, work_units(row)) > limit:
                break
            running, fits = running + cost, fits + 1
        head = f"Budget ${limit} (${spent:.4f} billed in OUT so far): "
        if fits == len(left):
            lines.append(head + f"all {len(left)} fit.")
        else:
            lines.append(head + f"about {fits} of {len(left)} fit, each counted at what it may cost before a "
                         "Kill lands; the rest would be skipped.")  # fmt: skip
    lines.append("Nothing was submitted (--dry-run).")
    return "\n".join(lines)


def run_with_progress(params: dict[str, Any], frame: pd.DataFrame) -> int:
    """Run the sweep flow in this process under a progress bar; the exit code to use."""
    from .stopping import kill_in_flight
    from .sweep import sweep

    out = Path(params["out"])
    columns = (TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
               TimeElapsedColumn())  # fmt: skip
    with Bar(*columns, console=console, transient=False) as bar:
        task = bar.add_task("sweep", total=len(frame), detail="starting Prefect…")

        def show(progress: Progress) -> None:
            counts = " ".join(f"{k} {v}" for k, v in sorted(progress.by_status.items()) if k != "pending")
            bar.update(task, completed=progress.done, detail=f"${progress.cost:.4f} · {counts}")

        try:
            with prefect_api(), listening(show):
                state: State[Any] = asyncio.run(sweep(**params, return_state=True))  # type: ignore[arg-type]
        except KeyboardInterrupt:
            bar.stop()
            if params.get("shards", 1) > 1:
                children = len(stop_children(out))
                console.print(f"Interrupted: cancelled {children} shard run(s); their workers stop their tasks.")
                return 130
            stopped = kill_in_flight(out)
            write_manifest(out, build_manifest(frame, fold(read_events(out / JOURNAL)), final=True))
            write_report(out)
            console.print(f"Interrupted: stopped {stopped} running Wiro task(s). Rerun the same command to resume.")
            return 130
    error = state.result(raise_on_failure=False) if state.is_failed() else None
    if isinstance(error, BaseException) or not (out / MANIFEST_PARQUET).exists():
        console.print(f"[red]error:[/red] {error or state.message}", soft_wrap=True)  # one line, whatever the width
        return int(getattr(error, "exit_code", 1))
    manifest = read_manifest(out)
    summary = summarize(manifest)
    console.print(("[green]" if summary.all_succeeded else "[yellow]") + summary.message)
    folders = sorted({str((out / p).parent) for p in manifest["output_path"] if p}) or [str(out / VIDEOS)]
    console.print(f"Videos:   {', '.join(f + '/' for f in folders)}")
    console.print(f"Manifest: {out / MANIFEST_PARQUET}  {out / MANIFEST_CSV}")
    console.print(f"Report:   {out / 'report.html'}")
    for failure in summary.failures[:10]:
        console.print(f"  {failure['row_id'][:8]} seed {failure['seed']}: {failure['status']}: {failure['error']}")
    if len(summary.failures) > 10:
        console.print(f"  …and {len(summary.failures) - 10} more (see the manifest)")
    return 0 if summary.all_succeeded else 1
