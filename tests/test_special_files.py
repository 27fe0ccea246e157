"""Special and bad files where the sweep reads (issue 18): a FIFO, a device, a directory, a file where a
directory belongs, zone-less times, and manifest cells that are not what their column holds.

Each is met as a user meets it, through `wiro-sweep` itself, in a process of its own with a time
limit (and, where the old code filled memory, a memory limit), so a regression fails instead of
hanging or swapping the machine: exit 2, one line naming the file and the rule, no traceback, and
nothing paid for or changed on disk.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from flows.cli import main
from flows.store.journal import JOURNAL, read_events
from flows.store.manifest import MANIFEST_PARQUET, read_manifest
from wiro_tasks.emulator import EmulatorServer

from .nights import Row, night

MEMORY_LIMIT = 4 << 30  # address space: the command needs far less; reading /dev/zero whole needs more
TIME_LIMIT = 120  # seconds: a FIFO made the old code wait forever
FOX, BOAT = "A fox in the snow", "A boat on a lake at dawn"


def wiro_sweep(args: list[str], env: dict[str, str], timeout: float = TIME_LIMIT) -> subprocess.CompletedProcess[str]:
    """`python -m flows ARGS` with a time and a memory limit; a command still running at the time
    limit fails the test (it is killed first)."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    command = [sys.executable, "-m", "flows", *args]
    pipe = subprocess.PIPE
    with subprocess.Popen(command, env=env, stdout=pipe, stderr=pipe, text=True, stdin=subprocess.DEVNULL,
                          preexec_fn=limit_memory, start_new_session=True) as process:  # fmt: skip
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # and whatever it started (a local Prefect server)
            process.communicate()
            raise AssertionError(f"wiro-sweep {' '.join(args)} still running after {timeout} s (it hangs)") from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def no_prefect_env(emulator: EmulatorServer) -> dict[str, str]:
    """The emulator's settings and no Prefect API: these refusals come before Prefect is needed."""
    env = {**os.environ, **emulator.env()}
    env.pop("PREFECT_API_URL", None)
    return env


def one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The command exited 2 with one `error:` line holding `words`, and no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def grid(tmp_path: Path) -> Path:
    path = tmp_path / "grid.csv"
    path.write_text("prompt\na fox in the snow\n")
    return path


# ------------------------------------------------------------------ the journal


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: p.symlink_to("/dev/zero"), "a character device (a link to /dev/zero)"),
        (lambda p: p.symlink_to("/dev/full"), "a character device (a link to /dev/full)"),
        (os.mkfifo, "a FIFO (named pipe)"),
        (lambda p: p.mkdir(), "a directory"),
    ],
    ids=["dev-zero", "dev-full", "fifo", "directory"],
)
def test_a_journal_that_is_no_regular_file_is_one_line_and_exit_2(
    emulator: EmulatorServer, tmp_path: Path, make: Callable[[Path], None], kind: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    make(out / JOURNAL)
    result = wiro_sweep(["run", str(grid(tmp_path)), "--out", str(out)], no_prefect_env(emulator))
    one_error_line(result, str(out / JOURNAL), f"is {kind}; a journal must be a regular file")
    assert "run" not in emulator.account.stats()["counters"], "nothing was paid for"
    assert sorted(p.name for p in out.iterdir()) == [JOURNAL], "nothing else was written under OUT"


# ------------------------------------------------------------------ OUT/videos


def test_out_videos_as_a_file_is_one_line_and_exit_2_before_any_run_request(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "videos").write_text("not a folder")
    result = wiro_sweep(["run", str(grid(tmp_path)), "--out", str(out)], no_prefect_env(emulator))
    one_error_line(result, f"--out: {out / 'videos'} is not a directory")
    assert "run" not in emulator.account.stats()["counters"], "nothing was paid for"
    assert (out / "videos").read_text() == "not a folder"
    assert sorted(p.name for p in out.iterdir()) == ["videos"], "nothing else was written under OUT"


# ------------------------------------------------------------------ zone-less times in the journal


def test_a_rerun_reads_zone_less_journal_times_as_utc_and_pays_once(
    emulator: EmulatorServer, subprocess_env: Callable[[EmulatorServer], dict[str, str]], tmp_path: Path
) -> None:
    """A row whose Run answer was lost (only its `intent` is on record), its times written without a
    zone: the rerun finds its task instead of crashing ("can't subtract offset-naive...")."""
    out, env = tmp_path / "out", subprocess_env(emulator)
    first = wiro_sweep(["run", str(grid(tmp_path)), "--out", str(out)], env)
    assert first.returncode == 0, first.stderr[-3000:]
    [intent] = [e for e in read_events(out / JOURNAL) if e["event"] == "intent"]
    naive = {**intent, "at": intent["at"].removesuffix("Z"), "server_at": "2026-01-01T00:00:00"}
    (out / JOURNAL).write_text(json.dumps(naive) + "\n")
    rerun = wiro_sweep(["run", str(grid(tmp_path)), "--out", str(out)], env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr
    assert emulator.account.stats()["counters"]["run"] == 1, "the lost answer's task was found, not paid again"
    assert [e["event"] for e in read_events(out / JOURNAL)][:2] == ["intent", "adopted"]
    assert read_manifest(out)["status"].tolist() == ["succeeded"]


# ------------------------------------------------------------------ compare and report


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two finished nights of the same two rows; the fox's video differs, so compare decodes it."""
    root = tmp_path_factory.mktemp("nights")
    night(root / "a", [Row(FOX), Row(BOAT)])
    night(root / "b", [Row(FOX, variant="noise:2"), Row(BOAT)])
    return root / "a", root / "b"


def copy_out(out: Path, to: Path) -> Path:
    shutil.copytree(out, to)
    return to


def fifo_videos(out: Path) -> list[Path]:
    """Every video of OUT replaced by a FIFO (with a poster older than it, so the report makes one)."""
    videos = sorted((out / "videos").glob("*.mp4"))
    for video in videos:
        video.unlink()
        os.mkfifo(video)
        poster = video.with_suffix(".jpg")
        poster.write_bytes(b"old")
        os.utime(poster, (0, 0))
    return videos


def test_compare_refuses_a_fifo_at_a_video_path_with_one_line_and_exit_2(
    nights: tuple[Path, Path], tmp_path: Path
) -> None:
    baseline, current = nights
    current = copy_out(current, tmp_path / "current")
    fox = next(v for v in fifo_videos(current) if v.name in {p.name for p in (baseline / "videos").glob("*.mp4")})
    result = wiro_sweep(["compare", str(baseline), str(current)], dict(os.environ))
    one_error_line(result, str(fox), "is a FIFO (named pipe); a video must be a regular file")
    assert stat.S_ISFIFO(fox.stat().st_mode), "the FIFO is left as it was"


def test_report_does_not_hang_on_a_fifo_at_a_video_path(nights: tuple[Path, Path], tmp_path: Path) -> None:
    out = copy_out(nights[0], tmp_path / "out")
    videos = fifo_videos(out)
    result = wiro_sweep(["report", str(out)], dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for video in videos:
        assert f"no poster for {video}" in result.stderr
        assert "is a FIFO (named pipe)" in result.stderr
        assert video.with_suffix(".jpg").read_bytes() == b"old", "nothing was written in the poster's place"
    assert (out / "report.html").is_file(), "the other cells still make a page"


def with_cells(out: Path, to: Path, column: str, value: object) -> Path:
    """A copy of OUT whose manifest holds `value` in every cell of `column` (as another tool might write it)."""
    copy = copy_out(out, to)
    manifest = pd.read_parquet(copy / MANIFEST_PARQUET)
    manifest[column] = pd.Series([value] * len(manifest), dtype=object)
    manifest.to_parquet(copy / MANIFEST_PARQUET)
    return copy


BAD_CELLS = [None, "abc", "1e400", "soon", float("nan"), float("inf"), "-1"]


@pytest.mark.parametrize("value", BAD_CELLS, ids=repr)
def test_a_cost_that_is_no_amount_of_money_is_refused_by_compare_and_report(
    nights: tuple[Path, Path], tmp_path: Path, value: object
) -> None:
    """Money is exact or refused: a bill or a cost ratio that left a row out would be a wrong number."""
    baseline = nights[0]
    current = with_cells(nights[1], tmp_path / "current", "cost_usd", value)
    before = (current / MANIFEST_PARQUET).read_bytes()
    for args in (["compare", str(baseline), str(current)], ["report", str(current)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert result.output.count("\n") == 1, result.output
        assert result.output.startswith("error: "), result.output
        assert f"{current / MANIFEST_PARQUET}, row 1, field cost_usd: not an amount of money" in result.output
    assert (current / MANIFEST_PARQUET).read_bytes() == before
    assert not [p.name for p in current.iterdir() if p.name.startswith(("compare", "report"))], "nothing written"


@pytest.mark.parametrize("column", ["elapsed_seconds", "seed", "finished_at", "submitted_at", "steps", "scale"])
@pytest.mark.parametrize("value", BAD_CELLS, ids=repr)
def test_other_unreadable_cells_are_shown_as_unknown(
    nights: tuple[Path, Path], tmp_path: Path, column: str, value: object
) -> None:
    """An elapsed time, a timestamp or a number only describes a row: unreadable, it is unknown (never
    compared); a seed is text as it is. Compare and report go on and judge the rest."""
    baseline = nights[0]
    current = with_cells(nights[1], tmp_path / "current", column, value)
    result = CliRunner().invoke(main, ["compare", str(baseline), str(current)])
    assert result.exit_code == 0, result.output
    assert "elapsed p50 3.0 s -> " + ("n/a" if column == "elapsed_seconds" else "3.0 s") in result.output
    result = CliRunner().invoke(main, ["report", str(current)])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(current)
    if column == "seed":
        assert manifest["seed"].tolist() == [None if value is None or value != value else str(value)] * 2
    else:
        assert manifest[column].isna().all() or (value == "-1" and column in ("steps", "scale"))


def test_zone_less_manifest_times_are_read_as_utc(nights: tuple[Path, Path], tmp_path: Path) -> None:
    current = with_cells(nights[1], tmp_path / "current", "finished_at", "2026-01-02T03:04:05")
    assert read_manifest(current)["finished_at"].tolist() == [pd.Timestamp("2026-01-02T03:04:05Z")] * 2
    result = CliRunner().invoke(main, ["report", str(current)])
    assert result.exit_code == 0, result.output
    assert "last finished 2026-01-02 03:04 UTC" in (current / "report.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------ images


def test_a_fifo_in_a_thumbnails_place_is_no_thumbnail_and_does_not_hang(tmp_path: Path) -> None:
    """The report reads each start image's thumbnail (OUT/thumbs/<sha256>.jpg) for its size."""
    fifo = tmp_path / "thumbs" / f"{'a' * 64}.jpg"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    code = f"import pathlib, flows.store.thumbnails as t; print(t.thumbnail_size(pathlib.Path({str(fifo)!r})))"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIME_LIMIT)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("reading a FIFO thumbnail hangs") from exc
    assert (result.returncode, result.stdout) == (0, "None\n"), result.stderr[-2000:]


# ------------------------------------------------------------------ the shard book


def test_a_shard_book_that_is_a_fifo_is_one_line_and_exit_2(emulator: EmulatorServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "shards.json")
    result = wiro_sweep(["run", str(grid(tmp_path)), "--out", str(out)], no_prefect_env(emulator))
    one_error_line(result, str(out / "shards.json"), "is a FIFO (named pipe); a shard book must be a regular file")
    assert "run" not in emulator.account.stats()["counters"], "nothing was paid for"
    assert sorted(p.name for p in out.iterdir()) == ["shards.json"], "nothing else was written under OUT"


# ------------------------------------------------------------------ grid files


@pytest.mark.parametrize(
    ("make", "kind"),
    [(os.mkfifo, "a FIFO (named pipe)"), (lambda p: p.symlink_to("/dev/zero"), "a character device")],
    ids=["fifo", "dev-zero"],
)
def test_a_grid_file_that_is_no_regular_file_is_named_so(
    emulator: EmulatorServer, tmp_path: Path, make: Callable[[Path], None], kind: str
) -> None:
    """It read as "file is empty" (a FIFO or a device has no size), which sent the user looking for text."""
    path = tmp_path / "grid.csv"
    make(path)
    result = wiro_sweep(["run", str(path), "--out", str(tmp_path / "out")], no_prefect_env(emulator))
    one_error_line(result, str(path), f"is {kind}")
    assert "a grid file must be a regular file" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_report_is_written_over_a_fifo_in_its_place_without_hanging(
    nights: tuple[Path, Path], tmp_path: Path
) -> None:
    """Whether the page is current is read from its last line: a FIFO there is not waited on."""
    out = copy_out(nights[0], tmp_path / "out")
    (out / "report.html").unlink(missing_ok=True)
    os.mkfifo(out / "report.html")
    result = wiro_sweep(["report", str(out)], dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "report.html").is_file()
    assert "wiro-sweep page" in (out / "report.html").read_text()
