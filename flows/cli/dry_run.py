"""What `wiro-sweep run --dry-run` shows: how many combinations, how many are left to submit in
OUT, and what they may cost. Imports neither Prefect nor the report: a dry run of 100,000 rows
takes a few seconds, and their import would be a second of it."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import pandas as pd

from flows.engine.budget import Budget, work_by_row
from flows.engine.rows import needs_work, quote_rows, records
from flows.engine.settings import SweepParams
from flows.store.shards import recorded_states
from wiro_tasks import ToolPrice


def dry_run_report(
    frame: pd.DataFrame,
    params: SweepParams,
    prices: Mapping[str, ToolPrice] | None = None,
    no_price: str = "no price asked for",
) -> str:
    """How many combinations, how many are left to submit in OUT, the price used and where it came
    from, and what the rows left may cost (and how many fit in the budget)."""
    out, estimate_usd, limit = Path(params.out), params.estimate_usd, params.budget
    states = recorded_states(out)
    rows = records(frame)
    work = work_by_row(rows)
    left = [r for r in rows if needs_work(states.get(r["row_id"]), retry_failed=params.retry_failed)]
    rates = [s.cost / work[r["row_id"]] for r in rows
             if (s := states.get(r["row_id"])) is not None and s.cost > 0]  # fmt: skip
    spent = sum((s.cost for s in states.values()), Decimal(0))
    budget = Budget(None, estimate_usd=estimate_usd, observed_rates=rates)
    prices = prices or {}
    quotes = quote_rows(left, prices)
    typical = [q.typical if q is not None else budget.estimate(work[r["row_id"]]) for q, r in
               zip(quotes, left, strict=True)]  # fmt: skip
    lines = [f"{len(frame)} combination{'' if len(frame) == 1 else 's'}; {len(frame) - len(left)} already done"
             f" in {out}, {len(left)} to submit."]  # fmt: skip
    if not left:
        failed = sum(1 for r in rows if (s := states.get(r["row_id"])) and s.status in ("failed", "timed_out"))
        again = f" ({failed} failed or timed out: --retry-failed submits them again)" if failed else ""
        lines += [f"Nothing to submit: every combination has finished{again}.", "Nothing was submitted (--dry-run)."]
        return "\n".join(lines)
    models = sorted({r["model"] for r in left})
    priced = sorted({(r["model"], q.source) for q, r in zip(quotes, left, strict=True) if q is not None})
    lines += [f"Price{'' if len(models) == 1 else ' of ' + model}: {source}." for model, source in priced]
    if any(q is None for q in quotes):
        basis = "the highest rate billed so far in OUT" if rates else f"${estimate_usd} per default-sized task"
        why = no_price if not prices else "Tool/Detail has none for some rows"
        lines.append(f"Price: {why}; estimated at {basis} (--estimate-usd).")
    lines.append(f"Estimated cost of the {len(left)} to submit: ${sum(typical, Decimal(0)):.4f}.")
    if limit is not None:
        running, fits = spent, 0
        for quote, row, cost in zip(quotes, left, typical, strict=True):
            if running + budget.plan(quote, work[row["row_id"]]) > limit:
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
