"""What a finished sweep comes to: counts by status, money, time, and the rows that failed."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from flows.store.manifest import MANIFEST_CSV, MANIFEST_PARQUET, NOT_STARTED, STATUSES


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    total: int
    cost: Decimal
    p50: float | None
    p95: float | None
    failures: list[dict[str, str]]  # rows that ran, or tried to, and did not succeed (never `not_started`)
    strays: tuple[str, ...] = ()  # paid tasks matching a row that no sweep here claimed: "task 1234 (inputs)"
    kept: tuple[str, ...] = ()  # this OUT's strays, paid for a row that did not adopt them: "task 1234 (row ...)"

    @property
    def all_succeeded(self) -> bool:
        return self.counts.get("succeeded", 0) == self.total

    @property
    def message(self) -> str:
        """One line, e.g. `18 of 20 rows succeeded; 1 failed, 1 not_started; $0.0430 billed`."""
        others = ", ".join(f"{n} {s}" for s, n in self.counts.items() if s != "succeeded" and n)
        head = f"{self.counts.get('succeeded', 0)} of {self.total} rows succeeded"
        return f"{head}{'; ' + others if others else ''}; ${self.cost:.4f} billed"

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "total": self.total, "cost_usd": str(self.cost),
                "elapsed_p50": self.p50, "elapsed_p95": self.p95}  # fmt: skip

    def markdown(self, out: Path) -> str:
        """The summary's body: counts, money and time, the rows that did not succeed, any paid task
        no sweep claimed, and where the files are (its heading and links are the caller's)."""
        lines = [
            "| status | rows |",
            "| --- | ---: |",
            *(f"| {s} | {n} |" for s, n in self.counts.items()),
            "",
            f"Billed: **${self.cost:.6f}**. Elapsed per task: p50 {_s(self.p50)}, p95 {_s(self.p95)}.",
            "",
            f"Manifest: `{out / MANIFEST_PARQUET}` and `{out / MANIFEST_CSV}`; videos in `{out / 'videos'}`.",
        ]
        if self.counts.get(NOT_STARTED):
            lines += ["", f"{self.counts[NOT_STARTED]} row(s) not started: the sweep stopped before their Run "
                      "requests. Nothing was billed for them; a rerun with the same OUT submits them."]  # fmt: skip
        if self.kept:
            lines += ["", "## Strays: paid tasks no row adopted", "",
                      "Tasks this sweep paid for (a Run whose answer was lost, its task found too late) beside "
                      f"the row's own: counted in the bill above, their videos in `{out / 'strays'}`:", "",
                      *(f"- {s}" for s in self.kept)]  # fmt: skip
        if self.failures:
            lines += ["", "## Rows that did not succeed", "", "| status | reason | prompt | seed | row |",
                      "| --- | --- | --- | --- | --- |"]  # fmt: skip
            for f in self.failures[:50]:
                reason = f["error"].replace("|", "\\|")
                lines.append(f"| {f['status']} | {reason} | {f['prompt'][:40]} | {f['seed']} | `{f['row_id']}` |")
            if len(self.failures) > 50:
                lines.append(f"\n…and {len(self.failures) - 50} more in the manifest.")
        if self.strays:
            lines += ["", "## Paid tasks no sweep here claimed", "",
                      "Each matches a row's inputs, and was found while looking for that row's lost Run answer; "
                      "none of this machine's sweeps holds it (another machine's sweep, or a second task of the "
                      "row). Check them in Wiro before paying for more:", "",
                      *(f"- {s}" for s in self.strays)]  # fmt: skip
        return "\n".join(lines)


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


SUMMARY_COLUMNS = ("row_id", "prompt", "seed", "status", "error", "cost_usd", "elapsed_seconds")  # what it reads


def summarize(manifest: pd.DataFrame, strays: tuple[str, ...] = (), kept: tuple[str, ...] = ()) -> Summary:
    counts = {s: int((manifest["status"] == s).sum()) for s in STATUSES}
    counts = {s: n for s, n in counts.items() if n}
    elapsed = manifest.loc[manifest["status"] == "succeeded", "elapsed_seconds"].dropna()
    failed = manifest[~manifest["status"].isin(("succeeded", NOT_STARTED))]
    failures = [
        {k: str(r[k] or "") for k in ("row_id", "prompt", "seed", "status", "error")} for r in failed.to_dict("records")
    ]
    return Summary(
        counts=counts,
        total=len(manifest),
        cost=sum(manifest["cost_usd"], Decimal(0)),
        p50=float(elapsed.quantile(0.5)) if len(elapsed) else None,
        p95=float(elapsed.quantile(0.95)) if len(elapsed) else None,
        failures=failures,
        strays=strays,
        kept=kept,
    )
