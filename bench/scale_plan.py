"""Benchmark 8: planning and resuming at scale, `wiro-sweep run --emulator` at 1k, 10k and 100k rows.

    python -m bench.scale_plan                 # 1,000, 10,000 and 100,000 rows (a few minutes)
    python -m bench.scale_plan --quick         # 1,000 and 10,000
    python -m bench.scale_plan --out /tmp/b.md # print the section and write it to a file of its own

Two commands, each timed as a user runs it (a process of its own, wall seconds and peak RSS):
`--dry-run` of a grid into an empty OUT, and the same grid again on an OUT where every row has
finished ("nothing to submit"). The finished OUT is written directly with the real `Journal`
(intent, submitted, finished, downloaded per row) and small stand-in videos, so no task runs;
its fold is kept beside it (`OUT/.journal.fold`), as a sweep's end keeps it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HEADING = "## 9. Planning and resuming at scale (issue 19)"
SIZES = {"full": (1000, 10_000, 100_000), "quick": (1000, 10_000), "smoke": (50, 200)}
TARGETS = {"dry_run_s": 5.0, "reopen_s": 10.0}  # at 100,000 rows
AT = "2026-01-02T03:04:05.000Z"
POSTER = b"\xff\xd8\xff\xd9"  # a stand-in poster, newer than its video
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(40)  # a stand-in: reopening checks a video's size, not its frames


def write_grid(path: Path, rows: int) -> Path:
    """A grid of `rows` rows: ten seeds of each prompt, 9 frames."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "seed", "numFrames"])
        writer.writerows([f"a scene number {n // 10} of the sweep", n % 10, 9] for n in range(rows))
    return path


def finished_out(grid: Path, out: Path, rows: int | None = None) -> None:
    """OUT as a sweep that finished every row of `grid` (or its first `rows`) leaves it: the
    journal, the videos with their posters, the manifest and the report."""
    from flows.engine.rows import VIDEOS, records, run_inputs, video_name
    from flows.grid import DEFAULT_MAX_COMBINATIONS
    from flows.store.gridcache import keep_grid, kept_grid
    from flows.store.journal import Journal, keep_fold
    from flows.store.manifest import build_manifest, manifest_source, write_manifest
    from flows.view.report import write_report

    frame = kept_grid(out, [str(grid)], max_combinations=DEFAULT_MAX_COMBINATIONS)
    (out / VIDEOS).mkdir(parents=True, exist_ok=True)
    keep_grid(out, frame)  # as the sweep's flow keeps it
    journal = Journal(out)
    for number, row in enumerate(records(frame)[:rows], start=1):
        row_id, task_id, name = row["row_id"], str(10_000_000 + number), video_name(row)
        (out / VIDEOS / name).write_bytes(VIDEO)
        (out / VIDEOS / name).with_suffix(".jpg").write_bytes(POSTER)  # made: the report does not make it again
        journal.append("intent", row_id, at=AT, inputs=run_inputs(row), model=row["model"], account="bench")
        journal.append("submitted", row_id, at=AT, task_id=task_id)
        journal.append("finished", row_id, at=AT, task_id=task_id, status="succeeded", cost="0.0036", elapsed="3",
                       output_url=f"http://127.0.0.1:1/{task_id}.mp4", output_bytes=len(VIDEO))  # fmt: skip
        journal.append("downloaded", row_id, at=AT, path=f"{VIDEOS}/{name}", sha256="0" * 64, bytes=len(VIDEO))
    journal.flush(durable=True)
    states, on_disk = journal.load(), journal.on_disk()  # stamped with its source, as a sweep's last write is
    keep_fold(journal.path)  # as the sweep's end does (`load` kept it already, if it is large enough)
    source = None if on_disk is None else manifest_source(on_disk, frame)
    write_manifest(out, build_manifest(frame, states, final=True), source)
    journal.close()
    write_report(out)  # as the sweep's end left it


def timed_command(*args: str) -> dict[str, float]:
    """Wall seconds and peak RSS (MiB) of one `wiro-sweep` process, which must exit 0 (measured
    by `bench.peak`, so that the peak is the command's own, not this process's at the fork)."""
    command = [sys.executable, "-m", "flows", *args]
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with tempfile.NamedTemporaryFile(suffix=".json") as figures:
        done = subprocess.run([sys.executable, "-m", "bench.peak", figures.name, *command], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stdout.decode()[-2000:]}")
        measured: dict[str, float] = json.loads(Path(figures.name).read_text())
    return measured


def measure(rows: int, scratch: Path) -> dict[str, float]:
    """The dry run into an empty OUT and the reopening of a finished one, at `rows` rows."""
    grid = write_grid(scratch / f"grid-{rows}.csv", rows)
    started = time.perf_counter()  # in a process of its own: a child's peak RSS counts its parent's at the fork
    code = f"from pathlib import Path; from bench.scale_plan import finished_out; finished_out(Path({str(grid)!r}), "
    subprocess.run([sys.executable, "-c", code + f"Path({str(scratch / f'done-{rows}')!r}))"], check=True)
    built = time.perf_counter() - started
    dry = timed_command("run", str(grid), "--out", str(scratch / f"empty-{rows}"), "--emulator", "--dry-run")
    again = timed_command("run", str(grid), "--out", str(scratch / f"done-{rows}"), "--emulator")
    report = timed_command("report", str(scratch / f"done-{rows}"))
    journal = (scratch / f"done-{rows}" / "journal.jsonl").stat().st_size
    return {"rows": rows, "dry_run_s": dry["s"], "dry_run_mib": dry["mib"], "reopen_s": again["s"],
            "reopen_mib": again["mib"], "report_s": report["s"], "journal_bytes_per_row": journal / rows,
            "build_s": built}  # fmt: skip


def section(results: list[dict[str, float]], command: str) -> str:
    """The benchmark's section of docs/benchmarks.md."""
    first = results[0]
    lines = [
        HEADING,
        "",
        f"Taken {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`. Each figure is one `wiro-sweep run "
        "GRID --out OUT --emulator` process, wall seconds and peak RSS: **dry run**, `--dry-run` into an "
        "empty OUT; **reopen**, the same grid again on an OUT where every row has finished (nothing to "
        "submit), which keeps the manifest and the report when nothing in them changed; **report**, "
        "`wiro-sweep report OUT` alone on that OUT (it checks its stamp, it does not render). Targets at "
        f"100,000 rows: dry run under 5 s, reopen under 10 s. Prefect: {prefect_used()}.",
        "",
        "| rows | dry run (s) | its peak (MiB) | reopen (s) | its peak (MiB) | report alone (s) |"
        " journal (bytes/row) | per row past the first size: dry run, reopen (ms) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        added = r["rows"] - first["rows"]
        marginal = (f"{1000 * (r['dry_run_s'] - first['dry_run_s']) / added:.3f}, "
                    f"{1000 * (r['reopen_s'] - first['reopen_s']) / added:.3f}") if added else "—"  # fmt: skip
        lines.append(f"| {r['rows']:,.0f} | {r['dry_run_s']:.2f} | {r['dry_run_mib']:.0f} | {r['reopen_s']:.2f} | "
                     f"{r['reopen_mib']:.0f} | {r['report_s']:.2f} | {r['journal_bytes_per_row']:.0f} | "
                     f"{marginal} |")  # fmt: skip
    largest = results[-1]
    if largest["rows"] >= 100_000:
        met = [f"{name.split('_')[0]} {'met' if largest[name] < limit else '**missed**'}"
               for name, limit in TARGETS.items()]  # fmt: skip
        lines += ["", f"At 100,000 rows: {', '.join(met)}."]
    lines += ["", "Every figure holds a fixed start (Python, pandas, the emulator; Prefect's import and its "
              "flow run for the reopen): the last column is what each row past the smallest size adds."]  # fmt: skip
    return "\n".join(lines) + "\n"


def prefect_used() -> str:
    """Which Prefect server the reopening ran against."""
    if os.environ.get("PREFECT_API_URL"):
        return "a running server (`PREFECT_API_URL`)"
    return "a temporary local server the command starts (its start is in the reopen figure)"


def run(size: str) -> list[dict[str, float]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-plan-") as scratch:
        for rows in SIZES[size]:
            print(f"  scale-plan {rows} rows", flush=True)
            results.append(measure(rows, Path(scratch)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 rows only")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: only checks that it runs")
    parser.add_argument("--out", type=Path, help="write the section to this file too")
    args = parser.parse_args()
    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    flag = {"smoke": " --smoke", "quick": " --quick", "full": ""}[size]
    text = section(run(size), f"python -m bench.scale_plan{flag}")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
