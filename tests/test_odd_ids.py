"""Task ids that `str.isdigit` calls digits yet are no ASCII decimal number ("²", "1²": superscripts
`int` cannot read; "٣": an Arabic-Indic digit `int` reads, no Wiro id): a Task/List or Run answer
carrying one must not crash the look for a lost answer's task, nor a Run answer's bookkeeping
(adversarial pass on issue 18)."""

from __future__ import annotations

import pytest

from flows.engine.matching import TaskMatcher

from .test_client_tasks import SINCE, TaskListServer, scan


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("odd", ["²", "1²", "٣", "٥٠٠٠"])  # the last, read as 5000, would pass the floor
async def test_a_listed_task_id_of_odd_digits_does_not_break_the_scan(odd: str) -> None:
    """One listed task's id is odd digits: the lost task is still found, its floor still applies."""
    server = TaskListServer(count=30, lost_at=5, old_from=10)
    server.tasks[2]["id"] = odd
    found = await scan(server, since_server=SINCE, id_floor=4990)
    assert found.task_ids == (server.lost_id,)


@pytest.mark.parametrize("odd", ["²", "1²", "9" * 30, "٩٩"])
def test_a_run_answer_naming_an_odd_id_is_noted_without_a_crash(odd: str) -> None:
    matcher = TaskMatcher.__new__(TaskMatcher)
    matcher.newest = 7
    matcher.saw(odd)
    assert matcher.newest == 7
