"""The API key and secret are never written anywhere: scan everything the tool writes or stores.

A sweep in signature mode (key and secret from `tests/conftest.py`) with failures, timeouts,
lost answers and an authentication failure; then every place the credentials could end up is
searched for them, in plain text and in the encodings a leak could hide in (UTF-16, base64):

- every file under OUT: manifests (the Parquet one decoded too: its pages are compressed),
  journal, report, videos;
- the log records of the run, at DEBUG, caught by a handler on every logger that matters
  (Prefect's `prefect.extra` and `prefect._internal` do not propagate), plus pytest's caplog;
- what Prefect stored: the flow run, its states, task runs and their states, its logs and
  artifacts (read back through the API), the test server's SQLite database itself, and any file
  under PREFECT_HOME / PREFECT_LOCAL_STORAGE_PATH written during the test;
- the output of `wiro-sweep run ... --emulator` and of a verbose run.

`test_the_scanner_finds_a_planted_secret` proves the search can fail: the secret planted in a
file, a compressed Parquet cell, a log record, a traceback and a Prefect run is found each time.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from flows.engine.rows import records
from flows.store.manifest import FINAL_STATUSES, read_manifest
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.config import Faults

from .conftest import API_KEY, API_SECRET, EmulatorFactory

pytestmark = pytest.mark.usefixtures("prefect_api")

LOGGERS = ("", "prefect", "prefect.extra", "prefect._internal", "flows", "wiro_tasks", "httpx", "httpcore")


# The scanner.


def encodings(needle: str) -> list[bytes]:
    """How a string may sit in bytes: UTF-8, UTF-16, and base64 at each of the three alignments."""
    raw = needle.encode()
    found = [raw, needle.encode("utf-16-le")]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        # Keep the characters made of the needle's bits only (each character holds 6 bits).
        found.append(encoded[-(-8 * shift // 6) : 8 * (shift + len(raw)) // 6])
    return found


@dataclass
class Scanner:
    """Searches texts, bytes and files for needles; remembers where each one was found."""

    needles: dict[str, str]  # label -> value
    found: list[str] = field(default_factory=list)
    places: int = 0

    def text(self, where: str, text: str) -> None:
        self.places += 1
        for label, needle in self.needles.items():
            if needle in text:
                self.found.append(f"{label} in {where}")

    def data(self, where: str, data: bytes) -> None:
        self.places += 1
        for label, needle in self.needles.items():
            if any(form in data for form in encodings(needle)):
                self.found.append(f"{label} in {where}")

    def file(self, path: Path) -> None:
        self.data(str(path), path.read_bytes())
        if path.suffix in (".parquet", ".pq"):
            with path.open("rb") as handle:
                table = pq.read_table(handle)
            self.text(f"{path} (decoded)", repr(table.schema.metadata) + repr(table.to_pylist()))

    def tree(self, root: Path, since: float | None = None) -> int:
        """Every file under `root` (modified at or after `since`, if given); how many there were."""
        count = 0
        for path in sorted(root.rglob("*")):
            if path.is_file() and (since is None or path.stat().st_mtime >= since):
                self.file(path)
                count += 1
        return count


class Collect(logging.Handler):
    """Keeps every record, formatted with its traceback and arguments."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not any(record is seen for seen in self.records[-50:]):  # met again on a parent logger
            self.records.append(record)

    def texts(self) -> Iterator[str]:
        for record in self.records:
            yield f"{self.format(record)} {record.args!r} {record.__dict__!r}"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[Collect]:
    """Every log record at DEBUG from the loggers the tool and Prefect write to."""
    handler = Collect()
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
        logging.getLogger(name or None).addHandler(handler)
    yield handler
    for name in LOGGERS:
        logging.getLogger(name or None).removeHandler(handler)


def scan_logs(scanner: Scanner, handler: Collect, caplog: pytest.LogCaptureFixture) -> None:
    for n, text in enumerate(handler.texts()):
        scanner.text(f"log record {n}", text)
    scanner.text("caplog", caplog.text)


def flush_prefect_logs() -> None:
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=15)


async def prefect_record(flow_run_id: UUID) -> dict[str, str]:
    """Everything the Prefect API holds about one flow run, as text by place."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    found: dict[str, str] = {}
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
        found["flow run"] = run.model_dump_json()
        found["flow run states"] = repr([s.model_dump_json() for s in await client.read_flow_run_states(flow_run_id)])
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200
        )
        for task_run in task_runs:
            states = await client.read_task_run_states(task_run.id)
            found[f"task run {task_run.name}"] = task_run.model_dump_json() + repr(
                [s.model_dump_json() for s in states]
            )
        logs: list[str] = []
        offset = 0
        while True:
            page = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=offset
            )
            logs.extend(log.model_dump_json() for log in page)
            offset += len(page)
            if len(page) < 200:
                break
        found["logs"] = "\n".join(logs)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        found["artifacts"] = repr([a.model_dump_json() for a in artifacts])
        found["counts"] = f"{len(task_runs)} task runs, {len(logs)} logs, {len(artifacts)} artifacts"
    return found


def prefect_database() -> list[Path]:
    """The test server's SQLite files (database, write-ahead log)."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
    prefix = "sqlite+aiosqlite:///"
    assert url.startswith(prefix), "the test server keeps its database in SQLite"
    db = Path(url[len(prefix) :])
    return [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]


def scan_prefect(scanner: Scanner, flow_run_ids: list[UUID], since: float) -> dict[str, int]:
    """The API's records of the runs, the server's database, and Prefect's storage on disk."""
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH

    flush_prefect_logs()
    seen: dict[str, int] = {}
    for run_id in flow_run_ids:
        record = asyncio.run(prefect_record(run_id))
        for place, text in record.items():
            scanner.text(f"Prefect {place} of run {run_id}", text)
        seen[str(run_id)] = len(record)
    for path in prefect_database():
        scanner.file(path)
    seen["database files"] = len(prefect_database())
    for root in {Path(PREFECT_HOME.value()), Path(PREFECT_LOCAL_STORAGE_PATH.value())}:
        if root.exists():  # only what this test may have written: others' old runs are not ours
            seen[str(root)] = scanner.tree(root, since=since)
    return seen


# The test itself.


def grid_file(path: Path, prompts: list[str]) -> Path:
    pd.DataFrame({"prompt": prompts, "numFrames": 9}).to_csv(path, index=False)
    return path


def run_sweep(grid: Path, out: Path, **params: Any) -> Any:
    from flows.orchestrate.flow import sweep

    params.setdefault("poll_interval", 0.05)
    return asyncio.run(sweep(grid=[str(grid)], out=str(out), return_state=True, **params))  # type: ignore[arg-type]


def test_no_file_log_or_prefect_record_holds_the_api_key_or_secret(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    logs: Collect,
) -> None:
    import flows.engine.matching

    since = time.time() - 1
    monkeypatch.setattr(flows.engine.matching, "FIND_RETRY_DELAYS", (0.1, 0.2))
    emulator = make_emulator(
        preview=True,
        faults=Faults(error_5xx_rate=0.1, drop_rate=0.05, rate_429=0.05, retry_after=0, run_script=("lost", "503")),
    )
    assert emulator.config.api_secret == API_SECRET, "signature mode"
    wiro_env(emulator)
    grid = grid_file(
        tmp_path / "grid.csv",
        ["a red fox", "a blue whale", "a green owl", "broken [emulator:fail]", "stuck [emulator:stuck]",
         "never ends [emulator:hang]"],
    )  # fmt: skip
    out = tmp_path / "out"
    state = run_sweep(grid, out, timeout=2.0, error_grace=0.3)
    assert state.is_failed()
    statuses = {r["prompt"]: r["status"] for r in records(read_manifest(out))}
    assert set(statuses.values()) <= set(FINAL_STATUSES)
    assert {statuses["broken [emulator:fail]"], statuses["stuck [emulator:stuck]"]} == {"failed"}
    assert statuses["never ends [emulator:hang]"] == "timed_out"
    assert emulator.account.stats()["counters"]["fault_lost"] >= 1

    # The same credentials refused: the authentication failure's messages are written too.
    refusing = make_emulator(api_key=API_KEY, api_secret="the-account-has-another-secret")
    wiro_env(refusing)
    monkeypatch.setenv("WIRO_API_SECRET", API_SECRET)  # what this client signs with
    refused_out = tmp_path / "refused"
    refused = run_sweep(grid_file(tmp_path / "refused.csv", ["a red fox", "a blue whale"]), refused_out)
    assert refused.is_failed()
    assert refusing.account.stats()["counters"].get("auth_refused", 0) >= 1
    assert refusing.account.stats()["tasks"] == 0

    scanner = Scanner({"API secret": API_SECRET, "API key": API_KEY})
    written = scanner.tree(out) + scanner.tree(refused_out)
    assert written >= 10, "manifests, journal, report and videos were all scanned"
    scanner.text("the returned states", repr(state) + repr(refused) + repr(state.result(raise_on_failure=False)))
    run_ids = [state.state_details.flow_run_id, refused.state_details.flow_run_id]
    seen = scan_prefect(scanner, run_ids, since)
    scan_logs(scanner, logs, caplog)
    assert len(logs.records) > 100, "DEBUG records of the client, the flow and Prefect were caught"
    assert seen["database files"] >= 1
    assert not scanner.found, f"credentials leaked: {sorted(set(scanner.found))}"


def test_the_command_line_never_prints_the_credentials(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    logs: Collect,
) -> None:
    import os

    import flows.cli
    import flows.cli.run

    started: list[EmulatorServer] = []
    start_emulator = flows.cli.run.start_emulator

    def remember() -> Any:
        server = start_emulator()
        started.append(server)
        return server

    monkeypatch.setattr(flows.cli.run, "start_emulator", remember)
    grid = grid_file(tmp_path / "grid.csv", ["a red fox", "broken [emulator:fail]"])
    runner = CliRunner()

    def as_now() -> dict[str, str | None]:
        """The command sets WIRO_* and PREFECT_* in this process's environment: CliRunner puts
        these back as they are now once it returns."""
        names = ("WIRO_API_KEY", "WIRO_API_SECRET", "WIRO_BASE_URL", "PREFECT_LOGGING_LEVEL",
                 "PREFECT_SERVER_ANALYTICS_ENABLED")  # fmt: skip
        return {n: os.environ.get(n) for n in names}

    bundled = runner.invoke(flows.cli.main, ["run", str(grid), "--out", str(tmp_path / "a"), "--emulator",
                                             "--poll-interval", "0.1"], env=as_now())  # fmt: skip
    assert bundled.exit_code == 1, bundled.output
    [server] = started
    assert server.config.api_secret

    emulator = make_emulator(preview=True)
    wiro_env(emulator)
    verbose = runner.invoke(flows.cli.main, ["run", str(grid), "--out", str(tmp_path / "b"), "-v",
                                             "--poll-interval", "0.1"], env=as_now())  # fmt: skip
    assert verbose.exit_code == 1, verbose.output
    assert "1 of 2 rows succeeded" in verbose.output

    scanner = Scanner({"API secret": API_SECRET, "API key": API_KEY, "the bundled emulator's secret":
                       server.config.api_secret, "the bundled emulator's key": server.config.api_key})  # fmt: skip
    scanner.text("the --emulator run's output", bundled.output)
    scanner.text("the verbose run's output", verbose.output)
    scanner.tree(tmp_path / "a")
    scanner.tree(tmp_path / "b")
    scan_logs(scanner, logs, caplog)
    assert not scanner.found, f"credentials leaked: {sorted(set(scanner.found))}"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there once the probe is closed


def test_a_password_in_the_base_url_is_never_written_shown_or_stored(
    make_emulator: EmulatorFactory,
    wiro_env: Callable[[EmulatorServer], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    logs: Collect,
) -> None:
    """`WIRO_BASE_URL=http://user:password@host/v1`: a sweep against the emulator through it, then
    one whose host does not answer (the messages that name the URL), then the command line's own
    output; the password is nowhere, and the URL is shown with `***` in its place."""
    import flows.cli
    import wiro_tasks.prefect_tasks

    since = time.time() - 1
    password = f"pw-{uuid4().hex}"  # new each run: the Prefect database is shared by the session
    monkeypatch.setattr(wiro_tasks.prefect_tasks, "CONNECT_WAIT_SECONDS", 1.0)  # give up on a dead host soon
    emulator = make_emulator(preview=True)
    wiro_env(emulator)
    monkeypatch.setenv("WIRO_BASE_URL", emulator.base_url.replace("http://", f"http://sweeper:{password}@"))
    grid = grid_file(tmp_path / "grid.csv", ["a red fox", "broken [emulator:fail]"])
    reached = run_sweep(grid, tmp_path / "reached")
    assert reached.is_failed(), "one row failed, as it should"
    assert sorted(read_manifest(tmp_path / "reached")["status"]) == ["failed", "succeeded"]

    port = closed_port()
    monkeypatch.setenv("WIRO_BASE_URL", f"http://sweeper:{password}@127.0.0.1:{port}/v1")
    unreachable = run_sweep(grid, tmp_path / "unreachable")
    assert unreachable.is_failed()
    errors = set(read_manifest(tmp_path / "unreachable")["error"])
    assert all(f"http://***@127.0.0.1:{port}/v1" in e for e in errors), errors
    command = CliRunner().invoke(flows.cli.main, ["run", str(grid), "--out", str(tmp_path / "cli"), "-v",
                                                  "--poll-interval", "0.05"])  # fmt: skip
    assert command.exit_code == 1, command.output
    assert f"http://***@127.0.0.1:{port}/v1" in command.output, "the failures say which URL, masked"

    scanner = Scanner({"the base URL's password": password})
    written = sum(scanner.tree(tmp_path / d) for d in ("reached", "unreachable", "cli"))
    assert written >= 12, "journals, manifests, reports and a video were scanned"
    scanner.text("the command's output", command.output)
    scanner.text("the returned states", repr(reached) + repr(unreachable))
    seen = scan_prefect(scanner, [reached.state_details.flow_run_id, unreachable.state_details.flow_run_id], since)
    assert seen["database files"] >= 1
    scan_logs(scanner, logs, caplog)
    assert any("no connection to http://***@" in r.getMessage() for r in logs.records), "the warning was logged"
    assert not scanner.found, f"the password leaked: {sorted(set(scanner.found))}"


def test_a_password_in_the_prefect_api_url_never_reaches_the_terminal(
    make_emulator: EmulatorFactory, subprocess_env: Callable[[EmulatorServer], dict[str, str]], tmp_path: Path
) -> None:
    """`PREFECT_API_URL=http://user:password@host/api` (a server behind basic auth): with `-v`,
    Prefect's own "View at <its UI URL>" line, made from that URL, is shown with `***` instead."""
    from .processes import finish, start

    password = f"pw-{uuid4().hex}"
    env = subprocess_env(make_emulator())
    env["PREFECT_API_URL"] = env["PREFECT_API_URL"].replace("http://", f"http://sweeper:{password}@")
    env.pop("PREFECT_LOGGING_LEVEL")  # as in a user's terminal: -v shows Prefect's INFO lines
    grid, log = grid_file(tmp_path / "grid.csv", ["a red fox"]), tmp_path / "terminal.txt"
    process = start([str(grid), "--out", str(tmp_path / "out"), "-v", "--poll-interval", "0.05"], env, log)
    assert finish(process, log, 180) == 0, log.read_text()
    terminal = log.read_text()
    assert "View at http://***@127.0.0.1:" in terminal, "Prefect's line is shown, masked"
    assert "1 of 1 rows succeeded" in terminal
    assert password not in terminal, "the password reached the terminal"
    assert not [line for line in terminal.splitlines() if "sweeper" in line], "nor the user name"


def test_the_console_masks_url_passwords_in_messages_and_tracebacks() -> None:
    import io

    from prefect.logging.handlers import PrefectConsoleHandler
    from rich.console import Console

    import flows.cli.console
    from flows.cli.console import prefect_console
    from wiro_tasks._config import masked_urls

    assert masked_urls("at http://u:p@ss@h:1/x?a=b@c and ws://tok@h") == "at http://***@h:1/x?a=b@c and ws://***@h"
    assert masked_urls("no URL, a@b, https://h/x@y") == "no URL, a@b, https://h/x@y"
    shown = io.StringIO()
    handler = PrefectConsoleHandler()
    logger = logging.getLogger("prefect.test-masking")
    logger.addHandler(handler)
    try:
        saved, flows.cli.console.console = flows.cli.console.console, Console(file=shown, width=300)
        with prefect_console(verbose=True):
            logger.warning("View at %s", "http://sweeper:hunter2@127.0.0.1:4200/runs/1")
            try:
                raise OSError("cannot reach https://sweeper:hunter2@prefect.example/api")
            except OSError:
                logger.exception("sending logs failed")
    finally:
        flows.cli.console.console = saved
        logger.removeHandler(handler)
    assert "View at http://***@127.0.0.1:4200/runs/1" in shown.getvalue()
    assert "cannot reach https://***@prefect.example/api" in shown.getvalue(), "the traceback is shown, masked"
    assert "hunter2" not in shown.getvalue()
    assert "sweeper" not in shown.getvalue()


def test_the_client_masks_a_url_password_and_never_sends_it(tmp_path: Path) -> None:
    import httpx

    from wiro_tasks import AsyncWiroClient, WiroClient, WiroConnectionError
    from wiro_tasks.socket import task_events

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url) + repr(dict(request.headers)))
        return httpx.Response(200, json={"result": True, "errors": [], "tasklist": []})

    url = "https://sweeper:hunter2-url@api.test/v1"
    with WiroClient("k", "s", base_url=url, transport=httpx.MockTransport(handler)) as client:
        client.list_tasks()
        assert client.base_url == "https://***@api.test/v1"
        assert "hunter2" not in repr(client)
    assert seen, "a request was sent"
    assert not any("hunter2" in s or "sweeper" in s for s in seen), seen
    assert AsyncWiroClient("k", "s", base_url=url).base_url == "https://***@api.test/v1"

    async def listen() -> None:
        async for _ in task_events("http://sweeper:hunter2-socket@127.0.0.1:9/socket/v1", "token"):  # not ws://
            pass

    with pytest.raises(WiroConnectionError) as caught:
        asyncio.run(listen())
    assert "hunter2" not in str(caught.value), caught.value
    assert "http://***@127.0.0.1:9/socket/v1 isn't a valid URI" in str(caught.value)


def test_the_scanner_finds_a_planted_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, logs: Collect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search above can fail: a secret planted in each kind of place is found there."""
    from prefect import flow, get_run_logger
    from prefect.artifacts import create_markdown_artifact

    since = time.time() - 1
    planted = f"planted-{uuid4().hex}"  # never the real test secret: the server's database is shared
    scanner = Scanner({"planted": planted})

    def found_in(where: str) -> bool:
        return any(where in f for f in scanner.found)

    (tmp_path / "plain.txt").write_text(f"x {planted} y")
    (tmp_path / "wide.bin").write_bytes(b"\x00\x01" + f"[{planted}]".encode("utf-16-le"))
    for shift in range(3):
        (tmp_path / f"b64-{shift}.html").write_bytes(
            b"data:" + base64.b64encode(b"ab"[:shift] + planted.encode() + b"!")
        )
    table = pa.table({"error": [f"token={planted} #{n}" for n in range(200)]})
    pq.write_table(table, tmp_path / "m.parquet", compression="gzip", use_dictionary=False, write_statistics=False)
    (tmp_path / "clean.txt").write_text("nothing here")
    assert planted.encode() not in (tmp_path / "m.parquet").read_bytes(), "the Parquet cell is compressed"
    assert scanner.tree(tmp_path) == 7
    for name in ("plain.txt", "wide.bin", "b64-0.html", "b64-1.html", "b64-2.html", "m.parquet (decoded)"):
        assert found_in(str(tmp_path / name)), (name, scanner.found)
    assert not found_in("clean.txt")

    scanner.found.clear()
    logging.getLogger("wiro_tasks.client").debug("signing with %s", planted)
    try:
        raise RuntimeError(f"boom {planted}")
    except RuntimeError:
        logging.getLogger("prefect._internal").exception("failed")
    scan_logs(scanner, logs, caplog)
    assert sum("log record" in f for f in scanner.found) == 2, scanner.found

    @flow(name="leaky", persist_result=False)
    def leaky() -> None:
        get_run_logger().warning("the key is %s", planted)
        create_markdown_artifact(f"# {planted}", key="leaky")

    state = leaky(return_state=True)
    scanner.found.clear()
    assert state.state_details.flow_run_id is not None
    scan_prefect(scanner, [state.state_details.flow_run_id], since)
    assert any("Prefect logs" in f for f in scanner.found), scanner.found
    assert any("Prefect artifacts" in f for f in scanner.found), scanner.found
    deadline = time.monotonic() + 10
    while not any("prefect-test.db" in f for f in scanner.found):  # the server writes its database in batches
        assert time.monotonic() < deadline, ("the planted log never reached the database", scanner.found)
        time.sleep(0.2)
        for path in prefect_database():
            scanner.file(path)


def test_every_handler_of_prefects_loggers_gets_masked_records_not_only_the_console() -> None:
    """The handler that sends log lines to Prefect's API (stored in its database) may run before
    the console's: it must not see the password either."""
    from prefect.logging.handlers import APILogHandler

    from flows.cli.console import prefect_console

    seen: list[str] = []

    class Collected(APILogHandler):  # the API's handler, collecting instead of sending
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger("prefect.test-masking-api")
    handler = Collected()
    logger.addHandler(handler)
    try:
        with prefect_console(verbose=True):
            logger.warning("View at %s", "http://sweeper:hunter2@127.0.0.1:4200/runs/1")
    finally:
        logger.removeHandler(handler)
    assert seen == ["View at http://***@127.0.0.1:4200/runs/1"]
