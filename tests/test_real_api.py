"""Answers the real Wiro API may give, as its own clients' fixtures and documents show them, where
the emulator used to be more generous: Cancel and Kill answered without the task, and a
`task_error` that is final (Wiro-MCP's reading) rather than interim (Wiro-Docs'), and nonces
as Wiro's clients send them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from flows.engine.stopping import stop_tasks
from wiro_tasks import (
    AsyncWiroClient,
    AuthenticationError,
    Credentials,
    NonceSource,
    TextToVideoInput,
    WiroAuth,
    WiroClient,
)
from wiro_tasks._base import NONCE_RESIGNS
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.waiting import wait_for_end

from .conftest import API_KEY, API_SECRET, NO_WAIT, EmulatorFactory

pytestmark = pytest.mark.both_modes  # each test that starts an emulator, in today's mode and the documented one
STOP_ANSWERS = ["bare", "empty"]  # WiroKit's fixture `{"result": true}`; Wiro-MCP's empty `tasklist`


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def async_client(server: EmulatorServer) -> AsyncWiroClient:
    return AsyncWiroClient(API_KEY, API_SECRET, base_url=server.base_url, retry=NO_WAIT)


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.mark.parametrize("answer", STOP_ANSWERS)
def test_cancel_and_kill_answered_without_the_task_return_the_task_as_read_after(
    make_emulator: EmulatorFactory, answer: str
) -> None:
    emulator = make_emulator(stop_answer=answer, queue_seconds=5.0, task_seconds=30.0)
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT) as c:
        queued = c.run(TextToVideoInput(prompt="a fox in the queue")).task_id
        cancelled = c.cancel(queued)
        assert (cancelled.id, cancelled.cancelled, cancelled.total_cost) == (queued, True, Decimal(0))
    emulator = make_emulator(stop_answer=answer, queue_seconds=0.0, task_seconds=30.0)
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT) as c:
        submitted = c.run(TextToVideoInput(prompt="a fox at work"))
        time.sleep(0.3)
        killed = c.kill(socket_token=submitted.socket_token)
        assert killed.id == submitted.task_id
        assert killed.cancelled
        assert killed.elapsed_seconds > 0
        billed = killed.elapsed_seconds * killed.cps if emulator.config.bill_kills else 0
        assert killed.total_cost == billed, "a kill is billed unless the emulator follows pricing.md"
    counters = emulator.account.stats()["counters"]
    assert (counters["kill"], counters["detail"]) == (1, 1), "the stop, then one read of the task"


@pytest.mark.anyio
@pytest.mark.parametrize("answer", STOP_ANSWERS)
async def test_a_task_past_its_deadline_ends_timed_out_when_kill_answers_without_the_task(
    make_emulator: EmulatorFactory, answer: str
) -> None:
    emulator = make_emulator(stop_answer=answer, queue_seconds=0.0)
    async with async_client(emulator) as client:
        submitted = await client.run(TextToVideoInput(prompt="never ends [emulator:hang]"))
        outcome = await asyncio.wait_for(
            wait_for_end(client, submitted.task_id, soon(0.5), poll_interval=0.05, poll_cap=0.1), 30
        )
    assert outcome.status == "timed_out"
    assert outcome.error.startswith("timed out in task_")
    assert outcome.elapsed
    assert outcome.cost == (outcome.elapsed * emulator.config.cps if emulator.config.bill_kills else 0)


@pytest.mark.anyio
async def test_a_wait_tried_again_after_its_own_stop_still_ends_timed_out(make_emulator: EmulatorFactory) -> None:
    """A wait stopped its task at the deadline, then raised (a 429 past the client's retries) and
    Prefect ran it again: the task now reads cancelled, and the row timed out all the same. It was
    recorded 'cancelled' (seen in CI's fault matrix)."""
    emulator = make_emulator(queue_seconds=0.0)
    async with async_client(emulator) as client:
        submitted = await client.run(TextToVideoInput(prompt="never ends [emulator:hang]"))
        await asyncio.sleep(0.3)
        await client.kill(submitted.task_id)  # the first try's stop
        passed = soon(-1.0)  # the deadline the retried wait is given: already behind it
        outcome = await asyncio.wait_for(
            wait_for_end(client, submitted.task_id, passed, poll_interval=0.05, poll_cap=0.1), 30
        )
    assert outcome.status == "timed_out", outcome
    assert outcome.elapsed, "a killed running task ran, and is billed as it ran"
    assert outcome.cost == (outcome.elapsed * emulator.config.cps if emulator.config.bill_kills else 0)


@pytest.mark.anyio
@pytest.mark.parametrize("answer", ["task", *STOP_ANSWERS])
async def test_stopping_a_sweeps_tasks_records_each_stop_as_the_task_reads_after_it(
    make_emulator: EmulatorFactory, answer: str
) -> None:
    emulator = make_emulator(stop_answer=answer, queue_seconds=0.0, task_seconds=30.0)
    lines: list[tuple[str, str, dict[str, Any]]] = []
    async with async_client(emulator) as client:
        running = (await client.run(TextToVideoInput(prompt="running"))).task_id
        await asyncio.sleep(0.3)
        tried = await stop_tasks(client, {"row-1": running}, lambda e, r, **f: lines.append((e, r, f)))
        task = await client.detail(running)
    assert tried == 1
    assert [(e, r, f["status"]) for e, r, f in lines] == [("finished", "row-1", "cancelled")]
    # what Wiro billed, and never less than its rate x its seconds (a budget counts a kill as billed)
    assert Decimal(lines[0][2]["cost"]) == max(task.total_cost, task.elapsed_seconds * task.cps) > 0


@pytest.mark.anyio
async def test_a_final_task_error_that_wiro_will_not_stop_is_failed_at_once(make_emulator: EmulatorFactory) -> None:
    """Wiro-MCP counts `task_error` as final: a stop is refused, and the row fails after its grace,
    not after `STOP_GRACE` (300 s) with a retryable error."""
    emulator = make_emulator(task_error_final=True, queue_seconds=0.2)
    async with async_client(emulator) as client:
        submitted = await client.run(TextToVideoInput(prompt="broken [emulator:stuck]"))
        started = time.monotonic()
        outcome = await asyncio.wait_for(
            wait_for_end(client, submitted.task_id, soon(60), poll_interval=0.05, poll_cap=0.1, error_grace=0.5), 20
        )
    assert time.monotonic() - started < 10
    assert outcome.status == "failed"
    assert "stuck in task_error" in outcome.error
    assert "task_error is final" in outcome.error
    assert outcome.cost == 0
    assert outcome.task_id == submitted.task_id
    assert emulator.account.stats()["in_flight"] == 0, "final: it holds no slot of the account"


@pytest.mark.anyio
@pytest.mark.parametrize("answer", ["task", *STOP_ANSWERS])
async def test_an_interim_task_error_is_cancelled_and_failed_with_its_reason(
    make_emulator: EmulatorFactory, answer: str
) -> None:
    """Wiro-Docs' reading: `task_error` awaits recovery; past the grace the task is cancelled."""
    emulator = make_emulator(stop_answer=answer, queue_seconds=0.2)
    async with async_client(emulator) as client:
        submitted = await client.run(TextToVideoInput(prompt="stuck [emulator:stuck]"))
        outcome = await asyncio.wait_for(
            wait_for_end(client, submitted.task_id, soon(60), poll_interval=0.05, poll_cap=0.1, error_grace=0.5), 20
        )
        final = await client.detail(submitted.task_id)
    assert final.cancelled
    assert outcome.status == "failed"
    assert "stuck in task_error" in outcome.error
    assert outcome.cost == 0


def test_nonces_are_unix_milliseconds_that_never_repeat_even_in_a_burst() -> None:
    source = NonceSource()
    before = time.time() * 1000
    burst = [int(source.next()) for _ in range(500)]
    assert burst == sorted(set(burst)), "strictly increasing"
    assert all(len(str(n)) == 13 for n in burst)
    assert before - 20 <= burst[0] <= time.time() * 1000 + 20, "the first follows the clock"
    assert burst[-1] - before < 500 * NonceSource.STEP + 1000, "a burst runs ahead of the clock, boundedly"


def refusing(times: int) -> tuple[list[httpx.Request], httpx.MockTransport]:
    """A server that refuses the first `times` signed requests as Wiro refuses a seen nonce."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= times:
            refusal = {"result": False, "errors": [{"code": 0, "message": "Project authorization is not valid."}]}
            return httpx.Response(401, json=refusal)
        if request.url.path.startswith("/v1/Run/"):
            return httpx.Response(200, json={"result": True, "errors": [], "taskid": "7", "socketaccesstoken": "t"})
        return httpx.Response(
            200, json={"result": True, "errors": [], "tasklist": [{"id": "7", "status": "task_queue"}]}
        )

    return seen, httpx.MockTransport(answer)


@pytest.mark.parametrize("clashes", [1, NONCE_RESIGNS])
def test_a_read_whose_nonce_is_refused_is_signed_again_and_a_run_never(clashes: int) -> None:
    """Four shards on one key clash again on the digit they move to: a read passes after three."""
    seen, transport = refusing(clashes)
    with WiroClient("k", "s", base_url="https://api.test/v1", transport=transport, retry=NO_WAIT) as c:
        assert c.detail("7").id == "7"
        assert len(seen) == clashes + 1
        assert len({r.headers["x-nonce"][-1] for r in seen}) > 1, "signed again under another digit"
    seen, transport = refusing(1)
    with (
        WiroClient("k", "s", base_url="https://api.test/v1", transport=transport, retry=NO_WAIT) as c,
        pytest.raises(AuthenticationError),
    ):
        c.run(TextToVideoInput(prompt="a fox"))
    assert len(seen) == 1, "a Run is never sent twice by the client"


def test_a_signature_refused_every_time_is_an_authentication_error() -> None:
    seen, transport = refusing(10)
    with (
        WiroClient("k", "s", base_url="https://api.test/v1", transport=transport, retry=NO_WAIT) as c,
        pytest.raises(AuthenticationError, match="not valid"),
    ):
        c.detail("7")
    assert len(seen) == 1 + NONCE_RESIGNS, "a few fresh nonces, no more: a wrong secret is not hammered"


def test_the_emulator_accepts_a_repeated_nonce_only_when_asked(make_emulator: EmulatorFactory) -> None:
    nonce = str(int(time.time()))  # the n8n nodes: one seconds nonce for a Run and its polls

    class Fixed(NonceSource):
        def next(self) -> str:
            return nonce  # the same one for every request, whatever second it is sent in

    for repeat, refused in ((True, 0), (False, 2)):
        emulator = make_emulator(repeat_nonces=repeat)
        auth = WiroAuth(Credentials(API_KEY, API_SECRET), Fixed())
        with httpx.Client(base_url=emulator.base_url, auth=auth) as http:
            answers = [http.post("/Task/List", json={}).status_code for _ in range(3)]
        assert answers.count(401) == refused
