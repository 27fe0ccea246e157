"""`wiro-sweep serve`: OUT folders over real HTTP (uvicorn on loopback), read-only, nothing else."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner

from flows.cli import main
from flows.view.serve import REPORT_URL_ENV, ReportServer, ReportURLError, link, report_base, trusted_hosts

VIDEO = bytes(range(256)) * 40  # 10,240 bytes: enough to ask for parts of


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """runs/ holding one OUT as a sweep leaves it, and secrets beside it that must stay unserved."""
    out = tmp_path / "runs" / "demo-out"
    (out / "videos").mkdir(parents=True)
    (out / "report.html").write_text("<!doctype html><title>report</title>")
    (out / "manifest.csv").write_text("row_id,status\nabc,succeeded\n")
    (out / "manifest.parquet").write_bytes(b"PAR1...PAR1")
    (out / "videos" / "fox.mp4").write_bytes(VIDEO)
    (out / "videos" / "fox.jpg").write_bytes(b"\xff\xd8\xff poster")
    (out / "compare").mkdir()
    (out / "compare" / "abc.png").write_bytes(b"\x89PNG frame strip")
    (out / "journal.jsonl").write_text('{"event": "intent"}\n')
    (out / ".lock").write_text("")
    (out / "videos" / ".fox.mp4.123.part").write_bytes(b"partial")
    (tmp_path / "secret.html").write_text("outside the runs")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "report.html").write_text("another folder's report")
    (out / "videos" / "escape.mp4").symlink_to(tmp_path / "secret.html")
    (out / "linked").symlink_to(tmp_path / "elsewhere")
    (out / "videos" / "alias.mp4").symlink_to(out / "videos" / "fox.mp4")
    return tmp_path / "runs"


@pytest.fixture
def server(runs: Path) -> Iterator[ReportServer]:
    with ReportServer([runs]) as running:
        yield running


def raw_get(server: ReportServer, path: str, method: str = "GET") -> tuple[int, bytes]:
    """One request with the path sent byte for byte, as a hostile client would (no normalising)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_it_serves_the_report_manifest_videos_and_posters_with_ranges(server: ReportServer, runs: Path) -> None:
    out = runs / "demo-out"
    base = server.url + str(out)
    with httpx.Client() as client:
        report = client.get(f"{base}/report.html")
        assert (report.status_code, report.headers["content-type"]) == (200, "text/html; charset=utf-8")
        assert report.text == (out / "report.html").read_text()
        assert client.get(f"{base}/manifest.csv").text.startswith("row_id,status")
        assert client.get(f"{base}/manifest.parquet").content == b"PAR1...PAR1"
        assert client.get(f"{base}/videos/fox.jpg").headers["content-type"] == "image/jpeg"
        strip = client.get(f"{base}/compare/abc.png")  # compare.html's frame strip of a changed row
        assert (strip.status_code, strip.headers["content-type"]) == (200, "image/png")
        whole = client.get(f"{base}/videos/fox.mp4")
        assert (whole.content, whole.headers["accept-ranges"], whole.headers["content-type"]) == (
            VIDEO, "bytes", "video/mp4")  # fmt: skip
        part = client.get(f"{base}/videos/fox.mp4", headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 1000-1999/{len(VIDEO)}"
        assert part.content == VIDEO[1000:2000], "a video seeks: the bytes asked for, exactly"
        tail = client.get(f"{base}/videos/fox.mp4", headers={"Range": "bytes=-100"})
        assert tail.content == VIDEO[-100:]
        assert client.get(f"{base}/videos/fox.mp4", headers={"Range": "bytes=99999-"}).status_code == 416
        assert client.head(f"{base}/videos/fox.mp4").headers["content-length"] == str(len(VIDEO))
        assert client.get(f"{base}/videos/alias.mp4").content == VIDEO, "a link that stays inside is fine"
        folder = client.get(f"{base}/", follow_redirects=False)
        assert (folder.status_code, folder.headers["location"]) == (307, f"{out}/report.html")
        listing = client.get(server.url + "/")
        assert f'href="{out}/report.html"' in listing.text, "the index links every OUT's report"


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "{runs}/../secret.html",
        "{runs}/demo-out/../../secret.html",
        "{runs}/demo-out/%2e%2e/%2e%2e/secret.html",
        "{runs}/demo-out/%2E%2E%2F%2E%2E%2Fsecret.html",
        "{runs}/demo-out/%252e%252e/%252e%252e/secret.html",
        "{runs}/demo-out/videos/escape.mp4",  # a symlink out of the folder
        "{runs}/demo-out/linked/report.html",  # a symlinked directory out of it
        "{runs}/demo-out/journal.jsonl",  # not a report, manifest, video or poster
        "{runs}/demo-out/.lock",
        "{runs}/demo-out/videos/.fox.mp4.123.part",
        "{runs}/demo-out/report.html%00.mp4",
        "{runs}",  # the served folder itself has no report
        "//etc/passwd",
        "/{runs}/demo-out/..%5c..%5csecret.html",
    ],
)
def test_nothing_outside_the_given_folders_is_served(server: ReportServer, runs: Path, path: str) -> None:
    status, body = raw_get(server, path.format(runs=runs))
    assert status == 404, (path, body)
    assert b"outside the runs" not in body
    assert b"another folder" not in body


def test_it_is_read_only(server: ReportServer, runs: Path) -> None:
    target = f"{runs}/demo-out/report.html"
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert raw_get(server, target, method)[0] == 405, method
    assert (runs / "demo-out" / "report.html").read_text().startswith("<!doctype html>")


def test_the_command_binds_to_loopback_by_default(runs: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "flows", "serve", str(runs), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A"]  # fmt: skip
        assert f"0100007F:{port:04X}" in listening, "listening on 127.0.0.1 ..."
        assert f"00000000:{port:04X}" not in listening, "... and not on every interface"
        rebound = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": f"evil.example:{port}"}, timeout=5)
        assert rebound.status_code == 400, "... and answers only its own names"
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert f"at http://127.0.0.1:{port}/ (read-only" in output
    assert f"{REPORT_URL_ENV}=http://127.0.0.1:{port}" in output
    assert "Answering requests addressed to 127.0.0.1, [::1], localhost (others get 400" in output


def test_the_command_refuses_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "is not a directory" in result.output


def test_the_report_url_setting_makes_links_to_the_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "my runs" / "demo-out"
    monkeypatch.delenv(REPORT_URL_ENV, raising=False)
    assert link(out / "report.html") == (out / "report.html").as_uri(), "unset: a file:// link as before"
    monkeypatch.setenv(REPORT_URL_ENV, "http://reports.example:4201/")
    assert link(out / "report.html") == f"http://reports.example:4201{tmp_path}/my%20runs/demo-out/report.html"
    for bad in ("reports.example:4201", "ftp://x", "http://", "http://x/?a=1"):
        with pytest.raises(ReportURLError, match=REPORT_URL_ENV):
            report_base(bad)


def test_a_bad_report_url_stops_the_run_before_anything_is_sent(tmp_path: Path) -> None:
    grid = tmp_path / "g.csv"
    grid.write_text("prompt\na fox\n")
    env = {**os.environ, REPORT_URL_ENV: "reports:4201", "WIRO_API_KEY": "k"}
    result = CliRunner().invoke(main, ["run", str(grid), "--out", str(tmp_path / "out")], env=env)
    assert result.exit_code == 2
    assert f"error: {REPORT_URL_ENV} must be an http(s) address" in result.output
    assert not (tmp_path / "out").exists()


def test_a_page_link_opens_on_the_report_server_when_one_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The nightly compare artifact and event link through here: from the UI's http page a file://
    link would not open."""
    from flows.orchestrate.artifacts import page_link

    page = tmp_path / "night" / "compare.html"
    monkeypatch.delenv("WIRO_SWEEP_REPORT_URL", raising=False)
    assert page_link(page) == page.resolve().as_uri()
    monkeypatch.setenv("WIRO_SWEEP_REPORT_URL", "http://127.0.0.1:4201")
    assert page_link(page) == f"http://127.0.0.1:4201{page.resolve()}"


def get_as(server: ReportServer, path: str, host: str | None) -> int:
    """The status of a GET whose Host header says `host` (None: no Host header at all), as a page
    served from a rebound DNS name would send it."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_it_answers_only_the_hosts_it_is_bound_to(server: ReportServer, runs: Path) -> None:
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1 may fetch from the
    server, but its requests say `Host: evil.example`, and those are refused."""
    report = quote(str(runs / "demo-out" / "report.html"))
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "LOCALHOST", f"[::1]:{server.port}"):
        assert get_as(server, report, host) == 200, host
    refused: tuple[str | None, ...] = (f"evil.example:{server.port}", "evil.example", "127.0.0.1.evil.example", None)
    for other in refused:
        assert get_as(server, report, other) in (400, 421), other
        assert get_as(server, "/", other) in (400, 421), other


def test_the_hosts_it_accepts_are_the_ones_it_is_bound_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REPORT_URL_ENV, raising=False)
    loopback = {"127.0.0.1", "localhost", "[::1]"}
    assert set(trusted_hosts("127.0.0.1")) == loopback
    assert set(trusted_hosts("::1")) == loopback
    assert set(trusted_hosts("10.1.2.3")) == {"10.1.2.3"}
    assert set(trusted_hosts("reports.lan", ["Other.LAN"])) == {"reports.lan", "other.lan"}
    everywhere = set(trusted_hosts("0.0.0.0"))
    assert loopback | {socket.gethostname().lower()} <= everywhere
    assert "evil.example" not in everywhere
    monkeypatch.setenv(REPORT_URL_ENV, "http://Reports.Example:4201")
    assert "reports.example" in trusted_hosts("0.0.0.0"), "the address the artifacts link to"
