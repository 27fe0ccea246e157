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
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.store.journal import JOURNAL, read_events
from flows.store.manifest import read_manifest
from wiro_tasks.emulator import EmulatorServer

MEMORY_LIMIT = 4 << 30  # address space: the command needs far less; reading /dev/zero whole needs more
TIME_LIMIT = 120  # seconds: a FIFO made the old code wait forever


def wiro_sweep(args: list[str], env: dict[str, str], timeout: float = TIME_LIMIT) -> subprocess.CompletedProcess[str]:
    """`python -m flows ARGS` with a time and a memory limit; a command still running at the time
    limit fails the test (it is killed first)."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    try:
        return subprocess.run([sys.executable, "-m", "flows", *args], env=env, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=limit_memory, stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"wiro-sweep {' '.join(args)} still running after {timeout} s (it hangs)") from exc


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
