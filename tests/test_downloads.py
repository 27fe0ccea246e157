"""Downloads from a file host that lies: more bytes than announced, no size and no end, a drip,
silence, and a body that is no video. Through both clients, then through a real sweep.

What must hold: never more bytes written than the API announced (or the cap, when it announced
none), an overall deadline however the bytes come, only an MP4 container counts as a video, and
no file under the destination's name (nor a `.part`) unless it is whole and right.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.engine.rows import records
from flows.store.manifest import read_manifest
from wiro_tasks import (
    AsyncWiroClient,
    ConfigurationError,
    Download,
    DownloadRejectedError,
    DownloadTimeoutError,
    TaskOutput,
    WiroClient,
    check_mp4,
)
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.video import render_mp4

from .conftest import NO_WAIT, EmulatorFactory
from .filehost import FileHost, body, drip, endless, silent

MiB = 1 << 20
VIDEO = render_mp4(width=64, height=48, num_frames=5, fps=16, prompt="a fox", seed="1", label="")


@pytest.fixture
def host() -> Iterator[FileHost]:
    with FileHost() as started:
        yield started


def fetch(kind: str, output: TaskOutput | str, dest: Path, **settings: Any) -> Download:
    """One download through the sync or the async client (neither talks to an API here)."""
    check = settings.pop("check", None)
    if kind == "sync":
        with WiroClient("k", base_url="http://127.0.0.1:9/v1", retry=NO_WAIT, **settings) as client:
            return client.download(output, dest, check=check)

    async def go() -> Download:
        async with AsyncWiroClient("k", base_url="http://127.0.0.1:9/v1", retry=NO_WAIT, **settings) as client:
            return await client.download(output, dest, check=check)

    return asyncio.run(go())


def nothing_left(directory: Path) -> bool:
    return not any(directory.iterdir())


KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


@KINDS
def test_more_bytes_than_announced_end_the_download_at_once(kind: str, host: FileHost, tmp_path: Path) -> None:
    host.routes["/huge"] = endless(200 * MiB)
    with pytest.raises(DownloadRejectedError, match="more than the 5,000 bytes the API announced"):
        fetch(kind, TaskOutput("v", host.url("/huge"), size=5000), tmp_path / "v.mp4")
    assert nothing_left(tmp_path), list(tmp_path.iterdir())
    assert host.requests["/huge"] == 1, "a lying host is not asked again"
    assert host.sent["/huge"] < 32 * MiB, f"{host.sent['/huge']:,} bytes sent: the client read on"


def test_not_one_byte_past_the_announced_size_reaches_the_disk(host: FileHost, tmp_path: Path) -> None:
    """Exact, not sampled: a process whose files cannot grow past the announced size (RLIMIT_FSIZE)
    downloads with both clients. A write past it would fail with EFBIG and end the process."""
    host.routes["/huge"] = endless(64 * MiB)
    script = """
import asyncio, resource, signal, sys
from pathlib import Path
from wiro_tasks import AsyncWiroClient, DownloadRejectedError, TaskOutput, WiroClient
url, dest, limit = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit raises EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
output = TaskOutput("v", url, size=limit)
with WiroClient("k", base_url="http://127.0.0.1:9/v1") as client:
    try:
        client.download(output, dest)
    except DownloadRejectedError as exc:
        print("sync rejected:", exc)
async def other():
    async with AsyncWiroClient("k", base_url="http://127.0.0.1:9/v1") as client:
        try:
            await client.download(output, dest)
        except DownloadRejectedError as exc:
            print("async rejected:", exc)
asyncio.run(other())
"""
    limit = 100_000  # not a multiple of the 64 KiB chunks: the chunk that crosses it is refused whole
    done = subprocess.run([sys.executable, "-c", script, host.url("/huge"), str(tmp_path / "v.mp4"), str(limit)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sync rejected:" in done.stdout, done.stdout
    assert "async rejected:" in done.stdout, done.stdout
    assert nothing_left(tmp_path)


@KINDS
def test_a_declared_length_past_the_limit_is_refused_before_the_body(kind: str, host: FileHost, tmp_path: Path) -> None:
    host.routes["/liar"] = endless(200 * MiB, length=10**9)
    with pytest.raises(DownloadRejectedError, match=r"the 5,000 bytes the API announced \(at least 1,000,000,000\)"):
        fetch(kind, TaskOutput("v", host.url("/liar"), size=5000), tmp_path / "v.mp4")
    assert nothing_left(tmp_path)


@KINDS
def test_with_no_announced_size_the_cap_applies(
    kind: str, host: FileHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host.routes["/huge"] = endless(200 * MiB)
    with pytest.raises(DownloadRejectedError, match="100,000-byte cap for outputs of unannounced size"):
        fetch(kind, host.url("/huge"), tmp_path / "v.mp4", max_download_bytes=100_000)
    monkeypatch.setenv("WIRO_DOWNLOAD_MAX_BYTES", "200000")
    with pytest.raises(DownloadRejectedError, match=r"200,000-byte cap .*\(WIRO_DOWNLOAD_MAX_BYTES\)"):
        fetch(kind, TaskOutput("v", host.url("/huge"), size=0), tmp_path / "v.mp4")
    assert nothing_left(tmp_path)
    assert host.sent["/huge"] < 64 * MiB
    host.routes["/video"] = body(VIDEO, length=None)
    saved = fetch(kind, host.url("/video"), tmp_path / "v.mp4")  # within the cap: kept
    assert saved.size == len(VIDEO)


def test_an_announced_size_past_the_cap_is_refused_without_a_request(host: FileHost, tmp_path: Path) -> None:
    host.routes["/big"] = body(VIDEO)
    with pytest.raises(DownloadRejectedError, match=r"announced 5,000,000 bytes, more than the 1,000,000-byte cap"):
        fetch("async", TaskOutput("v", host.url("/big"), size=5_000_000), tmp_path / "v.mp4", max_download_bytes=10**6)
    assert host.requests["/big"] == 0


@KINDS
@pytest.mark.parametrize("route", ["drip", "silent"])
def test_a_download_has_an_overall_deadline(kind: str, route: str, host: FileHost, tmp_path: Path) -> None:
    """25 bytes over 10 s (each read well within the 30 s read timeout), or no answer at all for
    30 s: both end at the 1.5 s deadline, with nothing kept."""
    host.routes["/slow"] = drip(25, 0.4) if route == "drip" else silent(30)
    started = time.monotonic()
    with pytest.raises(DownloadTimeoutError, match=r"not finished within 1.5 s \(WIRO_DOWNLOAD_TIMEOUT\)"):
        fetch(kind, TaskOutput("v", host.url("/slow"), size=25), tmp_path / "v.mp4", download_timeout=1.5)
    assert time.monotonic() - started < 8, "ended near its deadline, far before the host would have"
    assert nothing_left(tmp_path)


@KINDS
def test_only_an_mp4_container_counts_as_a_video(kind: str, host: FileHost, tmp_path: Path) -> None:
    host.routes["/true"] = body(b"true")
    host.routes["/video"] = body(VIDEO)
    host.routes["/cut"] = body(VIDEO[: len(VIDEO) // 2])
    host.routes["/tail"] = body(VIDEO + b"\0\0\0\x08\x01\x02\x03\x04")  # a box with no type
    dest = tmp_path / "v.mp4"
    cases = {"/true": "it does not start with an ftyp box (it starts with b'true')",
             "/cut": "box at byte", "/tail": "has no type"}  # fmt: skip
    for path, reason in cases.items():
        with pytest.raises(DownloadRejectedError, match=rf"v\.mp4: not an MP4 video: .*{re.escape(reason)}") as caught:
            fetch(kind, host.url(path), dest, check=check_mp4)
        assert nothing_left(tmp_path), (path, caught.value)
    saved = fetch(kind, TaskOutput("v", host.url("/video"), size=len(VIDEO)), dest, check=check_mp4)
    assert dest.read_bytes() == VIDEO
    assert saved.size == len(VIDEO)
    dest.unlink()
    assert fetch(kind, host.url("/true"), dest).size == 4, "without a check, any file is kept (the caller's choice)"


def test_bad_download_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("WIRO_DOWNLOAD_MAX_BYTES", "lots"), ("WIRO_DOWNLOAD_MAX_BYTES", "0"),
                        ("WIRO_DOWNLOAD_TIMEOUT", "-1"), ("WIRO_DOWNLOAD_TIMEOUT", "nan")):  # fmt: skip
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigurationError, match=f"{name} must be") as caught:
            WiroClient("k")
        assert caught.value.setting == name
        monkeypatch.delenv(name)
    with pytest.raises(ConfigurationError, match="download_timeout must be"):
        AsyncWiroClient("k", download_timeout=0)


# Through a sweep: what a user finds in OUT and the manifest.


LIES = {  # prompt -> (path on the host, size the API announces)
    "more than announced": ("/huge", 5000),
    "no size, no end": ("/unannounced", 0),
    "a drip": ("/drip", 25),
    "the word true": ("/true", 4),
}


@pytest.mark.usefixtures("prefect_api")
def test_a_sweep_keeps_only_whole_real_videos_and_says_why_not(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    host: FileHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.orchestrate.flow import sweep

    emulator = make_emulator(preview=True)
    wiro_env(emulator)
    host.routes.update({"/huge": endless(200 * MiB), "/unannounced": endless(200 * MiB), "/drip": drip(25, 0.4),
                        "/true": body(b"true")})  # fmt: skip

    def rewrite(task: dict[str, Any], output: dict[str, Any]) -> None:
        lie = LIES.get(task["parameters"]["prompt"])
        if lie:
            output["url"], output["size"] = host.url(lie[0]), str(lie[1])

    monkeypatch.setenv("WIRO_BASE_URL", host.proxy_api(emulator.root_url, rewrite))
    monkeypatch.setenv("WIRO_SOCKET_URL", "")
    monkeypatch.setenv("WIRO_DOWNLOAD_MAX_BYTES", str(MiB))  # the preview videos are a few kB
    monkeypatch.setenv("WIRO_DOWNLOAD_TIMEOUT", "2")
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"prompt": ["a real fox", *LIES], "numFrames": 9}).to_csv(grid, index=False)
    out = tmp_path / "out"
    run = sweep(grid=[str(grid)], out=str(out), poll_interval=0.05, return_state=True)
    state: Any = asyncio.run(run)  # type: ignore[arg-type]

    assert state.is_failed()
    assert "1 of 5 rows succeeded" in str(state.message)
    rows = {r["prompt"]: r for r in records(read_manifest(out))}
    assert rows["a real fox"]["status"] == "succeeded"
    assert (out / rows["a real fox"]["output_path"]).stat().st_size == rows["a real fox"]["output_bytes"]
    reasons = {
        "more than announced": "more than the 5,000 bytes the API announced",
        "no size, no end": "more than the 1,048,576-byte cap for outputs of unannounced size",
        "a drip": "not finished within 2 s (WIRO_DOWNLOAD_TIMEOUT)",
        "the word true": "not an MP4 video: it does not start with an ftyp box",
    }
    for prompt, reason in reasons.items():
        row = rows[prompt]
        assert row["status"] == "failed", row
        assert reason in row["error"], row["error"]
        assert row["error"].startswith("download failed: "), row["error"]
        assert not row["output_path"], row
        assert row["cost_usd"] > 0, "a paid task: what it cost is kept"
    video = Path(rows["a real fox"]["output_path"])
    assert sorted(p.name for p in (out / "videos").iterdir()) == [video.with_suffix(".jpg").name, video.name], (
        "only the real video (and its poster) in OUT/videos"
    )
    assert host.sent["/huge"] < 32 * MiB
    assert host.sent["/unannounced"] < 32 * MiB
    assert emulator.account.stats()["tasks"] == 5
