"""What `wiro-sweep run` checks before anything starts (flows/store/checks.py): each problem is one
GridError (exit code 2) naming the option or setting and what to do; real directories, a real
read-only file system, and a real HTTP server standing in for Prefect's API."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.grid import GridError
from flows.store.checks import check_journals, check_out, check_out_apart, check_prefect_api, check_writable
from flows.store.journal import JOURNAL, JournalError

from .conftest import free_port


def test_an_out_that_is_also_a_grid_directory_is_refused(tmp_path: Path) -> None:
    grids = tmp_path / "grids"
    grids.mkdir()
    with pytest.raises(GridError) as raised:
        check_out_apart(grids, [str(grids)])
    error = raised.value
    assert (error.file, error.exit_code) == ("--out", 2)
    assert "is also a grid directory" in str(error)
    assert "give --out a directory of its own" in str(error)
    assert "move this sweep's journal.jsonl" not in str(error), "nothing to move yet"

    (grids / "manifest.csv").write_text("row_id\n")  # a sweep already wrote there
    with pytest.raises(GridError, match=r"move this sweep's journal\.jsonl, manifest\.csv"):
        check_out_apart(grids / ".." / "grids", [grids / "a.csv", grids])  # the same directory, spelled otherwise


def test_an_out_beside_its_grids_passes(tmp_path: Path) -> None:
    grid = tmp_path / "grid.csv"
    grid.write_text("prompt\nfox\n")
    check_out(tmp_path / "out", [grid, tmp_path])  # a grid file, and a grid directory that is not OUT
    assert not (tmp_path / "out").exists(), "checking makes nothing"


def test_an_out_under_a_file_is_not_writable(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a directory")
    with pytest.raises(GridError) as raised:
        check_writable(tmp_path / "taken" / "out" / "deeper")
    assert raised.value.file == "--out"
    assert str(raised.value).startswith(f"--out: {tmp_path / 'taken'} is not a directory: the sweep writes")


def test_an_out_on_a_read_only_file_system_is_named_so(small_disk: Callable[[int], Path]) -> None:
    disk = small_disk(1024 * 1024)
    (disk / "out").mkdir()
    (disk / "out" / JOURNAL).write_text("")
    check_writable(disk / "out")  # writable while the disk is
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    with pytest.raises(GridError, match="is on a read-only file system: the sweep writes its journal"):
        check_writable(disk / "out" / "new")


def test_a_damaged_journal_under_out_or_a_shard_is_named_with_its_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    check_journals(out)  # no journal yet: nothing to check
    out.mkdir()
    whole = json.dumps({"event": "intent", "row_id": "r1", "at": "2025-01-01T00:00:00Z"})
    (out / JOURNAL).write_text(whole + "\n" + '{"event": "submi')  # a torn last line is tolerated
    check_journals(out)

    shard = out / "shards" / "2"
    shard.mkdir(parents=True)
    (shard / JOURNAL).write_text(whole + "\n" + json.dumps({"event": "submitted", "row_id": "r1"}) + "\n")
    with pytest.raises(JournalError) as raised:
        check_journals(out)
    assert (raised.value.path, raised.value.line, raised.value.exit_code) == (shard / JOURNAL, 2, 2)
    assert "task_id" in raised.value.problem


class Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/api/health" else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[Callable[[int], str]]:
    """A loopback HTTP server whose /api/health answers with a given status; its API URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(status: int) -> str:
        handler = type("Answer", (Health,), {"status": status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/api"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_prefect_api_that_answers_passes(health_server: Callable[[int], str]) -> None:
    with temporary_settings({PREFECT_API_URL: health_server(200)}):
        check_prefect_api()


def test_a_prefect_api_in_error_is_named_with_its_status(health_server: Callable[[int], str]) -> None:
    url = health_server(500)
    with temporary_settings({PREFECT_API_URL: url}), pytest.raises(GridError) as raised:
        check_prefect_api()
    assert raised.value.file == "PREFECT_API_URL"
    assert f"the Prefect API at {url} does not answer (HTTP 500): start that server" in str(raised.value)


def test_a_prefect_api_nobody_listens_at_is_named_without_its_password() -> None:
    port = free_port()
    url = f"http://admin:hunter2@127.0.0.1:{port}/api"
    with temporary_settings({PREFECT_API_URL: url}), pytest.raises(GridError) as raised:
        check_prefect_api()
    message = str(raised.value)
    assert f"the Prefect API at http://***@127.0.0.1:{port}/api does not answer (ConnectError" in message
    assert "hunter2" not in message
    assert "or unset PREFECT_API_URL" in message


def test_no_prefect_api_configured_is_fine() -> None:
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        check_prefect_api()
