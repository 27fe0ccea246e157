"""The emulated account: its tasks, their lifecycle, the bill and the concurrency limit.

A task's whole future is drawn when it is created (a timeline of statuses, an outcome) and its
status at any moment is read off that timeline, so no background worker moves tasks along.
Prompts may carry directives for tests: `[emulator:fail]`, `[emulator:hang]`,
`[emulator:error]` (a `task_error` interim, then recovery), `[emulator:stuck]` (stays in
`task_error`), `[emulator:seconds=N]` (model seconds from accept to end), and
`[emulator:field NAME=VALUE]`: every answer describing the task says VALUE for its field NAME
(`-` leaves the field out), as an odd or hostile server might (`totalcost=NaN`, `pexit=-`).

Task ids are numeric strings, as Wiro's, that no emulator on this machine gives twice, restarted
or not: each is at least the wall clock in milliseconds when the task is made (`next_task_id`), so
an emulator restarted on the same port (the same account at the same API, to a sweep) never names
a task by an id that an earlier one's task, held in a journal or a claim, had.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..inputs import Value
from ..pricing import ToolPrice
from .config import EmulatorConfig, Faults
from .records import describe
from .versions import drift

_DIRECTIVE = re.compile(r"\[emulator:(fail|hang|error|stuck|seconds=(\d+(?:\.\d+)?))\]")
_FIELD = re.compile(r"\[emulator:field (\w+)=([^\]]*)\]")  # an odd value in every answer about the task
FOREVER = float("inf")
# Share of the accept-to-end time spent in each phase after `task_accept`.
_PHASES = (
    ("task_preprocess_start", 0.0),
    ("task_preprocess_end", 0.04),
    ("task_assign", 0.06),
    ("task_start", 0.10),
    ("task_output", 0.15),
)
_MONEY = Decimal("0.000000000001")
_SECONDS = Decimal("0.0001")


@dataclass
class EmulatedTask:
    """One task and its drawn future (offsets are real seconds after creation)."""

    id: int
    model: str
    parameters: dict[str, Value]
    created: float
    queue: float
    run: float
    fail: bool = False
    hang: bool = False
    error_interim: bool = False
    stuck: bool = False
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(22))
    stopped_at: float | None = None
    output: tuple[str, int] | None = None
    odd_fields: dict[str, str | None] = field(default_factory=dict)
    variant: str = ""  # how this model version renders it (emulator/versions.py)
    failure: str = ""  # why a failed task failed, when it is not a drawn model failure
    odd_status: str = ""  # reported while it runs, instead of the phases; it then ends only when killed

    @property
    def callback_url(self) -> str:
        return str(self.parameters.get("callbackUrl") or "")

    @property
    def accept_at(self) -> float:
        return FOREVER if self.stuck else self.created + self.queue

    @property
    def end_at(self) -> float:
        return FOREVER if self.hang or self.stuck or self.odd_status else self.accept_at + self.run

    def status_at(self, now: float) -> str:
        if self.stopped_at is not None and now >= self.stopped_at:
            return "task_cancel"
        if now >= self.end_at:
            return "task_postprocess_end"
        if now < self.accept_at:
            in_error = self.stuck or (self.error_interim and now >= self.created + self.queue * 0.3)
            return "task_error" if in_error and now >= self.created + self.queue * 0.3 else "task_queue"
        if self.odd_status:
            return self.odd_status
        status = "task_accept"
        for name, share in _PHASES:
            if now >= self.accept_at + self.run * share:
                status = name
        return status

    def next_change(self, now: float) -> float:
        """When the status will next change by itself (`inf` for never)."""
        marks = [self.created + self.queue * 0.3, self.accept_at, self.end_at]
        marks += [self.accept_at + self.run * share for _, share in _PHASES]
        return min((m for m in marks if m > now), default=FOREVER)

    def terminal_at(self, now: float, error_final: bool = False) -> bool:
        """Whether the task has ended; with `error_final`, a stuck `task_error` has (Wiro-MCP's reading)."""
        status = self.status_at(now)
        final = status in ("task_cancel", "task_postprocess_end")
        return final or (error_final and self.stuck and status == "task_error")

    def succeeded_at(self, now: float) -> bool:
        return self.status_at(now) == "task_postprocess_end" and not self.fail


def next_task_id(last: int) -> int:
    """The id after `last`: one more, or the wall clock in milliseconds if that is higher. Ids go up
    by one per task only while tasks come faster than one a millisecond, so a restarted emulator,
    whose ids begin at the clock, starts above every id its predecessor gave."""
    return max(last + 1, time.time_ns() // 1_000_000)


class Account:
    """Everything the emulator knows, behind one lock (the app and tests may share it)."""

    def __init__(self, config: EmulatorConfig, clock: Any = time.monotonic) -> None:
        self.config = config
        self.faults: Faults = config.faults
        self.clock = clock
        self.lock = threading.RLock()
        self.tasks: dict[int, EmulatedTask] = {}
        self.by_token: dict[str, int] = {}
        self.random = random.Random(config.seed)
        self.seen_nonces: set[str] = set()
        self.counters: dict[str, int] = {}
        self.max_in_flight = 0
        self.live: set[int] = set()
        self.callbacks: set[int] = set()
        self.settled = Decimal(0)
        self._last_id = 0
        self.last_created: EmulatedTask | None = None
        self.unlisted: set[int] = set()  # tasks Task/List leaves out until the next Run ("unlisted")
        self._tiers = ToolPrice.from_api({"dynamicprice": list(config.dynamic_price)}).tiers
        self._wall_offset = time.time() - clock()

    # Time and money.

    def wall(self, at: float) -> int:
        """Unix seconds in a task record at monotonic time `at`: the server's clock (skewed by
        `faults.clock_offset`), moved by `faults.task_clock_offset` from its `Date` header."""
        return int(self.wall_time(at) + self.faults.task_clock_offset)

    def wall_time(self, at: float) -> float:
        return float(self._wall_offset + at + self.faults.clock_offset)

    def model_seconds(self, real: float) -> Decimal:
        scale = self.config.time_scale or 1.0
        return (Decimal(str(real)) / Decimal(str(scale))).quantize(_SECONDS)

    def elapsed(self, task: EmulatedTask, now: float) -> Decimal:
        """Model seconds from accept to the end (or to now, or to the kill); queue time is free."""
        end = min(now, task.end_at, task.stopped_at if task.stopped_at is not None else FOREVER)
        return self.model_seconds(max(0.0, end - task.accept_at)) if end > task.accept_at else Decimal(0)

    def cost(self, task: EmulatedTask, now: float) -> Decimal:
        """What a task is billed: its tier's price, or `elapsedseconds * cps`, for finished successes
        and (with `bill_kills`) for kills of running tasks; nothing for failures and tasks
        cancelled in the queue."""
        status = task.status_at(now)
        billed = (status == "task_postprocess_end" and not task.fail) or (
            self.config.bill_kills
            and status == "task_cancel"
            and task.stopped_at is not None
            and task.stopped_at > task.accept_at
        )
        if not billed:
            return Decimal(0)
        fixed, cps = self.price_of(task)
        return fixed if fixed is not None else (self.elapsed(task, now) * cps).quantize(_MONEY)

    def price_of(self, task: EmulatedTask) -> tuple[Decimal | None, Decimal]:
        """A task's fixed price (from a matching `dynamic_price` tier) or None, and its rate per second."""
        matching = (t for t in self._tiers if t.matches(task.parameters))
        for tier in sorted(matching, key=lambda t: (len(t.inputs), t.price), reverse=True):
            if tier.method == "cps":
                return None, tier.price
            price = tier.cost(task.parameters)
            if price is not None:
                return price, self.config.cps
        return None, self.config.cps

    def _settle(self, now: float) -> None:
        """Move tasks that have finished out of the live set, adding their cost to the bill."""
        final = self.config.task_error_final
        for task_id in [i for i in self.live if self.tasks[i].terminal_at(now, final)]:
            self.live.discard(task_id)
            self.settled += self.cost(self.tasks[task_id], now)

    def balance(self, now: float) -> Decimal:
        """What is left: the starting balance less every finished task's bill."""
        with self.lock:
            self._settle(now)
            return self.config.balance - self.settled

    def in_flight(self, now: float) -> int:
        with self.lock:
            self._settle(now)
            return len(self.live)

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    # Lifecycle.

    def create(self, model: str, parameters: dict[str, Value]) -> EmulatedTask:
        """A new task, with its future drawn from the config, the prompt's directives and the RNG."""
        cfg = self.config
        prompt = str(parameters.get("prompt", ""))
        directives = {m.group(1).split("=")[0]: m.group(2) for m in _DIRECTIVE.finditer(prompt)}
        seconds = cfg.task_seconds
        if cfg.task_seconds_max is not None:
            seconds = self.random.uniform(cfg.task_seconds, cfg.task_seconds_max)
        if directives.get("seconds"):
            seconds = float(directives["seconds"])
        changed = drift(self.faults, model, parameters)
        seconds *= changed.slowdown
        scale = cfg.time_scale
        with self.lock:
            self._last_id = next_task_id(self._last_id)
            task = EmulatedTask(
                id=self._last_id,
                model=model,
                parameters=dict(parameters),
                created=self.clock(),
                queue=cfg.queue_seconds * scale,
                run=seconds * scale,
                fail="fail" in directives or changed.fails or self.random.random() < cfg.fail_rate,
                hang="hang" in directives or self.random.random() < cfg.hang_rate,
                error_interim="error" in directives or self.random.random() < cfg.error_interim_rate,
                stuck="stuck" in directives,
                odd_fields={m.group(1): None if m.group(2) == "-" else m.group(2) for m in _FIELD.finditer(prompt)},
                variant=changed.variant,
                odd_status=cfg.unknown_status,
            )
            self.last_created = task
            self.tasks[task.id] = task
            self.by_token[task.token] = task.id
            self.live.add(task.id)
            if task.callback_url:
                self.callbacks.add(task.id)
            self.max_in_flight = max(self.max_in_flight, self.in_flight(task.created))
            self.count("tasks_created")
        return task

    def find(self, task_id: object = None, token: object = None) -> EmulatedTask | None:
        with self.lock:
            if task_id not in (None, ""):
                try:
                    return self.tasks.get(int(str(task_id)))
                except ValueError:
                    return None
            if token:
                found = self.by_token.get(str(token))
                return self.tasks.get(found) if found is not None else None
            return None

    def stop(self, task: EmulatedTask, *, queued_only: bool) -> str | None:
        """Cancel (queued only) or kill; the reason it cannot, or None when it is stopped."""
        with self.lock:
            now = self.clock()
            status = task.status_at(now)
            if task.terminal_at(now, self.config.task_error_final):
                return "task is already finished"
            if queued_only and status not in ("task_queue", "task_error"):
                return "not queued"
            if not self.config.ignore_kills:
                task.stopped_at = now
            return None

    def describe(self, task: EmulatedTask, now: float, file_url: str) -> dict[str, Any]:
        """The task as Task/Detail and Task/List describe it (`records.describe`)."""
        return describe(self, task, now, file_url)

    def stats(self) -> dict[str, Any]:
        """Counters for tests and benchmarks (GET /_emulator/stats)."""
        with self.lock:
            now = self.clock()
            statuses: dict[str, int] = {}
            for t in self.tasks.values():
                s = t.status_at(now)
                statuses[s] = statuses.get(s, 0) + 1
            return {
                "counters": dict(self.counters),
                "tasks": len(self.tasks),
                "statuses": statuses,
                "in_flight": self.in_flight(now),
                "max_in_flight": self.max_in_flight,
                "concurrency_limit": self.config.limit_for(self.balance(now)),
                "balance": str(self.balance(now)),
                "billed": str(self.config.balance - self.balance(now)),
                "running_cost": str(sum((self.running_cost(self.tasks[i], now) for i in self.live), Decimal(0))),
            }

    def running_cost(self, task: EmulatedTask, now: float) -> Decimal:
        """What a task still running has run up so far at its rate (billed when it ends, if it ends)."""
        fixed, cps = self.price_of(task)
        return fixed if fixed is not None else (self.elapsed(task, now) * cps).quantize(_MONEY)

    def intervals(self) -> list[dict[str, Any]]:
        """Each task's life in real monotonic seconds, for utilisation and lag measurements."""
        with self.lock:
            now = self.clock()
            rows = []
            for t in self.tasks.values():
                end = t.stopped_at if t.stopped_at is not None else t.end_at
                rows.append(
                    {
                        "id": str(t.id),
                        "created": t.created,
                        "ended": end if end <= now else None,
                        "ended_wall": self._wall_offset + end if end <= now else None,
                        "status": t.status_at(now),
                        "prompt": str(t.parameters.get("prompt", "")),
                        "seed": str(t.parameters.get("seed", "")),
                    }
                )
            return rows
