"""The Prefect tasks' bodies on a given client: looking for a lost answer's task in Task/List
(against fake servers on `httpx.MockTransport` that page the way a real one might), and a Run
whose connection never opens (against a closed loopback port), and Runs refused for a nonce
(against the emulator, which refuses a nonce it has seen)."""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from wiro_tasks import TEXT_TO_VIDEO, AsyncWiroClient, NonceSource, RetryPolicy, model_spec
from wiro_tasks._base import NONCE_RESIGNS
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.inputs import Value
from wiro_tasks.prefect_tasks import submit_with
from wiro_tasks.scan import FindOutcome, scan_for_task

from .conftest import API_KEY, API_SECRET, EmulatorFactory

INPUTS: dict[str, Value] = {"prompt": "the one whose answer was lost", "seed": "7", "numFrames": 33}
SINCE = datetime.now(UTC) - timedelta(seconds=30)  # when the row's intent was journaled
NO_RETRY = RetryPolicy(max_retries=0, backoff=0.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def stored(inputs: dict[str, Value]) -> dict[str, str]:
    """A task's `parameters` as Wiro lists them: the validated inputs, as strings."""
    return {k: str(v) for k, v in model_spec(TEXT_TO_VIDEO).validate(inputs).items()}


@dataclass
class TaskListServer:
    """Task/List over `count` tasks, newest first, the lost one at `lost_at` (0-based; None: no
    such task). Its pages can be capped, carry a `total` of the list or of the page, or ignore
    `start` or `order`; tasks from `old_from` on were created an hour ago; `inserted[n]` new tasks
    arrive after the n-th answer (other rows being submitted meanwhile)."""

    count: int
    lost_at: int | None = None
    cap: int | None = None
    total: str = "list"  # "list", "page" or "none"
    ignore_start: bool = False
    ascending: bool = False
    old_from: int | None = None
    inserted: tuple[int, ...] = ()
    skew: float = 0.0  # seconds the server's clock is ahead of the client's
    dated: bool = True  # whether answers carry a `Date` header
    asked: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tasks = [
            self.task(5000 - i, old=self.old_from is not None and i >= self.old_from) for i in range(self.count)
        ]
        if self.lost_at is not None:
            self.tasks[self.lost_at]["parameters"] = stored(INPUTS)

    @property
    def lost_id(self) -> str:
        assert self.lost_at is not None
        return str(5000 - self.lost_at)

    def task(self, task_id: int, old: bool = False) -> dict[str, Any]:
        age = timedelta(hours=1) if old else timedelta(seconds=1)
        created = datetime.now(UTC) - age + timedelta(seconds=self.skew)
        return {
            "id": str(task_id),
            "status": "task_queue",
            "parameters": stored({"prompt": f"another row {task_id}"}),
            "createtime": str(int(created.timestamp())),
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/Task/List"
        body = json.loads(request.content)
        self.asked.append(body)
        start = 0 if self.ignore_start else int(body["start"])
        limit = min(int(body["limit"]), self.cap or int(body["limit"]))
        listed = self.tasks[::-1] if self.ascending else self.tasks
        page = listed[start : start + limit]
        answer: dict[str, Any] = {"errors": [], "tasklist": page, "result": True}
        if self.total != "none":
            answer["total"] = str(len(self.tasks) if self.total == "list" else len(page))
        arriving = self.inserted[len(self.asked) - 1] if len(self.asked) <= len(self.inserted) else 0
        newest = int(self.tasks[0]["id"]) if self.tasks else 5000
        self.tasks[:0] = [self.task(newest + n) for n in range(arriving, 0, -1)]
        headers = {"date": formatdate(time.time() + self.skew, usegmt=True)} if self.dated else {}
        return httpx.Response(200, json=answer, headers=headers)


async def scan(server: TaskListServer, **options: Any) -> FindOutcome:
    transport = httpx.MockTransport(server)
    async with AsyncWiroClient("k", "s", base_url="https://api.test/v1", transport=transport, retry=NO_RETRY) as c:
        return await scan_for_task(c, TEXT_TO_VIDEO, INPUTS, SINCE, [], **options)


@pytest.mark.anyio
@pytest.mark.parametrize("total", ["list", "none", "page"])
async def test_short_pages_are_not_the_end_of_the_list(total: str) -> None:
    """The review's case: pages capped at 50 when 100 are asked, the lost task 61st newest."""
    server = TaskListServer(count=130, lost_at=60, cap=50, total=total)
    assert await scan(server) == FindOutcome((server.lost_id,), True)
    assert [a["start"] for a in server.asked[:2]] == [0, 50], "start moves by what came, not by the limit"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("total", "requests"),
    [("list", 4), ("none", 4), ("page", 4)],  # 50 + 50 + 30 tasks, then an empty page: a total ends nothing
)
async def test_no_task_is_proven_only_at_the_real_end(total: str, requests: int) -> None:
    server = TaskListServer(count=130, cap=50, total=total)
    assert await scan(server) == FindOutcome((), True)
    assert len(server.asked) == requests
    assert server.asked[-1]["start"] == 130


@pytest.mark.anyio
async def test_a_server_that_ignores_start_proves_nothing() -> None:
    server = TaskListServer(count=130, lost_at=60, cap=50, ignore_start=True)
    assert await scan(server) == FindOutcome((), False)
    assert [a["start"] for a in server.asked] == [0, 50, 10**9], "the first page again, even far past the end"


@pytest.mark.anyio
@pytest.mark.parametrize("total", ["list", "none", "page"])
async def test_tasks_pushed_down_by_new_ones_are_no_reason_to_stop(total: str) -> None:
    """Other rows submitted during the scan shift the list: a page may hold only tasks already seen."""
    busy = TaskListServer(count=130, lost_at=120, cap=50, total=total, inserted=(40,) * 100)
    assert await scan(busy) == FindOutcome((busy.lost_id,), True)
    # 90 tasks on the first page, 20 new ones after it: the second page holds the 20 oldest again.
    server = TaskListServer(count=90, total=total, inserted=(20,))
    assert await scan(server) == FindOutcome((), True)
    assert [a["start"] for a in server.asked] == [0, 90, 110], "on past the page of old ones, to the end"


@pytest.mark.anyio
async def test_as_many_new_tasks_as_the_first_page_held_are_no_reason_to_stop() -> None:
    """Three tasks on the first page, then three new ones: the second page is the first one again,
    as from a server that ignores `start`. Early in a busy sweep that happened: a Run dropped before
    it made a task could then never be proven taskless. A page far past the end tells the two apart."""
    server = TaskListServer(count=3, inserted=(3,))
    assert await scan(server) == FindOutcome((), True)
    assert [a["start"] for a in server.asked] == [0, 3, 10**9, 6]


@pytest.mark.anyio
async def test_old_tasks_end_the_scan_only_in_newest_first_order() -> None:
    history = TaskListServer(count=1000, cap=50, old_from=80)
    assert await scan(history) == FindOutcome((), True)
    assert len(history.asked) == 3, "stops at the first page of tasks older than the intent"
    # A server that lists oldest first shows old tasks first: that is no proof, page on.
    backwards = TaskListServer(count=300, lost_at=10, cap=50, ascending=True, old_from=80)
    assert await scan(backwards) == FindOutcome((backwards.lost_id,), True)


@pytest.mark.anyio
async def test_a_scan_longer_than_max_scan_proves_nothing() -> None:
    server = TaskListServer(count=500, cap=50, total="none")
    assert await scan(server, max_scan=200) == FindOutcome((), False)
    assert len(server.asked) == 4


@pytest.mark.anyio
@pytest.mark.parametrize("skew", [-3600.0, -200.0, 200.0, 3600.0])
@pytest.mark.parametrize("dated", [True, False])
async def test_a_server_clock_an_hour_off_never_hides_the_lost_task(skew: float, dated: bool) -> None:
    """Task times are the server's: judged on the local clock, a server 200 s behind hid the task
    and the row was paid for five times. Its `Date` headers (or, without them, an hour's margin)
    put the intent on the server's clock."""
    server = TaskListServer(count=400, lost_at=120, cap=50, old_from=250, skew=skew, dated=dated)
    assert await scan(server) == FindOutcome((server.lost_id,), True)
    nothing = TaskListServer(count=400, cap=50, old_from=250, skew=skew, dated=dated)
    assert await scan(nothing) == FindOutcome((), True)
    if dated:
        assert len(nothing.asked) == 6, "with the server's clock known, old tasks still end the scan early"


@pytest.mark.anyio
async def test_the_intent_on_the_server_clock_wins_over_todays_offset() -> None:
    """A process resumed after the local clock was set an hour back judges by the server time the
    intent recorded, not by the local one."""
    server = TaskListServer(count=300, lost_at=100, cap=50, old_from=200)
    transport = httpx.MockTransport(server)
    async with AsyncWiroClient("k", "s", base_url="https://api.test/v1", transport=transport, retry=NO_RETRY) as c:
        local = SINCE + timedelta(hours=2)  # the local clock was wrong when the intent was written
        found = await scan_for_task(c, TEXT_TO_VIDEO, INPUTS, local, [], since_server=SINCE)
    assert found == FindOutcome((server.lost_id,), True)


def closed_port() -> int:
    """A loopback port where nothing listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.anyio
async def test_a_run_that_never_connects_ends_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="wiro_tasks"):
        async with AsyncWiroClient("k", "s", base_url=base_url, retry=NO_RETRY) as c:
            outcome = await submit_with(c, TEXT_TO_VIDEO, INPUTS, limit_wait=3600.0, connect_wait=0.6)
    assert outcome.kind == "unreachable"
    assert base_url in outcome.message
    assert time.monotonic() - started < 5, "bounded by connect_wait, not by limit_wait"
    assert any(base_url in r.getMessage() for r in caplog.records), "a warning while it lasts"


@pytest.mark.anyio
async def test_a_connection_that_opens_again_submits() -> None:
    calls: list[httpx.Request] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, json={"errors": [], "taskid": "31", "socketaccesstoken": "t", "result": True})

    transport = httpx.MockTransport(flaky)
    async with AsyncWiroClient("k", "s", base_url="https://api.test/v1", transport=transport, retry=NO_RETRY) as c:
        outcome = await submit_with(c, TEXT_TO_VIDEO, INPUTS, connect_wait=0.3)
    assert (outcome.kind, outcome.task_id, len(calls)) == ("submitted", "31", 2)


def behind(server: TaskListServer, index: int, seconds: float) -> None:
    """Task `index`'s `createtime` runs `seconds` behind the server's (truthful) `Date` header: the
    task was made as the Run was sent, 30 s after `SINCE` (not "now", which a loaded machine can
    reach minutes after this module's `SINCE`)."""
    made = SINCE + timedelta(seconds=30)
    server.tasks[index]["createtime"] = str(int((made - timedelta(seconds=seconds)).timestamp()))


@pytest.mark.anyio
async def test_task_times_behind_a_true_date_hide_no_task_numbered_above_the_floor() -> None:
    """The lost task's time is 200 s behind the `Date` header: by time alone it is older than the
    Run and hidden (the row was paid again); its id, above the newest known before the Run, says
    it is new."""
    server = TaskListServer(count=30, lost_at=5, old_from=10)
    behind(server, 5, 200)
    assert await scan(server, since_server=SINCE) == FindOutcome((), True), "hidden by the time alone"
    assert await scan(server, since_server=SINCE, id_floor=4990) == FindOutcome((server.lost_id,), True)


@pytest.mark.anyio
async def test_a_task_is_older_than_the_run_only_when_its_time_and_its_id_both_say_so() -> None:
    """An id at or below the floor (a server that numbers tasks again) with a recent time is still
    found; one whose time and id are both older is not, and ends the scan."""
    server = TaskListServer(count=30, lost_at=5, old_from=10)
    assert await scan(server, since_server=SINCE, id_floor=5000) == FindOutcome((server.lost_id,), True)
    old = TaskListServer(count=30, lost_at=12, old_from=10)
    assert await scan(old, since_server=SINCE, id_floor=4995) == FindOutcome((), True)


class Replaying(NonceSource):
    """A nonce source that first sends `replayed` (a nonce another process on the key sent
    already), then its own; it counts the times it was asked to change digit."""

    def __init__(self, replayed: list[str]) -> None:
        super().__init__()
        self.replayed = replayed
        self.avoided = 0

    def next(self) -> str:
        return self.replayed.pop(0) if self.replayed else super().next()

    def avoid(self) -> None:
        self.avoided += 1
        super().avoid()


async def _seen_nonce(emulator: EmulatorServer) -> str:
    """A nonce the emulator has seen: another process's request on the same key."""
    sent: list[str] = []

    async def keep(request: httpx.Request) -> None:
        sent.append(request.headers["x-nonce"])

    async with AsyncWiroClient(API_KEY, API_SECRET, base_url=emulator.base_url) as other:
        other._http.event_hooks["request"].append(keep)
        await other.tool(TEXT_TO_VIDEO)
    return sent[-1]


@pytest.mark.anyio
async def test_a_run_refused_for_another_process_nonce_is_sent_again_under_another_digit(
    make_emulator: EmulatorFactory,
) -> None:
    """Two shards on one key drew the same last digit (one time in two with four): Wiro refuses
    the second use of a nonce as "not valid". The Run made no task, so it goes again, and this
    process signs from another digit from then on; one task is made."""
    emulator = make_emulator()
    nonces = Replaying([await _seen_nonce(emulator)])
    async with AsyncWiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_RETRY) as c:
        c._auth._nonces = nonces
        outcome = await submit_with(c, TEXT_TO_VIDEO, INPUTS)
    assert outcome.kind == "submitted", outcome.message
    assert nonces.avoided == 1
    assert emulator.account.stats()["tasks"] == 1


@pytest.mark.anyio
async def test_a_run_under_a_wrong_secret_is_refused_as_auth_after_a_few_tries(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator()
    runs: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        runs.extend([request] if "/Run/" in request.url.path else [])

    async with AsyncWiroClient(API_KEY, "not the secret", base_url=emulator.base_url, retry=NO_RETRY) as c:
        c._http.event_hooks["request"].append(count)
        outcome = await submit_with(c, TEXT_TO_VIDEO, INPUTS)
    assert outcome.kind == "auth"
    assert len(runs) == 1 + NONCE_RESIGNS
    assert emulator.account.stats()["tasks"] == 0
