"""Stopping a sweep's tasks (flows/engine/stopping.py), against a fake Wiro on `httpx.MockTransport`:
queued tasks are cancelled, running ones killed, tasks that ended meanwhile recorded as they ended,
and an unanswered Run's task is stopped only when it is the one match nobody else holds."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.engine import stopping
from flows.engine.stopping import find_unanswered, in_flight, kill_in_flight, stop_in_flight, stop_tasks, unanswered
from flows.store.claims import Claims
from flows.store.journal import JOURNAL, Journal, read_events
from flows.store.rowstate import RowState
from wiro_tasks import AsyncWiroClient, Credentials, RetryPolicy
from wiro_tasks.inputs import Value

NO_RETRY = RetryPolicy(max_retries=0, backoff=0.0)
INPUTS: dict[str, Value] = {"prompt": "a fox at dawn", "seed": "7", "numFrames": 33}
QUEUED, RUNNING, DONE, CANCELLED = "task_queue", "task_start", "task_postprocess_end", "task_cancel"


@dataclass
class FakeWiro:
    """Task/Cancel, Task/Kill, Task/Detail and Task/List over `tasks` (id -> Wiro's task fields).
    Cancel works on a queued task only; Kill on any task that has not ended. Requests to the
    endpoints in `down` fail to connect; `asked` is what was called, in order (endpoint, and the
    task id or the list's `start`)."""

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)  # endpoints that cannot be reached

    def add(self, task_id: str, status: str, inputs: dict[str, Value] | None = None, **fields: Any) -> None:
        parameters = {k: str(v) for k, v in (inputs or {"prompt": f"another {task_id}"}).items()}
        self.tasks[task_id] = {"id": task_id, "status": status, "pexit": "0" if status == DONE else "",
                               "totalcost": "0", "elapsedseconds": "0", "parameters": parameters,
                               "createtime": str(int(time.time())), "outputs": [], **fields}  # fmt: skip

    def __call__(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.removeprefix("/v1")
        body = json.loads(request.content or b"{}")
        self.asked.append((endpoint, str(body.get("taskid", body.get("start", "")))))
        if endpoint in self.down:
            raise httpx.ConnectError("connection refused")
        if endpoint == "/Task/List":
            newest_first = sorted(self.tasks.values(), key=lambda t: -int(t["id"]))
            start, limit = int(body["start"]), int(body["limit"])
            return self.answer(newest_first[start : start + limit])
        task = self.tasks.get(str(body.get("taskid")))
        if task is None:
            return self.refuse("There is no task yet.")
        if endpoint == "/Task/Cancel":
            if task["status"] != QUEUED:
                return self.refuse("Task is not in a cancellable state.")
            task.update(status=CANCELLED, pexit="-1")
        elif endpoint == "/Task/Kill":
            if task["status"] in (DONE, CANCELLED):
                return self.refuse("Task could not be killed: it has ended")
            task.update(status=CANCELLED, pexit="-1", totalcost="0.0125", elapsedseconds="2.5")
        return self.answer([task])

    @staticmethod
    def answer(tasks: list[dict[str, Any]]) -> httpx.Response:
        return httpx.Response(200, json={"errors": [], "tasklist": tasks, "total": str(len(tasks)), "result": True})

    @staticmethod
    def refuse(message: str) -> httpx.Response:
        return httpx.Response(200, json={"result": False, "errors": [{"code": 1, "message": message}]})

    def client(self) -> AsyncWiroClient:
        transport = httpx.MockTransport(self)
        return AsyncWiroClient("k", "s", base_url="https://api.test/v1", transport=transport, retry=NO_RETRY)


class Recorder:
    """A journal's `append` that only remembers: (event, row id, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, event: str, row_id: str, **fields: Any) -> None:
        self.lines.append((event, row_id, fields))


def run(coroutine_of: Any, wiro: FakeWiro) -> Any:
    async def go() -> Any:
        async with wiro.client() as client:
            return await coroutine_of(client)

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def _no_waiting_between_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two Task/List looks follow each other at once (the rule, two looks, stays)."""
    monkeypatch.setattr(stopping, "LOOKS", (0.0, 0.0))


def test_a_queued_task_is_cancelled_and_a_running_one_killed() -> None:
    wiro = FakeWiro()
    wiro.add("101", QUEUED)
    wiro.add("102", RUNNING)
    record = Recorder()
    tried = run(lambda c: stop_tasks(c, {"row-a": "101", "row-b": "102"}, record), wiro)

    assert tried == 2
    stops = [a for a in wiro.asked if a[0] != "/Task/Detail"]
    assert stops == [("/Task/Cancel", "101"), ("/Task/Cancel", "102"), ("/Task/Kill", "102")]
    assert {("/Task/Detail", "101"), ("/Task/Detail", "102")} <= set(wiro.asked), "each stop confirmed by a read"
    assert [(e, r, f["status"], f["task_id"]) for e, r, f in record.lines] == [
        ("finished", "row-a", "cancelled", "101"),
        ("finished", "row-b", "cancelled", "102"),
    ]
    killed = record.lines[1][2]
    assert (killed["cost"], killed["elapsed"], killed["error"]) == ("0.0125", "2.5", "sweep cancelled")
    assert record.lines[0][2]["cost"] == "0", "a cancelled queued task costs nothing"


def test_a_task_that_succeeded_meanwhile_stays_a_paid_output() -> None:
    wiro = FakeWiro()
    video = {"id": "1", "name": "v.mp4", "url": "https://files.test/v.mp4", "size": "2048"}
    wiro.add("201", DONE, totalcost="0.03", elapsedseconds="6", outputs=[video])
    record = Recorder()
    run(lambda c: stop_tasks(c, {"row-a": "201"}, record), wiro)

    assert [a[0] for a in wiro.asked] == ["/Task/Cancel", "/Task/Kill", "/Task/Detail"]
    [(event, row, fields)] = record.lines
    assert (event, row, fields["status"], fields["error"]) == ("finished", "row-a", "succeeded", "")
    assert (fields["cost"], fields["output_url"], fields["output_bytes"]) == ("0.03", video["url"], 2048)


def test_a_task_that_failed_meanwhile_is_recorded_with_its_reason() -> None:
    wiro = FakeWiro()
    wiro.add("301", DONE, pexit="1", debugerror="RuntimeError: CUDA out of memory")
    record = Recorder()
    run(lambda c: stop_tasks(c, {"row-a": "301"}, record), wiro)
    [(_, _, fields)] = record.lines
    assert (fields["status"], fields["error"]) == ("failed", "RuntimeError: CUDA out of memory")


def test_a_task_that_cannot_be_stopped_or_read_gets_a_note_not_a_final_line() -> None:
    wiro = FakeWiro()
    wiro.add("401", RUNNING)
    wiro.down = {"/Task/Kill", "/Task/Detail"}
    record = Recorder()
    run(lambda c: stop_tasks(c, {"row-a": "401"}, record), wiro)
    [(event, row, fields)] = record.lines
    assert (event, row) == ("note", "row-a"), "the row stays live: a rerun looks at its task again"
    assert fields["error"].startswith("could not stop task 401: ")


def intent(row_id: str, at: datetime, inputs: dict[str, Value] | None = INPUTS, phase: str = "intent") -> RowState:
    state = RowState(row_id)
    state.apply({"event": "intent", "row_id": row_id, "at": at.isoformat(), "inputs": inputs})
    if phase == "unknown":
        state.apply({"event": "unknown", "row_id": row_id})
    return state


def test_only_recent_unanswered_run_requests_with_inputs_count() -> None:
    now = datetime.now(UTC)
    fresh = intent("fresh", now - timedelta(minutes=1))
    lost = intent("lost", now - timedelta(minutes=14), phase="unknown")
    stale = intent("stale", now - timedelta(minutes=16))
    blind = intent("blind", now, inputs=None)  # a journal from before intents carried inputs
    answered = intent("answered", now)
    answered.apply({"event": "submitted", "row_id": "answered", "task_id": "9"})

    rows = [fresh, lost, stale, blind, answered]
    assert [s.row_id for s in unanswered(rows, now)] == ["fresh", "lost"]
    assert in_flight([answered]), "a submitted task is live"
    assert in_flight([fresh])
    assert not in_flight([stale, blind])


def test_the_one_unclaimed_match_is_adopted_and_claimed(tmp_path: Path) -> None:
    wiro = FakeWiro()
    wiro.add("500", QUEUED, INPUTS)  # the row's own earlier task, already known
    wiro.add("501", QUEUED, {"prompt": "something else"})
    wiro.add("502", QUEUED, INPUTS)
    claims = Claims(tmp_path / "out", "acct", root=tmp_path / "state")
    row = intent("row-a", datetime.now(UTC))
    found = run(lambda c: find_unanswered(c, [row], ["500"], claims), wiro)
    assert found == {"row-a": "502"}
    assert claims.holder("502") == (str((tmp_path / "out").resolve()), "row-a")


def test_a_match_another_out_holds_is_not_ours_to_stop(tmp_path: Path) -> None:
    wiro = FakeWiro()
    wiro.add("601", RUNNING, INPUTS)
    Claims(tmp_path / "other", "acct", root=tmp_path / "state").claim("601", "their-row")
    mine = Claims(tmp_path / "out", "acct", root=tmp_path / "state")
    record = Recorder()
    row = intent("row-a", datetime.now(UTC))

    tried = run(lambda c: stop_in_flight(c, [row], record, mine), wiro)
    assert tried == 0
    assert record.lines == []
    assert wiro.tasks["601"]["status"] == RUNNING, "the other sweep's task runs on"
    looks = [start for endpoint, start in wiro.asked if endpoint == "/Task/List" and start == "0"]
    assert len(looks) == 2, "looked twice, then gave up"
    assert {endpoint for endpoint, _ in wiro.asked} == {"/Task/List"}, "nothing was stopped"


def test_two_unclaimed_matches_are_both_left_alone() -> None:
    wiro = FakeWiro()
    wiro.add("701", RUNNING, INPUTS)
    wiro.add("702", RUNNING, INPUTS)
    row = intent("row-a", datetime.now(UTC))
    assert run(lambda c: find_unanswered(c, [row], []), wiro) == {}


def test_stop_in_flight_stops_known_tasks_then_adopts_and_stops_the_lost_one(tmp_path: Path) -> None:
    wiro = FakeWiro()
    wiro.add("801", RUNNING, {"prompt": "known"})
    wiro.add("802", QUEUED, INPUTS)
    known = intent("row-known", datetime.now(UTC), {"prompt": "known"})
    known.apply({"event": "submitted", "row_id": "row-known", "task_id": "801"})
    lost = intent("row-lost", datetime.now(UTC))
    record = Recorder()

    tried = run(lambda c: stop_in_flight(c, [known, lost], record), wiro)
    assert tried == 2
    assert [(e, r, f.get("task_id")) for e, r, f in record.lines] == [
        ("finished", "row-known", "801"),
        ("adopted", "row-lost", "802"),
        ("finished", "row-lost", "802"),
    ]
    assert {t["status"] for t in wiro.tasks.values()} == {CANCELLED}


def test_kill_in_flight_with_nothing_live_reads_no_credentials_and_writes_nothing(tmp_path: Path) -> None:
    def no_credentials() -> Credentials:
        raise AssertionError("credentials were read with nothing to stop")

    assert kill_in_flight(tmp_path / "out", no_credentials) == 0
    assert not (tmp_path / "out").exists(), "no journal is made where there was none"


def test_kill_in_flight_stops_the_journals_tasks_and_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    journal = Journal(out)
    journal.append("intent", "row-a", inputs={"prompt": "known"})
    journal.append("submitted", "row-a", task_id="901")
    journal.append("intent", "row-b", inputs={"prompt": "done"})
    journal.append("submitted", "row-b", task_id="902")
    journal.append("finished", "row-b", task_id="902", status="succeeded", cost="0.01")
    journal.close()
    wiro = FakeWiro()
    wiro.add("901", RUNNING, {"prompt": "known"})
    wiro.add("902", DONE, {"prompt": "done"})
    fake_client = functools.partial(
        AsyncWiroClient, base_url="https://api.test/v1", transport=httpx.MockTransport(wiro)
    )
    monkeypatch.setattr(stopping, "AsyncWiroClient", fake_client)

    assert kill_in_flight(out, lambda: Credentials("k", "s")) == 1
    stops = [a for a in wiro.asked if a[0] != "/Task/Detail"]
    assert stops == [("/Task/Cancel", "901"), ("/Task/Kill", "901")], "the finished row's task is left alone"
    last = read_events(out / JOURNAL)[-1]
    assert (last["event"], last["row_id"], last["status"], last["cost"]) == ("finished", "row-a", "cancelled", "0.0125")


@dataclass
class HeldWiro(FakeWiro):
    """`FakeWiro` whose answers about the tasks in `held` wait until `release` is set (a Wiro slow
    to answer for one task), and which counts the requests it holds at once."""

    held: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    most_in_flight: int = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)  # an answer takes a moment: others may be sent meanwhile
            if str(json.loads(request.content or b"{}").get("taskid")) in self.held:
                await self.release.wait()
            return self(request)
        finally:
            self.in_flight -= 1

    def client(self) -> AsyncWiroClient:
        transport = httpx.MockTransport(self.handle)
        return AsyncWiroClient("k", "s", base_url="https://api.test/v1", transport=transport, retry=NO_RETRY)


def test_a_task_slow_to_stop_does_not_hold_back_the_others_stops() -> None:
    """Every second a task runs is billed: a stop is not queued behind another task's slow answer
    (one at a time, 100 running tasks took 18 minutes to stop with the API unreachable)."""
    wiro = HeldWiro(held={"501"})
    for task_id in ("501", "502", "503"):
        wiro.add(task_id, RUNNING)
    record = Recorder()

    async def go(client: AsyncWiroClient) -> None:
        stopping_all = asyncio.create_task(stop_tasks(client, {"a": "501", "b": "502", "c": "503"}, record))
        for _ in range(500):
            if wiro.tasks["502"]["status"] == wiro.tasks["503"]["status"] == CANCELLED:
                break
            await asyncio.sleep(0.01)
        assert wiro.tasks["502"]["status"] == wiro.tasks["503"]["status"] == CANCELLED, "the others were stopped"
        assert not stopping_all.done(), "the slow one is still being stopped"
        wiro.release.set()
        await stopping_all

    run(go, wiro)
    assert sorted((r, f["status"]) for _, r, f in record.lines) == [("a", "cancelled"), ("b", "cancelled"),
                                                                    ("c", "cancelled")]  # fmt: skip


def test_stops_are_sent_side_by_side_but_not_all_at_once() -> None:
    wiro = HeldWiro()
    live = {f"row-{n}": str(600 + n) for n in range(3 * stopping.STOPS_AT_ONCE)}
    for task_id in live.values():
        wiro.add(task_id, RUNNING)
    record = Recorder()
    run(lambda c: stop_tasks(c, live, record), wiro)
    assert wiro.most_in_flight == stopping.STOPS_AT_ONCE, "as many as allowed, and no more"
    assert [f["status"] for _, _, f in record.lines] == ["cancelled"] * len(live)


def test_an_error_that_is_not_wiro_s_stops_the_stopping_as_itself() -> None:
    """A bug or an interruption in one stop ends the others and is raised as it is, not wrapped."""
    wiro = FakeWiro()
    wiro.add("701", RUNNING)
    wiro.add("702", RUNNING)

    async def broken(client: AsyncWiroClient, record: Any, row_id: str, task_id: str) -> bool:
        raise LookupError(f"no such row {row_id}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stopping, "_stop", broken)
        with pytest.raises(LookupError, match="no such row"):
            run(lambda c: stop_tasks(c, {"a": "701", "b": "702"}, Recorder()), wiro)
