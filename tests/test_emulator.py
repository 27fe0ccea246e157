"""The client against the emulator over real loopback HTTP: lifecycle, money, limits and faults."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from wiro_tasks import (
    AsyncWiroClient,
    AuthenticationError,
    ConcurrencyLimitError,
    InsufficientBalanceError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    SubmitOutcomeUnknownError,
    TaskStalledError,
    TaskStateError,
    TaskStatus,
    TextToVideoInput,
    TransientError,
    WaitTimeoutError,
    WiroClient,
    WiroConnectionError,
    sign,
)
from wiro_tasks.emulator import EmulatorServer

from .conftest import API_KEY, API_SECRET, FAST_POLL, NO_WAIT, EmulatorFactory
from .mp4 import decode_mp4

FOX = TextToVideoInput(prompt="a red fox running through snow", seed="7", num_frames=33)


def raw_post(emulator: EmulatorServer, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    """A request signed by hand, so tests can send what the client never would."""
    nonce = str(time.time_ns())
    headers = {"x-api-key": API_KEY, "x-nonce": nonce, "x-signature": sign(API_KEY, API_SECRET, nonce)}
    headers.update(kwargs.pop("headers", {}))
    return httpx.post(f"{emulator.base_url}{path}", json=body, headers=headers, **kwargs)


def test_submit_wait_download_a_playable_mp4(client: WiroClient, tmp_path: Path) -> None:
    submitted = client.run(FOX)
    task = client.wait(submitted.task_id, schedule=FAST_POLL)
    assert task.succeeded, task
    assert task.elapsed_seconds == Decimal("0.2000")
    assert task.total_cost == task.elapsed_seconds * task.cps
    assert task.parameters["prompt"] == FOX.prompt
    [output] = task.outputs
    assert output.content_type == "video/mp4"
    saved = client.download(output, tmp_path / "fox.mp4")
    assert saved.size == output.size == (tmp_path / "fox.mp4").stat().st_size
    lumas, stream, complaints = decode_mp4((tmp_path / "fox.mp4").read_bytes())
    assert complaints == []
    assert (stream.width, stream.height) == (832, 480)
    assert len(lumas) == 33
    assert stream.average_rate == 16
    assert not list(tmp_path.glob("*.part"))


def test_detail_by_socket_token(client: WiroClient) -> None:
    submitted = client.run(FOX)
    by_token = client.detail(socket_token=submitted.socket_token)
    assert by_token.id == submitted.task_id


def test_outputs_differ_with_prompt_and_seed_and_repeat_with_both(client: WiroClient, tmp_path: Path) -> None:
    inputs = [
        FOX,
        TextToVideoInput(prompt=FOX.prompt, seed="8", num_frames=33),
        TextToVideoInput(prompt="a blue whale", seed="7", num_frames=33),
        FOX,
    ]
    hashes = []
    for n, i in enumerate(inputs):
        task = client.wait(client.run(i).task_id, schedule=FAST_POLL)
        hashes.append(client.download(task.outputs[0], tmp_path / f"{n}.mp4").sha256)
    assert len(set(hashes[:3])) == 3
    assert hashes[3] == hashes[0]


def test_wrong_secret_unknown_key_and_missing_signature(emulator: EmulatorServer) -> None:
    with (
        WiroClient(API_KEY, "wrong", base_url=emulator.base_url) as c,
        pytest.raises(AuthenticationError) as e,
    ):
        c.detail("1")
    assert e.value.status_code == 401
    assert e.value.message == "Project authorization is not valid."
    with (
        WiroClient("nobody", API_SECRET, base_url=emulator.base_url) as c,
        pytest.raises(AuthenticationError) as e,
    ):
        c.run(FOX)
    assert e.value.message == "Project authorization is not founded."
    with WiroClient(API_KEY, base_url=emulator.base_url) as c, pytest.raises(AuthenticationError) as e:
        c.list_tasks()
    assert "requires signature authentication" in e.value.message
    assert emulator.account.stats()["tasks"] == 0


def test_a_replayed_nonce_is_refused(emulator: EmulatorServer) -> None:
    nonce = "1700000000000123"
    headers = {"x-api-key": API_KEY, "x-nonce": nonce, "x-signature": sign(API_KEY, API_SECRET, nonce)}
    url = f"{emulator.base_url}/Task/List"
    assert httpx.post(url, json={}, headers=headers).status_code == 200
    again = httpx.post(url, json={}, headers=headers)
    assert again.status_code == 401
    assert again.json()["errors"][0]["message"] == "Project authorization is not valid."


def test_key_only_project(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(api_secret=None)
    with WiroClient(API_KEY, base_url=emulator.base_url) as c:
        task = c.wait(c.run(FOX).task_id, schedule=FAST_POLL)
    assert task.succeeded


def test_server_validates_with_wiros_messages(emulator: EmulatorServer) -> None:
    path = "/Run/Wan-AI/Wan2.2-TI2V-5B-text-to-video"
    answer = raw_post(emulator, path, {"prompt": "p", "numFrames": "4000"}).json()
    assert answer == {
        "result": False,
        "errors": [{"code": 0, "message": "Request parameter [numFrames] must be between 5 and 241"}],
    }
    assert raw_post(emulator, path, {"seed": "1"}).json()["errors"][0]["message"] == (
        "Request parameter [prompt] required"
    )
    scale = raw_post(emulator, path, {"prompt": "p", "scale": "loud"}).json()["errors"][0]["message"]
    assert scale == "Request parameter [scale] must be integer or float"
    assert emulator.account.stats()["tasks"] == 0


def test_server_accepts_strings_numbers_and_multipart(emulator: EmulatorServer) -> None:
    path = "/Run/Wan-AI/Wan2.2-TI2V-5B-text-to-video"
    as_json = raw_post(emulator, path, {"prompt": "p", "seed": 42, "scale": "5.0", "numFrames": "81"})
    assert as_json.json()["result"] is True
    nonce = str(time.time_ns())
    multipart = httpx.post(
        f"{emulator.base_url}{path}",
        data={"prompt": "a multipart prompt", "numFrames": "81", "seed": "3"},
        files={"unused": ("frame.png", bytes(range(256)))},
        headers={"x-api-key": API_KEY, "x-nonce": nonce, "x-signature": sign(API_KEY, API_SECRET, nonce)},
    )
    assert multipart.json()["result"] is True, multipart.text
    task = emulator.account.find(multipart.json()["taskid"])
    assert task is not None
    assert task.parameters["prompt"] == "a multipart prompt"
    assert task.parameters["numFrames"] == 81


def test_unknown_endpoint_and_model(emulator: EmulatorServer) -> None:
    missing = raw_post(emulator, "/Nothing/Here", {})
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["message"] == "Error parsing url."
    assert raw_post(emulator, "/Run/Acme/none", {"prompt": "p"}).json()["result"] is False


def test_list_tasks_newest_first(client: WiroClient) -> None:
    ids = [client.run(FOX).task_id for _ in range(3)]
    listed = [t.id for t in client.list_tasks(limit=2)]
    assert listed == ids[::-1][:2]
    assert [t.id for t in client.list_tasks(start=2, limit=5)] == [ids[0]]


def test_list_page_cap_shortens_pages_and_total_still_counts_the_list(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(list_page_cap=2)
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT) as c:
        ids = [c.run(FOX).task_id for _ in range(3)]
        first = c.list_page(limit=100)
        assert ([t.id for t in first.tasks], first.total) == (ids[::-1][:2], 3)
        assert [t.id for t in c.list_page(start=2, limit=100).tasks] == [ids[0]]
        assert c.list_page(start=3, limit=100).tasks == ()


def test_huge_numbers_are_validation_errors_not_500s(emulator: EmulatorServer) -> None:
    path = "/Run/Wan-AI/Wan2.2-TI2V-5B-text-to-video"
    cases = [
        ({"prompt": "p", "numFrames": 10**400}, "Request parameter [numFrames] must be between 5 and 241"),
        ({"prompt": "p", "numFrames": "9" * 400}, "Request parameter [numFrames] must be between 5 and 241"),
        ({"prompt": "p", "scale": -(10**400)}, "Request parameter [scale] must be between 0 and 20"),
        ({"prompt": "p", "steps": 1e308}, "Request parameter [steps] must be between 1 and 100"),
        ({"prompt": "p", "seed": "9" * 5000}, "Request parameter [seed] must be an integer between 0 and 4294967295"),
    ]
    for body, message in cases:
        answer = raw_post(emulator, path, body)
        assert answer.status_code == 200, (body, answer.text)
        assert answer.json()["errors"] == [{"code": 0, "message": message}]
    too_long = raw_post(emulator, path, content=b'{"prompt": "p", "numFrames": ' + b"9" * 5000 + b"}")
    assert too_long.json()["errors"] == [{"code": 0, "message": "Request parameters are invalid."}]
    assert emulator.account.stats()["tasks"] == 0


def test_failed_tasks_end_in_postprocess_end_with_pexit_and_no_cost(client: WiroClient) -> None:
    task = client.wait(client.run(TextToVideoInput(prompt="x [emulator:fail]")).task_id, schedule=FAST_POLL)
    assert task.status is TaskStatus.POSTPROCESS_END
    assert task.failed
    assert task.pexit == "1"
    assert task.outputs == ()
    assert task.total_cost == 0
    assert task.error_message


def test_task_error_interim_then_success(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(queue_seconds=0.4)
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url) as c:
        submitted = c.run(TextToVideoInput(prompt="y [emulator:error]"))
        seen = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            task = c.detail(submitted.task_id)
            seen.add(task.status)
            if task.is_terminal:
                break
            time.sleep(0.03)
    assert TaskStatus.ERROR in seen
    assert task.succeeded


def test_stuck_in_task_error_is_reported_after_the_grace_period(client: WiroClient) -> None:
    submitted = client.run(TextToVideoInput(prompt="z [emulator:stuck]"))
    with pytest.raises(TaskStalledError, match="stuck in task_error") as caught:
        client.wait(submitted.task_id, schedule=FAST_POLL, error_grace=0.3)
    assert caught.value.task.status is TaskStatus.ERROR
    assert caught.value.task.debug_error


def test_wait_times_out_on_a_hung_task(client: WiroClient) -> None:
    submitted = client.run(TextToVideoInput(prompt="h [emulator:hang]"))
    with pytest.raises(WaitTimeoutError) as caught:
        client.wait(submitted.task_id, schedule=FAST_POLL, timeout=0.4)
    assert not caught.value.task.is_terminal


def test_cancel_a_queued_task_costs_nothing(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(queue_seconds=0.3)
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url) as c:
        submitted = c.run(FOX)
        cancelled = c.cancel(submitted.task_id)
        assert cancelled.cancelled
        assert cancelled.total_cost == 0
        time.sleep(0.5)
        later = raw_post(emulator, "/Task/Detail", {"taskid": submitted.task_id}).json()["tasklist"][0]
        assert later["status"] == "task_cancel"
        assert later["accepttime"] == later["starttime"] == later["assigntime"] == "0", "it never ran"
        with pytest.raises(TaskStateError, match="Task could not be killed"):
            c.kill(submitted.task_id)
        with pytest.raises(NotFoundError, match="There is no task yet"):
            c.cancel("424242")


def test_kill_a_running_task_bills_the_time_used(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(queue_seconds=0.0, task_seconds=30, bill_kills=True)  # the billed kill's reading
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url) as c:
        submitted = c.run(FOX)
        time.sleep(0.3)
        with pytest.raises(TaskStateError, match="not in a cancellable state"):
            c.cancel(submitted.task_id)
        killed = c.kill(socket_token=submitted.socket_token)
        assert killed.cancelled
        assert killed.elapsed_seconds > 0
        assert killed.total_cost == killed.elapsed_seconds * killed.cps
        assert c.detail(submitted.task_id).total_cost == killed.total_cost


def test_concurrency_limit_follows_the_balance(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(balance=Decimal("35.00"), task_seconds=30)
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url) as c:
        ids = [c.run(FOX).task_id for _ in range(3)]
        with pytest.raises(ConcurrencyLimitError) as caught:
            c.run(FOX)
        assert "you can run up to 3 tasks at the same time" in caught.value.message
        assert "$35.00" in caught.value.message
        c.kill(ids[0])
        assert c.run(FOX).task_id
    assert emulator.account.stats()["max_in_flight"] == 3


def test_insufficient_balance_stops_submission(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(balance=Decimal("0.0005"), cps=Decimal("0.01"), concurrency_limit=5)
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url) as c:
        c.wait(c.run(FOX).task_id, schedule=FAST_POLL)
        with pytest.raises(InsufficientBalanceError):
            c.run(FOX)
    stats = emulator.account.stats()
    assert Decimal(stats["balance"]) == Decimal("0.0005") - Decimal("0.2") * Decimal("0.01")


def test_callback_receives_the_finished_task(client: WiroClient) -> None:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{hook.server_address[1]}/done"
        submitted = client.run(TextToVideoInput(prompt="callback me", callback_url=url))
        client.wait(submitted.task_id, schedule=FAST_POLL)
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        hook.shutdown()
        hook.server_close()
    [body] = received
    [task] = body["tasklist"]
    assert task["id"] == submitted.task_id
    assert task["status"] == "task_postprocess_end"
    assert task["outputs"][0]["url"].startswith("http://127.0.0.1:")


def test_read_faults_are_retried_by_the_client(emulator: EmulatorServer, client: WiroClient) -> None:
    submitted = client.run(FOX)
    emulator.account.faults = emulator.account.faults.updated({"script": ["503", "429", "drop"], "retry_after": 0})
    assert client.detail(submitted.task_id).id == submitted.task_id
    counters = emulator.account.stats()["counters"]
    assert (counters["fault_503"], counters["fault_429"], counters["fault_drop"]) == (1, 1, 1)


def test_run_faults_surface_as_typed_errors(emulator: EmulatorServer, client: WiroClient) -> None:
    emulator.account.faults = emulator.account.faults.updated({"run_script": ["429", "503", "lost", "drop"]})
    with pytest.raises(RateLimitedError):
        client.run(FOX)
    with pytest.raises(SubmitOutcomeUnknownError):
        client.run(FOX)
    with pytest.raises(SubmitOutcomeUnknownError):
        client.run(FOX)
    with pytest.raises(SubmitOutcomeUnknownError):
        client.run(FOX)
    stats = emulator.account.stats()
    assert stats["counters"]["run"] == 4
    assert stats["tasks"] == 1, "only the lost answer created a task"
    [lost] = client.list_tasks()
    assert client.detail(lost.id).parameters["prompt"] == FOX.prompt, "Task/List need not carry the inputs"


def test_slow_answers_time_out_as_connection_errors(emulator: EmulatorServer) -> None:
    emulator.account.faults = emulator.account.faults.updated({"slow_rate": 1.0, "slow_seconds": 2.0})
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, timeout=0.3, retry=NO_WAIT) as c:
        with pytest.raises(WiroConnectionError):
            c.list_tasks()
        with pytest.raises(SubmitOutcomeUnknownError):
            c.run(FOX)


def test_files_support_range_requests_for_seeking(client: WiroClient) -> None:
    task = client.wait(client.run(FOX).task_id, schedule=FAST_POLL)
    partial = httpx.get(task.outputs[0].url, headers={"Range": "bytes=100-199"})
    assert partial.status_code == 206
    assert len(partial.content) == 100
    assert partial.headers["content-range"] == f"bytes 100-199/{task.outputs[0].size}"


def test_download_faults_are_retried(emulator: EmulatorServer, client: WiroClient, tmp_path: Path) -> None:
    task = client.wait(client.run(FOX).task_id, schedule=FAST_POLL)
    emulator.account.faults = emulator.account.faults.updated({"download_fault_rate": 1.0})
    with pytest.raises(TransientError):
        client.download(task.outputs[0], tmp_path / "a.mp4")
    assert emulator.account.stats()["counters"]["fault_download"] == NO_WAIT.max_retries + 1
    assert not (tmp_path / "a.mp4").exists()
    emulator.account.faults = emulator.account.faults.updated({"download_fault_rate": 0.0})
    assert client.download(task.outputs[0], tmp_path / "a.mp4").size == task.outputs[0].size


def test_credentials_never_travel_to_the_file_host(tmp_path: Path) -> None:
    seen: dict[str, httpx.Headers] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers
        if request.url.host == "api.test":
            return httpx.Response(200, json={"result": True, "errors": [], "tasklist": []})
        return httpx.Response(200, content=b"video")

    with WiroClient("k", "s", base_url="https://api.test/v1", transport=httpx.MockTransport(handler)) as c:
        c.list_tasks()
        c.download("https://cdn.test/x/0.mp4", tmp_path / "out.mp4")
    assert "x-api-key" in seen["api.test"]
    assert "x-api-key" not in seen["cdn.test"]
    assert "x-signature" not in seen["cdn.test"]


def test_concurrent_polls_of_a_finished_task_render_once(client: WiroClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    submitted = [client.run(FOX).task_id for _ in range(2)]  # identical inputs: one file
    time.sleep(0.5)
    with ThreadPoolExecutor(8) as pool:
        tasks = list(pool.map(lambda n: client.detail(submitted[n % 2]), range(16)))
    assert all(t.succeeded for t in tasks)
    assert len({t.outputs[0].size for t in tasks}) == 1


def test_invalid_run_on_the_wire_is_invalid_request(emulator: EmulatorServer) -> None:
    # Bypass local validation to see the server's answer mapped to the right error.
    with (
        WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url) as c,
        pytest.raises(InvalidRequestError, match=r"Request parameter \[numFrames\]"),
    ):
        c._call("/Run/Wan-AI/Wan2.2-TI2V-5B-text-to-video", {"prompt": "p", "numFrames": 7}, "run")


@pytest.mark.anyio
async def test_async_client_many_concurrent_signed_requests(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    import asyncio

    emulator = make_emulator(concurrency_limit=200)
    async with AsyncWiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT) as c:
        inputs = [TextToVideoInput(prompt=f"p{n}", seed=str(n), num_frames=5) for n in range(60)]
        submitted = await asyncio.gather(*(c.run(i) for i in inputs))
        details = await asyncio.gather(*(c.detail(s.task_id) for s in submitted for _ in range(3)))
        assert len({s.task_id for s in submitted}) == 60
        assert len(details) == 180
        task = await c.wait(submitted[0].task_id, schedule=FAST_POLL)
        assert task.succeeded
        saved = await c.download(task.outputs[0], tmp_path / "async.mp4")
        assert saved.size == task.outputs[0].size
    stats = emulator.account.stats()
    assert "auth_refused" not in stats["counters"], "no nonce was ever reused"
    assert stats["tasks"] == 60


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_task_socket_pushes_each_status_to_the_end(make_emulator: EmulatorFactory) -> None:
    # the socket is open well before the task leaves the queue; the emulator's own frames carry the id
    emulator = make_emulator(queue_seconds=1.0, socket_frames="emulator")
    async with AsyncWiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, socket_url=emulator.socket_url) as c:
        submitted = await c.run(FOX)
        events = [e async for e in c.events(submitted.socket_token)]
        [missing] = [e async for e in c.events("no-such-token")]
    assert events[0].type == "task_queue"
    assert events[-1].status is TaskStatus.POSTPROCESS_END
    assert events[-1].task_id == submitted.task_id
    assert events[-1].message[0]["url"].endswith("/output.mp4"), "the final event carries the outputs"
    assert len({e.type for e in events}) == len(events), "each status once"
    assert not missing.result


@pytest.mark.anyio
async def test_a_dropped_socket_is_a_connection_error(emulator: EmulatorServer) -> None:
    emulator.account.faults = emulator.account.faults.updated({"socket_drop_rate": 1.0})
    async with AsyncWiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, socket_url=emulator.socket_url) as c:
        submitted = await c.run(FOX)
        with pytest.raises(WiroConnectionError):
            [e async for e in c.events(submitted.socket_token)]


def test_socket_url_defaults_only_for_wiro_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    from wiro_tasks._config import resolve_socket_url

    assert resolve_socket_url(None, "https://api.wiro.ai/v1") == "wss://socket.wiro.ai/v1"
    assert resolve_socket_url(None, "http://127.0.0.1:9/v1") is None
    monkeypatch.setenv("WIRO_SOCKET_URL", "")
    assert resolve_socket_url(None, "https://api.wiro.ai/v1") is None, "an empty value turns it off"
    with pytest.raises(ValueError, match="ws:// or wss://"):
        resolve_socket_url("http://x", "https://api.wiro.ai/v1")
