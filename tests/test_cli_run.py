"""`wiro-sweep run` as a user meets it: bad input, dry runs, SIGKILL and resume, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from flows.cli import main
from flows.engine.rows import records, run_inputs
from flows.grid import load_grid
from flows.orchestrate.credentials import ConfigError, load_credentials
from flows.orchestrate.flow import sweep
from flows.store.journal import Journal, read_events
from flows.store.manifest import read_manifest
from wiro_tasks import TEXT_TO_VIDEO, model_spec
from wiro_tasks.emulator import EmulatorServer

from .conftest import EmulatorFactory
from .processes import finish, start, wait_until

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    """(arguments, words the message must hold): each is exit 2 with no Run request."""
    good = write(tmp / "good.csv", "prompt\na fox\n")
    pq.write_table(pa.table({"prompt": ["a"], "steps": [[10, 500]]}), tmp / "steps.parquet")
    return [
        ([str(write(tmp / "unknown.csv", "prompt,frames\na,81\n"))], "unknown column 'frames'"),
        ([str(write(tmp / "frames.csv", "prompt,numFrames\na,81\nb,80\n"))], "row 2, field numFrames: must be 4n+1"),
        ([str(write(tmp / "empty.csv", ""))], "file is empty"),
        ([str(write(tmp / "header.csv", "prompt,seed\n"))], "header but no rows"),
        ([str(write(tmp / "ragged.csv", "prompt,seed\na,1,2\n"))], "has 3 fields"),
        ([str(write(tmp / "latin1.csv", b"prompt\ncaf\xe9\n"))], "is not UTF-8"),
        ([str(write(tmp / "ctrl.csv", "prompt\nbell\x07here\n"))], "control character U+0007"),
        ([str(tmp / "steps.parquet")], "row 1, field steps: must be between 1 and 100"),
        ([str(write(tmp / "junk.parquet", b"PAR1junk"))], "not a readable Parquet file"),
        ([str(tmp / "missing.csv")], "no such file"),
        ([str(good), "--axis", "seed=1,,2"], "empty value"),
        ([str(good), "--axis", "size=1024*1024"], "field size: must be one of 832*480, 480*832"),
        (
            [str(good), "--axis", "seed=" + ",".join(map(str, range(50))), "--max-combinations", "10"],
            "expands to 50 combinations",
        ),
        ([str(good), "--budget", "-3"], "must be more than 0"),
        ([str(good), "--max-concurrency", "0"], "--max-concurrency"),
        (  # every bad row at once, each on its own line
            [str(write(tmp / "two.csv", "prompt,numFrames,steps\na,80,20\nb,81,0\n"))],
            "2 problems in the grid:\n  " + str(tmp / "two.csv") + ", row 1, field numFrames: must be 4n+1",
        ),
        ([str(good), "--axis", "sed=1,2"], "unknown input 'sed' (did you mean seed?)"),
    ]


def test_bad_input_exits_2_and_costs_no_run_request(
    emulator: EmulatorServer, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    wiro_env(emulator)
    out = tmp_path / "out"
    for arguments, words in bad_inputs(tmp_path):
        result = CliRunner().invoke(main, ["run", *arguments, "--out", str(out)])
        assert result.exit_code == 2, (arguments, result.output)
        assert words in result.output, (arguments, result.output)
    assert "run" not in emulator.account.stats()["counters"]
    assert not out.exists(), "bad input never touches OUT"


def test_missing_credentials_exit_2(tmp_path: Path) -> None:
    good = write(tmp_path / "good.csv", "prompt\na fox\n")
    result = CliRunner().invoke(main, ["run", str(good), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "WIRO_API_KEY" in result.output


BAD_CONFIGURATIONS = [
    ({"WIRO_BASE_URL": "ftp://example.com/v1"}, "WIRO_BASE_URL) must start with http:// or https://"),
    ({"WIRO_BASE_URL": "http:///v1"}, "WIRO_BASE_URL) has no host"),
    ({"WIRO_API_KEY": ""}, "set WIRO_API_KEY"),
    ({"WIRO_API_KEY": "key with spaces "}, "WIRO_API_KEY) holds whitespace"),
    ({"WIRO_API_SECRET": "s\u00e9cret"}, "WIRO_API_SECRET) holds whitespace or non-ASCII"),
    ({"WIRO_SOCKET_URL": "https://127.0.0.1:9/socket/v1"}, "WIRO_SOCKET_URL) must start with ws:// or wss://"),
]


@pytest.mark.parametrize(("settings", "words"), BAD_CONFIGURATIONS)
def test_bad_configuration_exits_2_before_prefect_or_any_cost(
    emulator: EmulatorServer,
    wiro_env: Callable[[EmulatorServer], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    settings: dict[str, str],
    words: str,
) -> None:
    wiro_env(emulator)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    good = write(tmp_path / "good.csv", "prompt\na fox\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(good), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert result.output.startswith("error: ")
    assert result.output.count("\n") == 1, "one clean line"
    assert not out.exists(), "nothing under OUT, not even a journal"
    assert "run" not in emulator.account.stats()["counters"]


@pytest.mark.parametrize(("settings", "words"), [c for c in BAD_CONFIGURATIONS if c[0].get("WIRO_API_KEY") != ""])
def test_load_credentials_checks_every_setting(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], words: str
) -> None:
    """What a flow run (from a deployment, without the CLI's check) calls before any row."""
    monkeypatch.setenv("WIRO_API_KEY", "k")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_credentials()
    assert caught.value.exit_code == 2
    assert words in str(caught.value)


def test_the_flow_stops_on_bad_configuration_before_any_row(
    prefect_api: str,
    emulator: EmulatorServer,
    wiro_env: Callable[[EmulatorServer], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Past the CLI's own check (as in a deployment's run), the flow exits 2 before the journal."""
    from flows.cli.console import run_with_progress
    from flows.engine.settings import SweepParams

    wiro_env(emulator)
    monkeypatch.setenv("WIRO_BASE_URL", "ftp://example.com/v1")
    good = write(tmp_path / "good.csv", "prompt\na fox\n")
    out = tmp_path / "out"
    assert run_with_progress(SweepParams(grid=[str(good)], out=str(out)), load_grid([str(good)])) == 2
    assert not out.exists()
    assert "run" not in emulator.account.stats()["counters"]


def test_dry_run_counts_and_estimates(tmp_path: Path) -> None:
    grid = write(tmp_path / "g.csv", "prompt,numFrames\na,121\nb,61\n")
    result = CliRunner().invoke(
        main, ["run", str(grid), "--out", str(tmp_path / "out"), "--axis", "seed=1,2,3", "--dry-run",
               "--budget", "0.5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "6 combinations; 0 already done" in result.output
    assert "Price: not asked (no WIRO_API_KEY); estimated at $0.10 per default-sized task" in result.output
    # 3 x $0.10 for 121 frames + 3 x $0.10 x 61/121 for 61 frames
    assert "Estimated cost of the 6 to submit: $0.4512" in result.output
    assert "Budget $0.5 ($0.0000 billed in OUT so far): all 6 fit." in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("prefect_api")
def test_dry_run_prices_from_tool_detail_as_the_real_run_bills(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """The dry run asks Wiro for the price (a fixed $0.01 tier here), says where it came from, and
    counts what the budget lets through exactly as the sweep then does. Before, it priced every
    row at the --estimate-usd prior: "about 2 of 30" for a sweep that then ran all 30."""
    tier = {"inputs": {}, "price": 0.01, "priceMethod": "cpr"}
    emulator = make_emulator(preview=True, dynamic_price=(tier,))
    wiro_env(emulator)
    grid = write(tmp_path / "g.csv", "prompt,numFrames\n" + "".join(f"scene {n},9\n" for n in range(8)))
    out = tmp_path / "out"
    dry = CliRunner().invoke(main, ["run", str(grid), "--out", str(out), "--budget", "0.055", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Price: dynamicprice tier {} (cpr): $0.010000 a run." in dry.output
    assert "Estimated cost of the 8 to submit: $0.0800." in dry.output
    assert "about 5 of 8 fit" in dry.output
    assert "run" not in emulator.account.stats()["counters"], "a dry run submits nothing"
    run = sweep(grid=[str(grid)], out=str(out), budget=0.055, poll_interval=0.05, return_state=True)
    state: Any = asyncio.run(run)  # type: ignore[arg-type]
    assert state.is_failed()
    assert Counter(read_manifest(out)["status"]) == {"succeeded": 5, "skipped": 3}
    assert Decimal(emulator.account.stats()["billed"]) == Decimal("0.05")
    again = CliRunner().invoke(main, ["run", str(grid), "--out", str(out), "--budget", "0.055", "--dry-run"])
    assert "5 already done" in again.output
    assert "($0.0500 billed in OUT so far): about 0 of 3 fit" in again.output


def test_dry_run_counts_failed_rows_only_with_retry_failed(tmp_path: Path) -> None:
    grid = write(tmp_path / "g.csv", "prompt\na\nb\n")
    out = tmp_path / "out"
    failed, succeeded = load_grid([str(grid)])["row_id"]
    journal = Journal(out)
    journal.append("finished", failed, task_id="1", status="failed", cost="0")
    journal.append("finished", succeeded, task_id="2", status="succeeded", cost="0.01")
    journal.append("downloaded", succeeded, path="videos/b.mp4", sha256="0" * 64, bytes=1)
    journal.close()
    plain = CliRunner().invoke(main, ["run", str(grid), "--out", str(out), "--dry-run"])
    assert "2 combinations; 2 already done" in plain.output, plain.output
    assert "(1 failed or timed out: --retry-failed submits them again)" in plain.output
    again = CliRunner().invoke(main, ["run", str(grid), "--out", str(out), "--dry-run", "--retry-failed"])
    assert "2 combinations; 1 already done" in again.output, again.output


def test_dry_run_with_nothing_left_says_so_instead_of_budgeting_zero_rows(tmp_path: Path) -> None:
    grid = write(tmp_path / "g.csv", "prompt\na\n")
    out = tmp_path / "out"
    [done] = load_grid([str(grid)])["row_id"]
    journal = Journal(out)
    journal.append("finished", done, task_id="1", status="succeeded", cost="0.01")
    journal.append("downloaded", done, path="videos/a.mp4", sha256="0" * 64, bytes=1)
    journal.close()
    result = CliRunner().invoke(main, ["run", str(grid), "--out", str(out), "--dry-run", "--budget", "0.5"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"1 combination; 1 already done in {out}, 0 to submit.",
        "Nothing to submit: every combination has finished.",
        "Nothing was submitted (--dry-run).",
    ]


def test_sigkill_at_any_moment_then_resume_pays_once(
    make_emulator: EmulatorFactory, subprocess_env: Callable[[EmulatorServer], dict[str, str]], tmp_path: Path
) -> None:
    emulator = make_emulator(queue_seconds=0.1, task_seconds=1.5)
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": [f"scene {n}" for n in range(8)], "numFrames": 9}).to_csv(grid, index=False)
    out, log = tmp_path / "out", tmp_path / "log.txt"
    args = [str(grid), "--out", str(out), "--max-concurrency", "3", "--poll-interval", "0.1"]
    env = subprocess_env(emulator)
    stats = emulator.account.stats

    # 1: killed while tasks run.
    first = start(args, env, log)
    wait_until(lambda: stats()["tasks"] >= 3)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    # 2: killed between sending a Run request and reading its answer.
    emulator.account.faults = emulator.account.faults.updated({"run_script": ["slow"], "slow_seconds": 1.0})
    runs_before = stats()["counters"]["run"]
    second = start(args, env, log)
    wait_until(lambda: stats()["counters"]["run"] > runs_before)
    os.killpg(second.pid, signal.SIGKILL)
    second.wait()
    assert stats()["counters"]["fault_slow"] == 1, "the server made that task; its answer was never read"

    # 3: runs to the end.
    third = start(args, env, log)
    assert finish(third, log, 120) == 0, log.read_text()
    manifest = read_manifest(out)
    assert (manifest["status"] == "succeeded").all()
    per_prompt = Counter(t["prompt"] for t in emulator.account.intervals())
    assert per_prompt == Counter({f"scene {n}": 1 for n in range(8)}), "one Wiro task per row, never two"
    events = [e["event"] for e in read_events(out / "journal.jsonl")]
    assert "adopted" in events, "the task whose answer was lost was found and adopted"
    assert all(p.stat().st_size > 0 for p in (out / "videos").iterdir())
    assert not list((out / "videos").glob("*.part"))


def test_ctrl_c_stops_the_running_wiro_tasks(
    make_emulator: EmulatorFactory, subprocess_env: Callable[[EmulatorServer], dict[str, str]], tmp_path: Path
) -> None:
    emulator = make_emulator(queue_seconds=0.05)
    grid = write(tmp_path / "g.csv", "prompt\nlong one [emulator:hang]\nlong two [emulator:hang]\n")
    out, log = tmp_path / "out", tmp_path / "log.txt"
    process = start([str(grid), "--out", str(out), "--poll-interval", "0.1"], subprocess_env(emulator), log)
    wait_until(lambda: emulator.account.stats()["tasks"] == 2)
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGINT)
    assert finish(process, log, 60) == 130, log.read_text()
    assert emulator.account.stats()["statuses"] == {"task_cancel": 2}
    finished = [e for e in read_events(out / "journal.jsonl") if e["event"] == "finished"]
    assert sorted(e["status"] for e in finished) == ["cancelled", "cancelled"]
    assert json.dumps(finished)  # plain data


def test_ctrl_c_with_no_prefect_api_stops_every_task_even_one_whose_run_answer_is_in_flight(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    """A terminal with no Prefect server configured: the sweep runs its own, which Ctrl-C must not
    kill (the run would hang on it while its tasks bill on). The Run request in flight at the
    interrupt created a task too: it is found in Task/List and stopped with the other."""
    emulator = make_emulator(queue_seconds=0.05)
    emulator.account.faults = emulator.account.faults.updated({"run_script": ["ok", "slow"], "slow_seconds": 60.0})
    grid = write(tmp_path / "g.csv", "prompt\nlong one [emulator:hang]\nlong two [emulator:hang]\n")
    out, log = tmp_path / "out", tmp_path / "log.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(emulator.env(), PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_LOGGING_LEVEL="WARNING")
    process = start([str(grid), "--out", str(out), "--poll-interval", "0.1"], env, log)
    wait_until(lambda: emulator.account.stats()["tasks"] == 2, seconds=240)  # after the server starts
    time.sleep(0.5)
    assert emulator.account.stats()["counters"].get("fault_slow") == 1, "one Run answer is still held back"
    os.killpg(process.pid, signal.SIGINT)
    assert finish(process, log, 90) == 130, log.read_text()
    said = log.read_text()
    for noise in ("Crash detected", "Finished in state", "Error logging to API"):
        assert noise not in said, f"one friendly block, without Prefect's engine lines: {said[-2000:]}"
    assert said.rstrip().endswith("Rerun the same command to resume.")
    assert emulator.account.stats()["statuses"] == {"task_cancel": 2}, "neither task runs on"
    events = read_events(out / "journal.jsonl")
    assert [e["event"] for e in events].count("adopted") == 1, "the unanswered Run's task was found"
    manifest = read_manifest(out)
    assert sorted(manifest["status"]) == ["cancelled", "cancelled"]
    assert (out / "report.html").read_text().count('data-status="cancelled"') == 2, "the report says so too"


def test_a_lost_answers_task_is_adopted_past_short_list_pages(
    make_emulator: EmulatorFactory, subprocess_env: Callable[[EmulatorServer], dict[str, str]], tmp_path: Path
) -> None:
    """A server that caps Task/List pages (50 here, whatever the scan asks) must not end the scan
    early: the task of a Run whose answer was lost, 61st newest, is adopted and never paid twice."""
    emulator = make_emulator(list_page_cap=50, concurrency_limit=1000, preview=True)
    grid = write(tmp_path / "g.csv", "prompt,numFrames\nthe one whose answer was lost,5\n")
    out, log = tmp_path / "out", tmp_path / "log.txt"
    [row] = records(load_grid([str(grid)]))
    journal = Journal(out)  # the process died between its intent and the Run answer
    journal.append("intent", row["row_id"])
    journal.close()
    spec = model_spec(TEXT_TO_VIDEO)
    lost = emulator.account.create(TEXT_TO_VIDEO, spec.validate(run_inputs(row)))
    for n in range(60):  # newer tasks of the account push it to the second capped page
        emulator.account.create(TEXT_TO_VIDEO, spec.validate({"prompt": f"someone else's {n} [emulator:hang]"}))

    process = start([str(grid), "--out", str(out), "--poll-interval", "0.1"], subprocess_env(emulator), log)
    assert finish(process, log, 120) == 0, log.read_text()
    assert emulator.account.stats()["tasks"] == 61, "no second task for the row"
    assert "run" not in emulator.account.stats()["counters"]
    adopted = [e for e in read_events(out / "journal.jsonl") if e["event"] == "adopted"]
    assert [e["task_id"] for e in adopted] == [str(lost.id)]
    assert read_manifest(out)["status"].tolist() == ["succeeded"]
