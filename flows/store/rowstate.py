"""What a row's journal lines add up to: `RowState`, its lost Runs and its strays, and the times
and amounts the journal records, read defensively (a hand edit or another tool cannot crash a
rerun). `flows/store/journal.py` writes and folds the lines; this module only interprets them."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from wiro_tasks.types import MAX_SECONDS, MAX_TASK_COST, finite_decimal, numeric_id


def utcnow() -> str:
    return _iso(datetime.now(UTC))


def utc_text(value: object) -> str:
    """A recorded time as ISO text in UTC. A zone-less one (a hand edit, another tool) is read as
    UTC rather than crash every rerun that compares it with an aware time; one that is no time at
    all is "" (unknown: an `intent`'s own time is checked by `record_problem`)."""
    if value is None or value == "":
        return ""
    written = _AS_WRITTEN.fullmatch(value) if type(value) is str and len(value) == 24 else None
    if written is not None and _real_day(written.group(1)):  # as `utcnow` writes it: already the answer
        return written.group()
    try:
        moment = datetime.fromisoformat(str(value))
        return _iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except (ValueError, OverflowError):
        return ""


_AS_WRITTEN = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z")


@functools.lru_cache(maxsize=1024)
def _real_day(day: str) -> bool:
    """Whether `YYYY-MM-DD` is a day of the calendar (a journal's lines share a few)."""
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    return True


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class LostRun:
    """A Run request whose answer was lost and whose task was not found: it may still have made one."""

    at: str
    server_at: str = ""
    id_floor: int | None = None


@dataclass(slots=True)
class Stray:
    """A task this sweep paid for that its row did not adopt, and what became of it."""

    task_id: str
    status: str = ""  # "" until it is seen to end
    cost: Decimal = Decimal(0)
    output_url: str = ""
    output_bytes_expected: int | None = None
    path: str = ""  # relative to OUT, once saved
    sha256: str = ""
    size: int | None = None

    @property
    def work_left(self) -> bool:
        """Whether it must still be waited for or fetched."""
        return not self.status or (self.status == "succeeded" and not self.path)


@dataclass(slots=True)
class RowState:
    """Where one row stands, folded from its journal lines."""

    row_id: str
    phase: str = "new"  # new | intent | unknown | submitted | finished | skipped
    task_id: str = ""
    task_ids: list[str] = field(default_factory=list)
    intent_at: str = ""
    intent_server_at: str = ""  # the same moment on the server's clock (a lower bound), when it was known
    intent_id_floor: int | None = None  # the highest task id known to exist before that Run was sent
    submitted_at: str = ""
    status: str = ""
    error: str = ""
    costs: dict[str, Decimal] = field(default_factory=dict)
    elapsed_seconds: Decimal | None = None
    output_url: str = ""
    output_bytes_expected: int | None = None
    finished_at: str = ""
    output_path: str = ""
    output_sha256: str = ""
    output_bytes: int | None = None
    attempts: int = 0
    inputs: dict[str, Any] | None = None  # what the last Run request asked for
    model: str = ""  # ... and of which model (journals before image-to-video did not say: text-to-video)
    account: str = ""  # ... on which account at which API (`claims.account_key`; "" in older journals)
    unended: bool = False  # its task was stopped yet never seen to end: it may still succeed (look again)
    unfound: list[LostRun] = field(default_factory=list)  # lost Runs whose task was never found
    strays: dict[str, Stray] = field(default_factory=dict)  # task id -> a paid task the row did not adopt

    @property
    def cost(self) -> Decimal:
        """What every task of this row cost together (a resubmitted row may have two)."""
        return sum(self.costs.values(), Decimal(0))

    @property
    def has_live_task(self) -> bool:
        """A task exists that has not been seen to finish (or was stopped, yet never seen to end):
        wait for it, stop it on a cancel, count it in the budget, never submit again."""
        return self.phase == "submitted" or (self.phase == "finished" and self.unended)

    @property
    def downloaded(self) -> bool:
        return bool(self.output_path)

    @property
    def every_task_id(self) -> list[str]:
        """The row's own tasks, then its strays: every task this OUT paid for the row."""
        if not self.strays:
            return list(self.task_ids)
        return [*self.task_ids, *(t for t in self.strays if t not in self.task_ids)]

    @property
    def stray_work(self) -> bool:
        """Whether a lost Run's task is still to be looked for, or a stray waited for or fetched."""
        return bool(self.unfound) or any(s.work_left for s in self.strays.values())

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind.startswith("stray"):
            self._apply_stray(kind, event)
        elif kind == "intent":
            self.phase, self.intent_at = "intent", utc_text(event["at"])
            self.intent_server_at = utc_text(event.get("server_at"))
            floor = str(event.get("id_floor", ""))
            self.intent_id_floor = numeric_id(floor)
            self.inputs = event.get("inputs", self.inputs)
            self.model = str(event.get("model") or "")
            self.account = str(event.get("account") or "")
            self.attempts += 1
        elif kind == "unknown":
            self.phase = "unknown"
        elif kind in ("submitted", "adopted"):
            self.phase, self.task_id = "submitted", str(event["task_id"])
            self.submitted_at = utc_text(event.get("at"))
            self.unended = False
            if self.task_id not in self.task_ids:
                self.task_ids.append(self.task_id)
            self.status = self.error = ""
        elif kind == "no_task":
            if self.phase == "unknown":  # its answer was lost, its task not found: it may still exist
                self.unfound.append(LostRun(self.intent_at, self.intent_server_at, self.intent_id_floor))
            self.phase = "new"
            self.error = event.get("reason", "")
        elif kind == "finished":
            self.phase, self.status = "finished", str(event["status"])
            self.task_id = str(event.get("task_id", self.task_id))
            self.error = str(event.get("error", ""))
            cost = _amount(event.get("cost", "0"), MAX_TASK_COST)
            if cost is None:  # written by a version that trusted any figure: never let it stop the OUT
                self.error = "; ".join(filter(None, (self.error, f"journal cost {event.get('cost')!r} unreadable")))
            self.costs[self.task_id] = cost or Decimal(0)
            self.unended = event.get("ended") is False
            self.elapsed_seconds = _amount(event.get("elapsed"), MAX_SECONDS)
            self.output_url = str(event.get("output_url", ""))
            self.output_bytes_expected = _byte_count(event.get("output_bytes"))
            self.finished_at = utc_text(event.get("at"))
            self.output_path = self.output_sha256 = ""
            self.output_bytes = None
        elif kind == "downloaded":
            self.output_path = str(event["path"])
            self.output_sha256 = str(event["sha256"])
            self.output_bytes = int(event["bytes"])
        elif kind == "file_missing":
            self.output_path = self.output_sha256 = ""
            self.output_bytes = None
            self.error = event.get("error", "")
        elif kind in ("download_failed", "note"):
            self.error = event.get("error", "")
        elif kind == "skipped":
            self.phase, self.status, self.error = "skipped", "skipped", event.get("reason", "")

    def _apply_stray(self, kind: str, event: dict[str, Any]) -> None:
        """The stray events: found (for the oldest lost Run whose task was not found), ended, saved."""
        task_id = str(event.get("task_id", ""))
        if kind == "strays_sought":
            self.unfound.clear()
            return
        if kind == "stray":
            if task_id not in self.strays:
                self.strays[task_id] = Stray(task_id)
                del self.unfound[:1]
            return
        stray = self.strays.setdefault(task_id, Stray(task_id))
        if kind == "stray_finished":
            stray.status = str(event["status"])
            stray.cost = _amount(event.get("cost", "0"), MAX_TASK_COST) or Decimal(0)
            self.costs[task_id] = stray.cost
            stray.output_url = str(event.get("output_url", ""))
            stray.output_bytes_expected = _byte_count(event.get("output_bytes"))
            stray.path, stray.sha256, stray.size = "", "", None
        elif kind == "stray_saved":
            stray.path, stray.sha256, stray.size = str(event["path"]), str(event["sha256"]), event["bytes"]
        elif kind == "stray_missing":
            stray.path, stray.sha256, stray.size = "", "", None


def _amount(value: object, limit: Decimal) -> Decimal | None:
    """A recorded amount (cost, seconds): finite, not negative, below `limit`; None otherwise."""
    if value in (None, ""):
        return None
    number = finite_decimal(value)
    return number if number is not None and 0 <= number < limit else None


def _byte_count(value: Any) -> int | None:
    """A size Wiro announced for an output, as the journal holds it: a whole number of bytes, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
