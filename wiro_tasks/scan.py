"""Finding the task of a Run whose answer was lost: Task/List, newest first, for a task made from
the same inputs since the Run was sent, judged on the server's clock."""

from __future__ import annotations

import itertools
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ._exceptions import WiroError
from .client import AsyncWiroClient
from .inputs import ModelSpec, Value, model_spec
from .types import Task as WiroTask
from .types import numeric_id


@dataclass(frozen=True)
class FindOutcome:
    """What a Task/List scan found: the matching tasks not excluded (oldest first), and whether the
    scan reached back far enough for "none" to prove that no task exists."""

    task_ids: tuple[str, ...]
    complete: bool
    blind: str = ""  # why the scan could not judge every task that may be it (then never complete)
    newest: int | None = field(default=None, compare=False)  # the highest numeric task id the scan saw

    @property
    def task_id(self) -> str | None:
        return self.task_ids[0] if self.task_ids else None

    @property
    def matches(self) -> int:
        return len(self.task_ids)


MAX_SCAN = 20_000
SCAN_PAGE = 100
MAX_DETAILS = 100  # Task/Detail reads per scan, for listed tasks without `parameters` or `createtime`
_PAST_END = 10**9  # a start no account reaches: a server that honours `start` answers an empty page
CLOCK_SKEW = timedelta(minutes=2)  # margin on the server's clock, beyond what its answers bound
UNKNOWN_CLOCK = timedelta(hours=1, minutes=2)  # ... and without any `Date` to go by


async def scan_for_task(
    client: AsyncWiroClient,
    model: str,
    inputs: dict[str, Value],
    since: datetime,
    exclude: Collection[str],
    *,
    since_server: datetime | None = None,
    id_floor: int | None = None,
    page_size: int = SCAN_PAGE,
    max_scan: int = MAX_SCAN,
    max_details: int = MAX_DETAILS,
) -> FindOutcome:
    """`find_task`'s body, on a given client: scan Task/List newest first for the task.

    `since` is when the Run request was about to be sent, on the local clock, and `since_server`
    the same moment on the server's clock when it was known then. Task times are the server's,
    so they are judged on its clock: `since_server`, else `since` moved by the offset that the
    answers' `Date` headers bound (`client.server_clock`), else `since` less an hour (`UNKNOWN_CLOCK`);
    then less `CLOCK_SKEW`. Task records' times may disagree with the `Date` header, so neither
    clock is trusted alone: with `id_floor` (the highest task id known to exist before the Run was
    sent), a task counts as older than the Run only when its time and its id both say so.

    `complete` says the scan saw every task that could be it, and only then may "no task" let a
    row be paid for again. So the end of the list is never inferred from a short page (a server
    may cap pages below `page_size`), nor from a `total` (whose meaning Wiro does not document):
    `start` moves on by the tasks received, and the end is an empty page, or a page of tasks all
    older than that bound (trusted only on a page in newest-first order). A scan that stops short
    of that (more than `max_scan` tasks, or a server that answers the first page whatever the
    `start`) proves nothing. A listed task that cannot be read whole (an odd field) is judged on
    what can be read: one without a readable `createtime` always counts as recent.

    Task/List may leave out `createtime` and `parameters` (no document promises them): such
    tasks are read with Task/Detail (`_Reader`, at most `max_details`); when even that cannot
    tell, `blind` says why and the outcome is never complete.
    """
    excluded = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)  # a list: one pass, not one a task
    spec = model_spec(model)
    wanted = spec.validate(inputs, allow_unknown=True)
    wanted.pop("callbackUrl", None)
    found: list[WiroTask] = []
    seen: set[str] = set()
    first_page: list[str] = []
    start, complete = 0, False
    newest: int | None = None
    reader = _Reader(client, spec, wanted, max_details, id_floor)
    while start < max_scan:
        page = await client.list_page(start=start, limit=page_size)
        if not page.tasks:
            complete = True
            break
        oldest = _oldest(client, since, since_server)  # the first answer has taught the server's clock
        ids = [t.id for t in page.tasks]
        newest = max([newest or 0, *(n for i in ids if (n := numeric_id(i)) is not None)])
        fresh = [t for t in page.tasks if t.id not in seen]
        # A page of tasks already seen is normal: tasks created meanwhile push the list down
        # (the scan goes on to an empty page). The first page again may mean `start` is ignored,
        # or that exactly that many tasks were created meanwhile: a page far past the end tells.
        if start and not fresh and ids == first_page and (await client.list_page(start=_PAST_END, limit=1)).tasks:
            break
        first_page = first_page or ids
        seen.update(ids)
        ordered = _newest_first(page.tasks)
        judged = [await reader.judge(t, oldest, ordered) for t in fresh if t.id not in excluded]
        found.extend(t for t, match in judged if match)
        start += len(page.tasks)
        if ordered and all(reader.older(t, oldest) for t in page.tasks):
            complete = True
            break
    found.sort(key=lambda t: (t.created_at or since, numeric_id(t.id) or 0))
    blind = "" if found else reader.why_blind()
    complete = (complete or bool(found)) and not blind
    return FindOutcome(tuple(dict.fromkeys(t.id for t in found)), complete, blind, newest or None)


class _Reader:
    """Judges listed tasks, reading with Task/Detail what Task/List leaves out.

    No document promises `createtime` or `parameters` in Task/List. A listed task without
    `parameters`, or one whose `parameters` match but without a `createtime`, is read with
    Task/Detail, newest first, at most `max_details` times a scan. On a page in newest-first
    order, once a task is known to be older than the bound, the tasks after it (lower ids) are
    too: they need no reading. A task that may be the one yet cannot be read (the reads are
    spent, or Task/Detail lacks `parameters` too) makes the scan blind: it proves nothing."""

    def __init__(self, client: AsyncWiroClient, spec: ModelSpec, wanted: dict[str, Value], max_details: int,
                 id_floor: int | None = None) -> None:  # fmt: skip
        self.client = client
        self.floor = id_floor
        self.spec = spec
        self.wanted = wanted
        self.left = max_details
        self.max_details = max_details
        self.past: str | None = None  # the id of the first task found older than the bound
        self.unread: list[str] = []  # tasks that may be the one, whose inputs could not be read
        self.read: dict[str, WiroTask] = {}

    def _implied_older(self, task: WiroTask) -> bool:
        here, past = numeric_id(task.id), numeric_id(self.past or "")
        return here is not None and past is not None and here < past

    def newer_by_id(self, task: WiroTask) -> bool:
        """Whether the task's id says it was made after the Run was sent, whatever its time says."""
        number = numeric_id(task.id)
        return self.floor is not None and number is not None and number > self.floor

    def older(self, task: WiroTask, oldest: datetime) -> bool:
        if self.newer_by_id(task):
            return False
        created = self.read.get(task.id, task).created_at
        return created < oldest if created is not None else self._implied_older(task)

    def _too_old(self, task: WiroTask, oldest: datetime) -> bool:
        return task.created_at is not None and task.created_at < oldest and not self.newer_by_id(task)

    async def judge(self, task: WiroTask, oldest: datetime, ordered: bool) -> tuple[WiroTask, bool]:
        """The task (as read whole, if it had to be) and whether it is the one looked for."""
        match = bool(task.parameters) and self._same(task, oldest)
        if (task.parameters and not match) or self._too_old(task, oldest):
            self._mark(task, oldest, ordered)
            return task, False
        if task.parameters and task.created_at is not None:
            return task, match
        if self._implied_older(task):
            return task, False
        whole = await self._detail(task)
        if whole is None or not whole.parameters:
            if match:  # its inputs match, its age cannot be read: it counts as recent
                return task, True
            self.unread.append(task.id)
            return task, False
        self._mark(whole, oldest, ordered)
        return whole, self._same(whole, oldest)

    def _same(self, task: WiroTask, oldest: datetime) -> bool:
        return not self._too_old(task, oldest) and same_inputs(self.spec, task, self.wanted)

    def _mark(self, task: WiroTask, oldest: datetime, ordered: bool) -> None:
        if ordered and self.past is None and self._too_old(task, oldest):
            self.past = task.id

    async def _detail(self, task: WiroTask) -> WiroTask | None:
        if self.left <= 0:
            return None
        self.left -= 1
        try:
            whole = await self.client.detail(task.id)
        except WiroError as exc:
            if exc.retryable:  # a blip, not an answer: the scan is retried (`find_task`), never taken as blind
                raise
            return None
        self.read[task.id] = whole
        return whole

    def why_blind(self) -> str:
        if not self.unread:
            return ""
        spent = f"; {self.max_details} Task/Detail reads spent" if self.left <= 0 else ""
        return (f"Task/List and Task/Detail do not give the inputs of {len(self.unread)} task(s) that may be "
                f"a lost Run's (newest {self.unread[0]}){spent}: whether it made a task cannot be told")  # fmt: skip


def _oldest(client: AsyncWiroClient, since: datetime, since_server: datetime | None) -> datetime:
    """The earliest server time at which the task looked for may have been created."""
    if since_server is not None:
        return since_server - CLOCK_SKEW
    offset = client.server_clock.offset
    if offset is None:
        return since - UNKNOWN_CLOCK
    return since + timedelta(seconds=offset.low) - CLOCK_SKEW


def inputs_match(model: str, candidate: WiroTask, inputs: dict[str, Value]) -> bool:
    """Whether a task (as Task/Detail or Task/List describes it) was made from these inputs."""
    try:
        spec = model_spec(model)
        wanted = spec.validate(inputs, allow_unknown=True)
    except WiroError:
        return False
    wanted.pop("callbackUrl", None)
    return same_inputs(spec, candidate, wanted)


def same_inputs(spec: ModelSpec, candidate: WiroTask, wanted: dict[str, Value]) -> bool:
    """Whether a task was made from `wanted` (validated, defaults filled in)."""
    if not candidate.parameters:
        return False
    try:
        have = spec.validate(dict(candidate.parameters), allow_unknown=True)
    except WiroError:
        return False
    have.pop("callbackUrl", None)
    return have == wanted


def _newest_first(tasks: tuple[WiroTask, ...]) -> bool:
    """Whether a page is in the order asked for (ids descending), so nothing after it is newer."""
    ids = [numeric_id(t.id) for t in tasks]
    return all(a is not None and b is not None and a > b for a, b in itertools.pairwise(ids))
