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
    frame: pd.DataFrame, out: Path, estimate_usd: Decimal, limit: Decimal | None, retry_failed: bool = False
) -> str:
    """How many combinations, how many are left to submit in OUT, and what they may cost."""
    states = recorded_states(out)
    rows = records(frame)
    left = [r for r in rows if needs_work(states.get(r["row_id"]), retry_failed=retry_failed)]
    rates = [s.cost / work_units(r) for r in rows
             if (s := states.get(r["row_id"])) is not None and s.cost > 0]  # fmt: skip
    budget = Budget(None, estimate_usd=estimate_usd, observed_rates=rates)
    estimates = [budget.estimate(work_units(r)) for r in left]
    total = sum(estimates, Decimal(0))
    basis = "the highest rate billed so far in OUT" if rates else f"${estimate_usd} per default-sized task"
    lines = [f"{len(frame)} combination{'' if len(frame) == 1 else 's'}; {len(frame) - len(left)} already done"
             f" in {out}, {len(left)} to submit."]  # fmt: skip
    if not left:
        failed = sum(1 for r in rows if (s := states.get(r["row_id"])) and s.status in ("failed", "timed_out"))
        again = f" ({failed} failed or timed out: --retry-failed submits them again)" if failed else ""
        lines += [f"Nothing to submit: every combination has finished{again}.", "Nothing was submitted (--dry-run)."]
        return "\n".join(lines)
    lines.append(f"Estimated cost: ${total:.4f} (at {basis}; set --estimate-usd to change the prior).")
    if limit is not None:
        running, fits = Decimal(0), 0
        for e in estimates:
            if running + e > limit:
                break
            running, fits = running + e, fits + 1
        lines.append(f"Budget ${limit}: about {fits} of {len(left)} would be submitted, the rest skipped.")
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
        console.print(f"[red]error:[/red] {error or state.message}")
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
