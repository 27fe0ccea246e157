"""The emulator defends itself: its test endpoints need its key, bodies are bounded per route,
and fault scripts are checked before they are stored.

Everything goes over real loopback HTTP (httpx, or a raw socket where a client library would
not send what a hostile client sends).
"""

from __future__ import annotations

import contextlib
import socket
import time

import httpx
import pytest

from wiro_tasks import sign
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.app import API_BODY_LIMIT
from wiro_tasks.emulator.config import Faults

from .conftest import API_KEY, API_SECRET

RUN = "/v1/Run/Wan-AI/Wan2.2-TI2V-5B-text-to-video"
KEY = {"x-api-key": API_KEY}


def signed() -> dict[str, str]:
    """Headers of a correctly signed API request (the conftest emulator runs in signature mode)."""
    nonce = str(time.time_ns())
    return {**KEY, "x-nonce": nonce, "x-signature": sign(API_KEY, API_SECRET, nonce)}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_emulator/stats"),
        ("GET", "/_emulator/tasks"),
        ("GET", "/_emulator/faults"),
        ("POST", "/_emulator/faults"),
    ],
)
def test_the_test_endpoints_need_the_emulators_key(emulator: EmulatorServer, method: str, path: str) -> None:
    body = {"drop_rate": 1.0} if method == "POST" else None
    for headers in ({}, {"x-api-key": "someone-else"}, {"x-api-key": API_KEY[:-1]}):
        refused = httpx.request(method, emulator.root_url + path, json=body, headers=headers)
        assert refused.status_code == 401, (headers, refused.text)
        assert refused.json()["errors"][0]["message"] == "Project authorization is not founded."
    assert emulator.account.faults.drop_rate == 0.0, "a refused POST changed nothing"
    allowed = httpx.request(method, emulator.root_url + path, json=body, headers=KEY)
    assert allowed.status_code == 200, allowed.text
    if method == "POST":
        assert emulator.account.faults.drop_rate == 1.0


def test_an_oversized_run_body_is_refused_in_wiros_shape_and_creates_nothing(emulator: EmulatorServer) -> None:
    from wiro_tasks.client import WiroClient

    with WiroClient(API_KEY, emulator.config.api_secret, base_url=emulator.base_url) as client:
        signed = client._http.build_request("POST", RUN.removeprefix("/v1"), json={"prompt": "x" * API_BODY_LIMIT})
        answer = client._http.send(signed)
    assert answer.status_code == 413, answer.text
    body = answer.json()
    assert body["result"] is False
    assert body["errors"][0]["code"] == 0
    assert f"{API_BODY_LIMIT:,} bytes" in body["errors"][0]["message"]
    assert emulator.account.stats()["tasks"] == 0


def raw_post(
    emulator: EmulatorServer, path: str, headers: dict[str, str], chunks: int, chunk: bytes
) -> tuple[str, int]:
    """POST `chunks` x `chunk` as a chunked body, stopping as soon as an answer arrives; the
    answer's status line and how many body bytes were sent by then."""
    sock = socket.create_connection((emulator.host, emulator.port))
    sock.settimeout(0.0)
    head = [f"POST {path} HTTP/1.1", f"Host: {emulator.host}", "Transfer-Encoding: chunked",
            "Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    sent = 0
    answer = b""
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for _ in range(chunks):
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            sock.settimeout(5.0)
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.0)
            sent += len(chunk)
        sock.settimeout(5.0)
        deadline = time.monotonic() + 5
        while b"\r\n" not in answer and time.monotonic() < deadline:
            answer += sock.recv(65536)
    finally:
        sock.close()
    return answer.split(b"\r\n", 1)[0].decode(), sent


def test_a_streamed_body_is_cut_off_past_the_bound_not_buffered(emulator: EmulatorServer) -> None:
    """No Content-Length to refuse up front: the emulator reads up to the bound, then answers.
    A client sending 256 MiB gets its 413 long before it has sent them all."""
    status, sent = raw_post(emulator, RUN, signed(), chunks=4096, chunk=b"x" * 65536)
    assert status == "HTTP/1.1 413 Request Entity Too Large", status
    assert sent < 64 * API_BODY_LIMIT, f"{sent:,} bytes sent before the answer: the body was read on"
    assert emulator.account.stats()["tasks"] == 0


def test_a_declared_oversized_body_is_refused_before_it_is_sent(emulator: EmulatorServer) -> None:
    sock = socket.create_connection((emulator.host, emulator.port), timeout=5)
    try:
        headers = "".join(f"{k}: {v}\r\n" for k, v in signed().items())
        sock.sendall(f"POST {RUN} HTTP/1.1\r\nHost: x\r\n{headers}"
                     f"Content-Type: application/json\r\nContent-Length: {300 << 20}\r\n\r\n".encode())  # fmt: skip
        answer = sock.recv(65536)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_the_faults_body_is_bounded_too(emulator: EmulatorServer) -> None:
    status, _ = raw_post(emulator, "/_emulator/faults", KEY, chunks=4096, chunk=b" " * 65536)
    assert status.startswith("HTTP/1.1 413"), status


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"run_script": "lost"}, "run_script: must be a list"),
        ({"script": "drop"}, "script: must be a list"),
        ({"run_script": ["lost", "bogus"]}, "run_script: 'bogus' is not one of"),
        ({"run_script": [503]}, "run_script: 503 is not one of"),
        ({"script": ["dup"]}, "script: 'dup' is not one of"),
        ({"drop_rate": "often"}, "drop_rate: must be a number"),
        ({"drop_rate": 1.5}, "drop_rate: must be between 0 and 1"),
        ({"drop_rate": True}, "drop_rate: must be a number"),
        ({"slow_seconds": -1}, "slow_seconds: must be a number of seconds"),
        ({"retry_after": -0.5}, "retry_after: must be a number of seconds"),
        ({"no_such_fault": 1}, "unknown fault settings: no_such_fault"),
    ],
)
def test_bad_fault_settings_are_refused_naming_the_field(
    emulator: EmulatorServer, changes: dict[str, object], words: str
) -> None:
    before = emulator.account.faults
    answer = httpx.post(f"{emulator.root_url}/_emulator/faults", json=changes, headers=KEY)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"], answer.json()
    assert emulator.account.faults == before, "nothing was stored"


def test_infinite_seconds_are_refused(emulator: EmulatorServer) -> None:
    body = b'{"slow_seconds": Infinity}'  # Python's json reads it; httpx will not write it
    answer = httpx.post(f"{emulator.root_url}/_emulator/faults", content=body, headers=KEY)
    assert answer.status_code == 400, answer.text
    assert "slow_seconds: must be a number of seconds" in answer.json()["error"]


def test_a_good_fault_script_is_stored_and_played(emulator: EmulatorServer) -> None:
    answer = httpx.post(f"{emulator.root_url}/_emulator/faults", json={"run_script": ["lost", "503"]}, headers=KEY)
    assert answer.status_code == 200, answer.text
    assert answer.json()["run_script"] == ["lost", "503"]
    assert emulator.account.faults.run_script == ("lost", "503")


def test_faults_are_checked_when_built_in_code_too() -> None:
    with pytest.raises(ValueError, match="run_script: must be a list"):
        Faults(run_script="lost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="error_5xx_rate: must be between 0 and 1"):
        Faults(error_5xx_rate=-0.1)
    assert Faults(run_script=("lost", "ok")).run_script == ("lost", "ok")


@pytest.mark.parametrize(
    ("flag", "words"),
    [("--drop-rate", "drop_rate: must be between 0 and 1"), ("--slow-seconds", "slow_seconds: must be a number")],
)
def test_the_emulator_command_refuses_a_bad_fault_option(flag: str, words: str) -> None:
    from click.testing import CliRunner

    from flows.cli import main

    result = CliRunner().invoke(main, ["emulator", flag, "-2"])
    assert result.exit_code == 2, result.output
    assert words in result.output, result.output
    assert "Traceback" not in result.output
