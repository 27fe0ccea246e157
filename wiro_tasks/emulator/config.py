"""Settings of the local Wiro emulator: account, timings, outcomes and injected faults."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import Any, Literal, get_args

from .._config import ENV_API_KEY, ENV_API_SECRET

DEFAULT_CPS = Decimal("0.0012")
DEMO_API_KEY = "emulator"
DEFAULT_MODEL_VERSION = "1"

FaultKind = Literal["ok", "500", "503", "429", "drop", "slow", "lost", "dup", "unlisted"]
StopAnswer = Literal["task", "bare", "empty"]
STOP_ANSWERS: tuple[str, ...] = get_args(StopAnswer)
SocketFrames = Literal["emulator", "documented"]
SOCKET_FRAMES: tuple[str, ...] = get_args(SocketFrames)
UploadTypes = Literal["images", "documented"]
UPLOAD_TYPES: tuple[str, ...] = get_args(UploadTypes)
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
SCRIPTS = ("script", "run_script")


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often. Rates are probabilities per request, from 0 to 1.

    `script` forces the outcome of the next requests in order ("ok", "500", "503", "429", "drop",
    "slow", and for Run and File/Upload "lost": the work is done, then the connection drops
    unanswered). `run_script` does the same for Run requests alone, where "dup" also creates the
    task but answers with the task of the Run before it, and "unlisted" is "lost" whose task
    Task/List leaves out until the next Run request (a list that lags behind its writes).
    `run_latency` makes every Run answer late by that many seconds, its task created (and billing)
    meanwhile; `task_clock_offset` moves the times in task records away from the server's `Date`
    header (`clock_offset` moves both).
    """

    error_5xx_rate: float = 0.0
    rate_429: float = 0.0
    retry_after: float = 1.0
    drop_rate: float = 0.0
    lost_run_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 2.0
    download_fault_rate: float = 0.0
    socket_drop_rate: float = 0.0
    clock_offset: float = 0.0  # seconds the server's clock is ahead (negative: behind) of the true time
    task_clock_offset: float = 0.0  # seconds task records' times are ahead (negative: behind) of the `Date` header
    run_latency: float = 0.0  # seconds every Run answer is late; its task is created (and billing) meanwhile
    script: tuple[FaultKind, ...] = ()
    run_script: tuple[FaultKind, ...] = ()
    # Another model version changes these shares of its tasks (see emulator/versions.py).
    model_version: str = DEFAULT_MODEL_VERSION
    version_noise_rate: float = 0.25
    version_redraw_rate: float = 0.15
    version_fail_rate: float = 0.1
    version_slow_rate: float = 0.1
    version_slowdown: float = 3.0

    def __post_init__(self) -> None:
        """Refuse what would be stored wrongly: `"lost"` as a script is not four one-letter steps."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SCRIPTS:
                _check_script(f.name, value)
            elif f.name == "model_version":
                model_version(value)
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name}: must be a number (got {value!r})")
            elif f.name.endswith("_rate") or f.name.startswith("rate_"):
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{f.name}: must be between 0 and 1 (got {value!r})")
            elif f.name in ("clock_offset", "task_clock_offset"):
                if not (math.isfinite(value) and abs(value) <= 10**7):
                    raise ValueError(f"{f.name}: must be a number of seconds, ahead or behind (got {value!r})")
            elif f.name == "version_slowdown":
                if not (math.isfinite(value) and value >= 1):
                    raise ValueError(f"{f.name}: must be a factor of 1 or more (got {value!r})")
            elif not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{f.name}: must be a number of seconds, 0 or more (got {value!r})")

    def updated(self, changes: dict[str, Any]) -> Faults:
        """These faults with `changes` applied (as `POST /_emulator/faults` sends them); a
        `ValueError` names the first bad field and nothing changes."""
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        clean: dict[str, Any] = {k: tuple(v) if k in SCRIPTS and isinstance(v, list) else v for k, v in changes.items()}
        return replace(self, **clean)


def _check_script(name: str, steps: object) -> None:
    run_only = ("dup", "unlisted")  # "lost" is for uploads too
    allowed = FAULT_KINDS if name == "run_script" else tuple(k for k in FAULT_KINDS if k not in run_only)
    if not isinstance(steps, tuple):
        raise ValueError(f"{name}: must be a list of steps, each one of {', '.join(allowed)} (got {steps!r})")
    for step in steps:
        if step not in allowed:
            raise ValueError(f"{name}: {step!r} is not one of {', '.join(allowed)}")


def model_version(value: object) -> str:
    """A model version as the emulator takes it: a short printable name."""
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable():
        raise ValueError(f"model_version must be a printable string of 1 to 64 characters, got {value!r}")
    return value


@dataclass(frozen=True)
class EmulatorConfig:
    """An emulated account and model.

    Times are in model seconds; `time_scale` real seconds pass per model second (0.01 runs a
    100 s task in one real second while `elapsedseconds` and the bill still say 100 s).
    `task_seconds` is the time from accept to the end of post-processing; with
    `task_seconds_max` each task draws its own duration uniformly between the two.
    `list_page_cap` makes Task/List answer at most that many tasks per page whatever `limit`
    asks (Wiro's own cap is undocumented), so clients are tested against short pages.

    Price: a task is billed `elapsedseconds x cps`, unless a `dynamic_price` tier matches its
    inputs (Wiro's tier shape: `{"inputs": {...}, "price": 0.13, "priceMethod": "cpr"}`), which
    then sets its price (a `cps` tier, its rate). Tool/Detail publishes the tiers (as a JSON
    string with `price_as_text`), `advertised_cps` (default: `cps`) and `approximatelycost`
    (`approximate_seconds x cps`, by default the mean task time), or no price at all without
    `publish_price`. A running task that is killed is billed as a success would be so far
    (`bill_kills`, as Wiro's own agent skill warns); without `bill_kills`, only successful tasks
    are billed, as Wiro-Docs `pricing.md` says.

    Closer to the documents (each keeps today's behaviour as its default): `stop_answer` is what
    Cancel and Kill answer: the stopped task (`task`), `{"result": true}` as WiroKit's fixtures
    (`bare`), or an empty `tasklist` as Wiro-MCP's (`empty`). Without `list_fields`, Task/List
    leaves out `createtime` and `parameters`, which no document promises there. With
    `repeat_nonces`, a nonce seen before is accepted (Wiro's n8n nodes reuse one), else refused.
    With `task_error_final`, a task stuck in `task_error` is final, as Wiro-MCP reads it: Cancel
    and Kill refuse it and it is never billed. `socket_frames` is what the task socket sends:
    `{type, id, message, result}` with the status as the message (`emulator`), or Wiro-Docs
    `websocket.md`'s `{type, tasktoken, message}`, a null message on lifecycle events and every
    step of the lifecycle in order, `task_end` and its neighbours included (`documented`).
    `upload_types` is what File/Upload takes: images alone (`images`), or every type `files.md`
    lists, video, audio and documents too (`documented`).
    `DOCUMENTED` is the strictest documented mode.

    Beyond the documents: with `unknown_status` (say `task_weird`), a task that starts running
    reports that status, which no document names, and never ends by itself: only a Kill ends it
    (it bills per second all the while). With `ignore_kills` as well, Cancel and Kill answer that
    they took the stop and change nothing: the task runs on, and bills on, for good.

    `image_fetch_timeout` bounds the fetch of an image-to-video task's `inputImageUrl` when it is
    not one of the emulator's own uploads (a task whose image does not arrive in time fails).
    """

    api_key: str = DEMO_API_KEY
    api_secret: str | None = field(default=None, repr=False)
    balance: Decimal = Decimal("100.00")
    concurrency_limit: int | None = None
    cps: Decimal = DEFAULT_CPS
    queue_seconds: float = 0.5
    task_seconds: float = 3.0
    task_seconds_max: float | None = None
    time_scale: float = 1.0
    fail_rate: float = 0.0
    error_interim_rate: float = 0.0
    hang_rate: float = 0.0
    preview: bool = False
    image_fetch_timeout: float = 10.0
    seed: int = 0
    list_page_cap: int | None = None
    dynamic_price: tuple[dict[str, Any], ...] = ()
    price_as_text: bool = False
    advertised_cps: Decimal | None = None
    approximate_seconds: float | None = None
    publish_price: bool = True
    bill_kills: bool = True
    stop_answer: StopAnswer = "task"
    list_fields: bool = True
    repeat_nonces: bool = False
    task_error_final: bool = False
    unknown_status: str = ""
    ignore_kills: bool = False
    socket_frames: SocketFrames = "emulator"
    upload_types: UploadTypes = "images"
    faults: Faults = Faults()

    def __post_init__(self) -> None:
        if self.stop_answer not in STOP_ANSWERS:
            raise ValueError(f"stop_answer: must be one of {', '.join(STOP_ANSWERS)} (got {self.stop_answer!r})")
        if self.socket_frames not in SOCKET_FRAMES:
            raise ValueError(f"socket_frames: must be one of {', '.join(SOCKET_FRAMES)} (got {self.socket_frames!r})")
        if self.upload_types not in UPLOAD_TYPES:
            raise ValueError(f"upload_types: must be one of {', '.join(UPLOAD_TYPES)} (got {self.upload_types!r})")

    @property
    def approximate_cost(self) -> Decimal:
        seconds = self.approximate_seconds
        if seconds is None:
            seconds = (self.task_seconds + (self.task_seconds_max or self.task_seconds)) / 2
        return (Decimal(str(seconds)) * (self.advertised_cps or self.cps)).quantize(Decimal("0.000001"))

    @classmethod
    def from_env(cls, **overrides: Any) -> EmulatorConfig:
        """Credentials from `WIRO_API_KEY` / `WIRO_API_SECRET`, like a client started beside it."""
        key = os.environ.get(ENV_API_KEY) or DEMO_API_KEY
        secret = os.environ.get(ENV_API_SECRET) or None
        return cls(api_key=key, api_secret=secret, **overrides)

    @property
    def documented(self) -> bool:
        """Whether it runs in the strictest documented mode (`DOCUMENTED`)."""
        return all(getattr(self, name) == value for name, value in DOCUMENTED.items())

    def limit_for(self, balance: Decimal) -> int | None:
        """Wiro's rule: max(1, floor(10% of the balance)) up to $250, no limit above."""
        if self.concurrency_limit is not None:
            return self.concurrency_limit
        if balance > 250:
            return None
        return max(1, int(balance * Decimal("0.10")))


# The strictest reading of Wiro's documents and its own clients' fixtures: Cancel and Kill answer
# without the task, a stopped task is not billed, Task/List carries no field no document promises,
# the task socket sends websocket.md's frames.
DOCUMENTED: dict[str, Any] = {
    "stop_answer": "bare",
    "bill_kills": False,
    "list_fields": False,
    "socket_frames": "documented",
}
