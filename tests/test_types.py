"""Parsing Task/Detail answers into typed tasks, and Wiro's success rule."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from wiro_tasks import TERMINAL_STATUSES, Task, TaskStatus
from wiro_tasks.types import TaskPage


def raw_task(**overrides: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "id": "534574",
        "uuid": "u-1",
        "socketaccesstoken": "eDcCm5yyUfIvMFspTwww49OUfgXkQt",
        "parameters": {"prompt": "Hello, world!", "seed": 42},
        "status": "task_postprocess_end",
        "pexit": "0",
        "debugoutput": "",
        "debugerror": "",
        "cps": "0.000585",
        "createtime": "1734513800",
        "accepttime": "1734513807",
        "starttime": "1734513809",
        "endtime": "1734513813",
        "canceltime": "0",
        "elapsedseconds": "6.0000",
        "totalcost": "0.003510000000",
        "outputs": [
            {
                "name": "0.mp4",
                "contenttype": "video/mp4",
                "size": "202472",
                "url": "https://cdn1.wiro.ai/x/0.mp4",
            }
        ],
    }
    task.update(overrides)
    return task


def test_success_is_postprocess_end_with_pexit_zero() -> None:
    task = Task.from_api(raw_task())
    assert task.succeeded
    assert task.is_terminal
    assert not task.failed
    assert task.total_cost == Decimal("0.00351")
    assert task.elapsed_seconds * task.cps == task.total_cost
    assert task.outputs[0].size == 202472
    assert task.ended_at == datetime(2024, 12, 18, 9, 23, 33, tzinfo=UTC)
    assert task.cancelled_at is None
    assert task.parameters == {"prompt": "Hello, world!", "seed": "42"}


def test_failure_also_ends_in_postprocess_end() -> None:
    task = Task.from_api(raw_task(pexit="1", outputs=[], totalcost="0", debugerror="CUDA out of memory\n  at step 3"))
    assert task.is_terminal
    assert task.failed
    assert not task.succeeded
    assert task.error_message == "CUDA out of memory at step 3"
    assert task.total_cost == 0


@pytest.mark.parametrize(
    "status",
    [
        "task_queue",
        "task_accept",
        "task_preprocess_start",
        "task_assign",
        "task_start",
        "task_output",
        "task_error",
        "task_end",
    ],
)
def test_running_statuses_are_not_terminal(status: str) -> None:
    task = Task.from_api(raw_task(status=status, pexit=""))
    assert not task.is_terminal
    assert not task.succeeded
    assert not task.failed


def test_cancel_is_terminal_and_unknown_status_is_kept() -> None:
    assert Task.from_api(raw_task(status="task_cancel")).cancelled
    odd = Task.from_api(raw_task(status="task_teleport"))
    assert odd.status is TaskStatus.UNKNOWN
    assert odd.raw_status == "task_teleport"
    assert not odd.is_terminal
    assert frozenset({TaskStatus.POSTPROCESS_END, TaskStatus.CANCEL}) == TERMINAL_STATUSES


def test_tolerates_missing_and_odd_fields() -> None:
    task = Task.from_api({"id": 7, "status": "task_queue", "parameters": '{"prompt": "p"}', "outputs": None})
    assert task.id == "7"
    assert task.parameters == {"prompt": "p"}
    assert task.outputs == ()
    assert task.total_cost == 0
    assert task.created_at is None


def test_socket_token_is_not_in_repr() -> None:
    assert "eDcCm5yy" not in repr(Task.from_api(raw_task()))


GARBAGE_NUMBERS = ["NaN", "nan", "Infinity", "-Infinity", "1e10", "1e400", "-5", "12abc", [1], {"a": 1}, True, 1e308]


@pytest.mark.parametrize("value", GARBAGE_NUMBERS)
def test_an_unreadable_cost_is_named_never_trusted(value: object) -> None:
    task = Task.from_api(raw_task(totalcost=value))
    assert task.succeeded, "a paid output is still a success"
    assert task.total_cost == 0
    assert "totalcost" in task.unreadable
    assert any(a.startswith("totalcost ") for a in task.anomalies), task.anomalies
    assert task.total_cost.is_finite()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e30", 1e30, "-1", "99999999999999999999999"])
def test_unreadable_times_are_none_and_named(value: object) -> None:
    task = Task.from_api(raw_task(createtime=value, endtime=value, elapsedseconds=value, cps=value))
    assert task.created_at is None
    assert task.ended_at is None
    assert task.elapsed_seconds == 0
    assert task.cps == 0
    assert {"createtime", "endtime", "elapsedseconds", "cps"} <= task.unreadable, task.anomalies


def test_timestamps_in_milliseconds_are_read_as_such() -> None:
    task = Task.from_api(raw_task(createtime="1734513800000"))
    assert task.created_at == datetime.fromtimestamp(1734513800, UTC)
    assert not task.anomalies


@pytest.mark.parametrize(
    "overrides",
    [
        {"id": None},
        {"id": {"x": 1}},
        {"status": ["task_queue"]},
        {"parameters": "not json"},
        {"parameters": 7},
        {"outputs": "x"},
        {"outputs": [{"url": 5, "size": "-3"}, "junk", None]},
        {"outputs": [{"url": "https://x/y.mp4", "size": "9" * 5000}]},
        {"pexit": {"code": 0}},
        {"socketaccesstoken": None},
    ],
)
def test_no_field_value_can_make_parsing_raise(overrides: dict[str, Any]) -> None:
    task = Task.from_api(raw_task(**overrides))
    assert isinstance(task.id, str)
    assert all(o.size >= 0 for o in task.outputs)


def test_an_output_with_a_size_past_reason_is_unknown_size() -> None:
    task = Task.from_api(raw_task(outputs=[{"url": "https://x/y.mp4", "size": "1e30"}]))
    assert task.outputs[0].size == 0
    assert any("size" in a for a in task.anomalies)


def test_a_task_list_page_survives_one_odd_task() -> None:
    page = TaskPage.from_api({"total": "NaN", "tasklist": [raw_task(id="3", createtime="nan"), 5, raw_task(id="2")]})
    assert [t.id for t in page.tasks] == ["3", "2"]
    assert page.total is None
