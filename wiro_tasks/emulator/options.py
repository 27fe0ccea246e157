"""The options of `wiro-sweep emulator`, declared once.

Each field of `EmulatorOptions` is one command-line option (`--task-seconds` for `task_seconds`)
and says where its value goes: a field of `EmulatorConfig` (`config.NAME`), of its `Faults`
(`faults.NAME`), or a parameter of `serve` (`serve.NAME`). An option's default is that
field's own default, so it too is written once. From the declaration come:

- `emulator_options`, the decorator that gives a click command every option;
- `EmulatorOptions.config()`, the emulator's config from the parsed values;
- `EmulatorOptions.to_args()`, the command-line arguments that set them (for a subprocess).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from decimal import Decimal
from types import NoneType
from typing import Any, TypeVar, get_args, get_type_hints

import click

from .config import SOCKET_FRAMES, STOP_ANSWERS, UPLOAD_TYPES, EmulatorConfig, Faults

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULTS = {
    "config": {f.name: f.default for f in fields(EmulatorConfig)},
    "faults": {f.name: f.default for f in fields(Faults)},
}
MONEY = ("balance", "cps")  # Decimal settings, given as text so that they stay exact


def _option(
    target: str, help: str = "", *, default: Any = MISSING, type: Any = None, metavar: str | None = None
) -> Any:
    """A field that is an option: `target` is where its value goes, its default that target's
    (`metavar` names its value in `--help`)."""
    where, _, name = target.partition(".")
    if default is MISSING:
        default = _DEFAULTS[where][name]
        default = str(default) if isinstance(default, Decimal) else default
    return field(default=default, metadata={"target": target, "help": help, "type": type, "metavar": metavar})


@dataclass(frozen=True)
class EmulatorOptions:
    """What `wiro-sweep emulator` takes; credentials come from the environment (`EmulatorConfig.from_env`)."""

    host: str = _option("serve.host", "Interface to listen on.", default="127.0.0.1", metavar="HOST")
    port: int = _option("serve.port", "Port to listen on.", default=8765)
    balance: str = _option("config.balance", "Account balance in USD.", metavar="USD")
    concurrency_limit: int | None = _option("config.concurrency_limit", "Fixed limit; default follows the balance.")
    cps: str = _option("config.cps", "USD per second.", metavar="USD")
    queue_seconds: float = _option("config.queue_seconds", "Seconds a task waits in the queue before it starts.")
    task_seconds: float = _option("config.task_seconds", "Seconds a task runs, from accepted to ended.")
    task_seconds_max: float | None = _option("config.task_seconds_max", "Draw each task's time up to this.")
    time_scale: float = _option(
        "config.time_scale", "Real seconds per model second (0.01 runs a 100 s task in 1 s; the bill still says 100 s)."
    )
    fail_rate: float = _option("config.fail_rate", "Share of tasks that end failed (0 to 1).")
    error_rate: float = _option(
        "config.error_interim_rate", "Share of tasks that pass through task_error interims (0 to 1)."
    )
    hang_rate: float = _option("config.hang_rate", "Share of tasks that run until killed (0 to 1).")
    error_5xx_rate: float = _option("faults.error_5xx_rate", "Share of requests answered 500 or 503 (0 to 1).")
    rate_429: float = _option("faults.rate_429", "Share of requests answered 429 Too Many Requests (0 to 1).")
    retry_after: float = _option("faults.retry_after", "Seconds a 429 answer asks to wait (Retry-After).")
    drop_rate: float = _option("faults.drop_rate", "Share of requests whose connection drops unanswered (0 to 1).")
    lost_run_rate: float = _option(
        "faults.lost_run_rate", "Share of Run requests whose task is created, then the answer is lost (0 to 1)."
    )
    slow_rate: float = _option("faults.slow_rate", "Share of requests answered late, by --slow-seconds (0 to 1).")
    slow_seconds: float = _option("faults.slow_seconds", "Seconds a slow answer is late.")
    run_latency: float = _option("faults.run_latency", "Seconds every Run answer is late (its task bills meanwhile).")
    task_clock_offset: float = _option(
        "faults.task_clock_offset", "Seconds task records' times are ahead (negative: behind) of the Date header."
    )
    preview: bool = _option("config.preview", "Small videos, for load tests.")
    seed: int = _option("config.seed", "Seed of the emulator's dice.")
    model_version: str = _option(
        "faults.model_version",
        "Another version changes some videos (slightly or wholly), fails or slows some tasks.",
        metavar="VERSION",
    )
    list_page_cap: int | None = _option(
        "config.list_page_cap",
        "Answer Task/List with at most this many tasks per page, whatever the limit asked (default: no cap).",
        type=click.IntRange(1),
    )
    stop_answer: str = _option(
        "config.stop_answer",
        "What Cancel and Kill answer: the task, or as Wiro's fixtures do: bare {result: true}, or an empty tasklist.",
        type=click.Choice(STOP_ANSWERS),
    )
    bill_kills: bool = _option("config.bill_kills", "Bill a killed running task for its seconds (else only successes).")
    list_fields: bool = _option("config.list_fields", "Task/List carries createtime and parameters (undocumented).")
    repeat_nonces: bool = _option("config.repeat_nonces", "Accept a nonce seen before, as Wiro seems to.")
    task_error_final: bool = _option("config.task_error_final", "A stuck task_error is final: Cancel/Kill refuse it.")
    unknown_status: str = _option(
        "config.unknown_status",
        "A running task reports this status (e.g. task_weird) and ends only when killed.",
        metavar="STATUS",
    )
    ignore_kills: bool = _option("config.ignore_kills", "Cancel and Kill answer success and change nothing.")
    socket_frames: str = _option(
        "config.socket_frames",
        "The task socket's frames: the emulator's {type, id, message, result}, or websocket.md's (every step).",
        type=click.Choice(SOCKET_FRAMES),
    )
    upload_types: str = _option(
        "config.upload_types",
        "What File/Upload takes: images alone, or every type files.md lists (video, audio, documents).",
        type=click.Choice(UPLOAD_TYPES),
    )

    def targets(self, where: str) -> dict[str, Any]:
        """The values that go to `where` ("config", "faults" or "serve"), by the target's names."""
        values = asdict(self)
        found = {}
        for f in fields(self):
            kind, _, name = f.metadata["target"].partition(".")
            if kind == where:
                found[name] = Decimal(values[f.name]) if kind == "config" and name in MONEY else values[f.name]
        return found

    def config(self) -> EmulatorConfig:
        """The emulator's config, credentials from the environment; a bad value is a
        `click.BadParameter` naming its setting (exit code 2)."""
        try:
            settings = self.targets("config")  # the money first, as it is checked first
            settings["faults"] = Faults(**self.targets("faults"))
            return EmulatorConfig.from_env(**settings)
        except ArithmeticError:
            raise click.BadParameter("--balance and --cps must be decimal numbers") from None
        except ValueError as exc:  # a fault rate or time out of range, or a bad version, named by its setting
            hint = "--model-version" if str(exc).startswith("model_version") else None
            raise click.BadParameter(str(exc), param_hint=hint) from None

    def to_args(self) -> list[str]:
        """The command-line arguments that give these options (those that differ from the defaults)."""
        args: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, str(value)]
        return args


def click_options() -> list[click.Option]:
    """One click option per field of `EmulatorOptions`, in their order."""
    hints = get_type_hints(EmulatorOptions)
    made = []
    for f in fields(EmulatorOptions):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"] or None
        if hints[f.name] is bool:
            flags = flag if f.default is False else f"{flag}/--no-{flag[2:]}"  # a default of True can be turned off
            made.append(click.Option([flags], is_flag=True, default=f.default, help=help_text))
            continue
        kind = f.metadata["type"] or next(t for t in (*get_args(hints[f.name]), hints[f.name]) if t is not NoneType)
        shown = f.default is not None
        made.append(click.Option([flag], type=kind, default=f.default, show_default=shown, help=help_text,
                                 metavar=f.metadata["metavar"]))  # fmt: skip
    return made


def emulator_options(command: F) -> F:
    """Gives a click command every option of `EmulatorOptions` (build them with `EmulatorOptions(**values)`)."""
    params = getattr(command, "__click_params__", [])
    params.extend(reversed(click_options()))  # click reverses the decorators' list when it builds the command
    command.__click_params__ = params  # type: ignore[attr-defined]
    return command
