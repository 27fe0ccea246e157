"""Finding the task of a Run whose answer was lost: Task/List, newest first, for a task made from
the same inputs since the Run was sent, judged on the server's clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from ._exceptions import WiroError
from .client import AsyncWiroClient
from .inputs import ModelSpec, Value, model_spec
from .types import Task as WiroTask


@dataclass(frozen=True)
class FindOutcome:
    """What a Task/List scan found: the matching tasks not excluded (oldest first), and whether the
    scan reached back far enough for "none" to prove that no task exists."""

    task_ids: tuple[str, ...]
    complete: bool

    @property
    def task_id(self) -> str | None:
        return self.task_ids[0] if self.task_ids else None

    @property
    def matches(self) -> int:
        return len(self.task_ids)


MAX_SCAN = 20_000
SCAN_PAGE = 100
_PAST_END = 10**9  # a start no account reaches: a server that honours `start` answers an empty page
CLOCK_SKEW = timedelta(minutes=2)  # margin on the server's clock, beyond what its answers bound
UNKNOWN_CLOCK = timedelta(hours=1, minutes=2)  # ... and without any `Date` to go by


async def scan_for_task(
    client: AsyncWiroClient,
    model: str,
    inputs: dict[str, Value],
    since: datetime,
    exclude: list[str],
    *,
    since_server: datetime | None = None,
    page_size: int = SCAN_PAGE,
    max_scan: int = MAX_SCAN,
) -> FindOutcome:
    """`find_task`'s body, on a given client: scan Task/List newest first for the task.

    `since` is when the Run request was about to be sent, on the local clock, and `since_server`
    the same moment on the server's clock when it was known then. Task times are the server's,
    so they are judged on its clock: `since_server`, else `since` moved by the offset that the
    answers' `Date` headers bound (`client.server_clock`), else `since` less an hour (`UNKNOWN_CLOCK`);
    then less `CLOCK_SKEW`.

    `complete` says the scan saw every task that could be it, and only then may "no task" let a
    row be paid for again. So the end of the list is never inferred from a short page (a server
    may cap pages below `page_size`), nor from a `total` (whose meaning Wiro does not document):
    `start` moves on by the tasks received, and the end is an empty page, or a page of tasks all
    older than that bound (trusted only on a page in newest-first order). A scan that stops short
    of that (more than `max_scan` tasks, or a server that answers the first page whatever the
    `start`) proves nothing. A listed task that cannot be read whole (an odd field) is judged on
    what can be read: one without a readable `createtime` always counts as recent.
    """
    spec = model_spec(model)
    wanted = spec.validate(inputs, allow_unknown=True)
    wanted.pop("callbackUrl", None)
    found: list[WiroTask] = []
    seen: set[str] = set()
    first_page: list[str] = []
    start, complete = 0, False
    while start < max_scan:
        page = await client.list_page(start=start, limit=page_size)
        if not page.tasks:
            complete = True
            break
        oldest = _oldest(client, since, since_server)  # the first answer has taught the server's clock
        ids = [t.id for t in page.tasks]
        fresh = [t for t in page.tasks if t.id not in seen]
        # A page of tasks already seen is normal: tasks created meanwhile push the list down
        # (the scan goes on to an empty page). The first page again may mean `start` is ignored,
        # or that exactly that many tasks were created meanwhile: a page far past the end tells.
        if start and not fresh and ids == first_page and (await client.list_page(start=_PAST_END, limit=1)).tasks:
            break
        first_page = first_page or ids
        seen.update(ids)
        found.extend(t for t in fresh if t.id not in exclude and _same_inputs(spec, t, wanted, oldest))
        start += len(page.tasks)
        if _newest_first(page.tasks) and all(t.created_at is not None and t.created_at < oldest for t in page.tasks):
            complete = True
            break
    found.sort(key=lambda t: (t.created_at or since, int(t.id) if t.id.isdigit() else 0))
    return FindOutcome(tuple(dict.fromkeys(t.id for t in found)), complete or bool(found))


def _oldest(client: AsyncWiroClient, since: datetime, since_server: datetime | None) -> datetime:
    """The earliest server time at which the task looked for may have been created."""
    if since_server is not None:
        return since_server - CLOCK_SKEW
    offset = client.server_clock.offset
    if offset is None:
        return since - UNKNOWN_CLOCK
    return since + timedelta(seconds=offset.low) - CLOCK_SKEW


def _same_inputs(spec: ModelSpec, candidate: WiroTask, wanted: dict[str, Value], oldest: datetime) -> bool:
    """Whether a listed task was made from `wanted` (defaults filled in) no earlier than `oldest`."""
    if not candidate.parameters or (candidate.created_at is not None and candidate.created_at < oldest):
        return False
    try:
        have = spec.validate(dict(candidate.parameters), allow_unknown=True)
    except WiroError:
        return False
    have.pop("callbackUrl", None)
    return have == wanted


def _newest_first(tasks: tuple[WiroTask, ...]) -> bool:
    """Whether a page is in the order asked for (ids descending), so nothing after it is newer."""
    ids = [int(t.id) if t.id.isdigit() else None for t in tasks]
    return all(a is not None and b is not None and a > b for a, b in itertools.pairwise(ids))
