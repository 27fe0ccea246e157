"""What a finished sweep comes to (flows/store/summary.py): the one-line message a user reads at
the end of a run, and the Markdown the Prefect UI shows, from manifests built the real way (grid,
journal events, `build_manifest`)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from flows.grid import expand_grid
from flows.store.journal import fold
from flows.store.manifest import build_manifest
from flows.store.summary import summarize


def manifest(outcomes: list[dict[str, Any]], final: bool = True) -> pd.DataFrame:
    """A manifest of one row per outcome: {"status": ..., "elapsed": ..., "cost": ..., "error": ...},
    or {} for a row never submitted; the prompt is `scene N`."""
    raw = pd.DataFrame({"prompt": [f"scene {n}" for n in range(len(outcomes))], "seed": "3", "numFrames": 9,
                        "source": [f"grid.csv:{n + 1}" for n in range(len(outcomes))]})  # fmt: skip
    grid = expand_grid(raw)
    events: list[dict[str, Any]] = []
    for n, (row_id, outcome) in enumerate(zip(grid["row_id"], outcomes, strict=True)):
        if not outcome:
            continue
        task = str(100 + n)
        events += [{"event": "intent", "row_id": row_id, "at": "2025-01-01T00:00:00Z"},
                   {"event": "submitted", "row_id": row_id, "task_id": task},
                   {"event": "finished", "row_id": row_id, "task_id": task, "status": outcome["status"],
                    "cost": outcome.get("cost", "0"), "elapsed": outcome.get("elapsed"),
                    "error": outcome.get("error", "")}]  # fmt: skip
        if outcome["status"] == "succeeded":
            events.append({"event": "downloaded", "row_id": row_id, "path": f"videos/{row_id}.mp4",
                           "sha256": "0" * 64, "bytes": 1000})  # fmt: skip
    return build_manifest(grid, fold(events), final=final)


def ok(elapsed: float, cost: str = "0.01") -> dict[str, Any]:
    return {"status": "succeeded", "elapsed": elapsed, "cost": cost}


def test_a_mixed_sweep_reads_as_one_line_with_money_and_counts() -> None:
    rows = [ok(10), ok(20), ok(30), ok(40, cost="0.0125"),
            {"status": "failed", "error": "RuntimeError: CUDA out of memory", "elapsed": 1},
            {"status": "timed_out", "cost": "0.0300", "elapsed": 600}, {}]  # fmt: skip
    summary = summarize(manifest(rows))

    assert summary.message == "4 of 7 rows succeeded; 1 failed, 1 timed_out, 1 not_started; $0.0725 billed"
    assert summary.cost == Decimal("0.0725")
    assert not summary.all_succeeded
    assert summary.counts == {"succeeded": 4, "failed": 1, "timed_out": 1, "not_started": 1}
    assert (summary.p50, summary.p95) == (25.0, 38.5), "elapsed times of the rows that succeeded only"
    assert [f["status"] for f in summary.failures] == ["failed", "timed_out"], "a row never started never failed"
    assert "1 row(s) not started: the sweep stopped before their Run requests" in summary.markdown(Path("/out"))
    assert summary.as_dict() == {"counts": summary.counts, "total": 7, "cost_usd": "0.072500000000000000",
                                 "elapsed_p50": 25.0, "elapsed_p95": 38.5}  # fmt: skip


def test_a_sweep_where_everything_succeeded_says_so_plainly() -> None:
    summary = summarize(manifest([ok(5), ok(7)]))
    assert summary.all_succeeded
    assert summary.message == "2 of 2 rows succeeded; $0.0200 billed"
    assert summary.failures == []
    assert "did not succeed" not in summary.markdown(Path("/out"))


def test_a_running_sweep_counts_pending_and_running_rows() -> None:
    rows = [ok(5), {}]
    summary = summarize(manifest(rows, final=False))
    assert summary.message == "1 of 2 rows succeeded; 1 pending; $0.0100 billed"
    assert (summary.p50, summary.p95) == (5.0, 5.0)


def test_no_success_means_no_percentiles() -> None:
    summary = summarize(manifest([{"status": "failed", "error": "bad", "elapsed": 3}]))
    assert (summary.p50, summary.p95) == (None, None)
    assert "p50 n/a, p95 n/a" in summary.markdown(Path("/out"))


def test_the_markdown_names_the_files_the_failures_and_the_strays() -> None:
    rows = [ok(12), {"status": "failed", "error": "bad | worse", "elapsed": 1}]
    frame = manifest(rows)
    strays = ("task 9001 (scene 0, seed 3)",)
    text = summarize(frame, strays).markdown(Path("/data/out"))
    lines = text.splitlines()

    assert lines[0] == "| status | rows |", "headed by the caller (the artifact: its OUT and message)"
    assert "| succeeded | 1 |" in lines
    assert "| failed | 1 |" in lines
    assert "Billed: **$0.010000**. Elapsed per task: p50 12.0 s, p95 12.0 s." in lines
    assert "`/data/out/manifest.parquet`" in text
    assert "`/data/out/videos`" in text
    assert "- task 9001 (scene 0, seed 3)" in lines, "a paid task nobody claimed is named"
    failed_id = frame["row_id"].iloc[1]
    assert f"| failed | bad \\| worse | scene 1 | 3 | `{failed_id}` |" in lines, "a | in the reason keeps the table"


def test_the_markdown_lists_at_most_fifty_failures() -> None:
    rows = [{"status": "failed", "error": f"reason {n}", "elapsed": 1} for n in range(53)]
    text = summarize(manifest(rows)).markdown(Path("/out"))
    assert sum(line.startswith("| failed | reason") for line in text.splitlines()) == 50
    assert text.endswith("…and 3 more in the manifest.")
