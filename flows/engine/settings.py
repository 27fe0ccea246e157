"""A sweep's parameters, defined once, and the engine's settings drawn from them.

`SweepParams` is the one list: the `wiro-sweep run` options are made from its fields' metadata
(`flows.cli.run`), the flow `sweep` takes the same names (a test ties its signature to these
fields: Prefect needs the signature written out for its UI), the child runs of a sharded sweep
get `child_parameters()`, and the engine gets `settings()`. Money is a `Decimal` all the way:
Prefect's JSON carries it as a string ("0.30") and validates it back to `Decimal("0.30")`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from decimal import ROUND_DOWN, Decimal
from typing import Any

from flows.engine.budget import DEFAULT_ESTIMATE_USD
from flows.errors import InputError
from flows.grid.columns import DEFAULT_MAX_COMBINATIONS

BUDGET_QUANTUM = Decimal("0.00000001")  # a shard's share of the budget is rounded down to this
ROW_TASK_RUNS_MAX = 1000  # rows; 2,000 task runs, where a Prefect server starts to strain (docs/benchmarks.md, 12)
MAX_USD = Decimal(10) ** 9  # no sweep is worth more; far larger amounts are typing mistakes (1e25 cannot be split)


def usd(value: Decimal, name: str) -> Decimal:
    """A money parameter as a sweep takes it: finite, above 0 and below `MAX_USD`; `InputError` (exit 2) if not."""
    if not value.is_finite() or not 0 < value <= MAX_USD:
        raise InputError(f"{name} must be an amount in USD above 0 and at most {MAX_USD:,}, not {value}")
    return value


@dataclass(frozen=True)
class Flag:
    """How a parameter appears on the command line (`wiro-sweep run`)."""

    help: str
    flag: str = ""  # the option's name; "" for `--` and the field's name with dashes
    low: float | None = None  # the smallest value allowed
    high: float | None = None
    metavar: str | None = None
    required: bool = False  # on the command line (the flow may have a default)
    argument: bool = False  # a positional argument (any number of values)
    directory: bool = False  # a path to a directory


def cli(help: str, **flag: Any) -> dict[str, Flag | None]:
    """A field's metadata: how the command line offers it."""
    return {"cli": Flag(help, **flag)}


FLOW_ONLY: dict[str, Flag | None] = {"cli": None}  # a parameter of the flow that the command line does not offer


@dataclass(frozen=True)
class SweepParams:
    """Every parameter of a sweep, as the flow `sweep` takes them (see its docstring for each)."""

    grid: list[str] = field(metadata=cli("CSV or Parquet files, or directories of them.", argument=True))
    out: str = field(default="out", metadata=cli("Videos, manifest and journal.", required=True, directory=True))
    axes: dict[str, list[str]] | None = field(
        default=None, metadata=cli("Sweep an input (repeatable).", flag="--axis", metavar="NAME=V1,V2,...")
    )
    max_concurrency: int = field(
        default=4, metadata=cli("Wiro tasks in flight at once (per shard with --shards).", low=1, high=1000)
    )
    poll_interval: float = field(
        default=3.0, metadata=cli("Seconds before a task's first poll; later ones back off x1.5.", low=0.01)
    )
    poll_cap: float = field(
        default=30.0, metadata=cli("Longest pause between polls (x10 while Wiro's task socket is connected).", low=0.01)
    )
    timeout: float = field(
        default=3600.0, metadata=cli("Seconds from submission until a task is cancelled or killed.", low=0.1)
    )
    budget: Decimal | None = field(
        default=None, metadata=cli("USD the bill never passes (tasks in flight counted at what they may cost).")
    )
    retry_failed: bool = field(default=False, metadata=cli("Submit again rows that failed or timed out."))
    error_grace: float = field(
        default=120.0, metadata=cli("Seconds a task may stay in task_error before it is stopped and failed.", low=0)
    )
    estimate_usd: Decimal = field(
        default=DEFAULT_ESTIMATE_USD, metadata=cli("Cost of a default task, used only when Tool/Detail gives no price.")
    )
    max_combinations: int = field(
        default=DEFAULT_MAX_COMBINATIONS,
        metadata=cli("Refuse (exit 2) a grid that expands past this many combinations.", low=1),
    )
    shards: int = field(
        default=1,
        metadata=cli(
            "Split into child runs of the sweep-shard deployment (needs a Prefect server and workers).", low=1, high=64
        ),
    )
    shard: int | None = field(default=None, metadata=FLOW_ONLY)
    concurrency_limit_name: str | None = field(
        default=None,
        metadata=cli(
            "Prefect global concurrency limit shared by all runs on the account.", flag="--shared-limit", metavar="NAME"
        ),
    )
    baseline: str | None = field(default=None, metadata=FLOW_ONLY)
    model: str | None = field(
        default=None,
        metadata=cli(
            "Run every row on text-to-video or image-to-video (default: image-to-video for rows with a "
            "start image, text-to-video for the rest).",
            metavar="MODEL",
        ),
    )

    row_task_runs_max: int = field(
        default=ROW_TASK_RUNS_MAX,
        metadata=cli(
            "Rows to run up to which each row's submit and wait are task runs of their own; past it, one "
            "task run per 1,000 rows, and one per row that does not succeed (lighter on a Prefect server).",
            low=0,
            metavar="ROWS",
        ),
    )

    def __post_init__(self) -> None:
        """Every parameter within its bounds, whoever set it (the command line, a deployment, the UI):
        a zero `estimate_usd` would price unquoted rows at nothing, a budget of 1e25 cannot be split."""
        if self.budget is not None:
            usd(self.budget, "budget")
        usd(self.estimate_usd, "estimate_usd")
        for f in fields(self):
            flag, value = f.metadata["cli"], getattr(self, f.name)
            if flag is None or not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if (flag.low is not None and value < flag.low) or (flag.high is not None and value > flag.high):
                raise InputError(f"{f.name} must be within {flag.low}..{flag.high}, not {value}")

    @classmethod
    def of(cls, values: dict[str, Any]) -> SweepParams:
        """The parameters among `values` (say, a flow's `locals()`); others are ignored."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def flow_parameters(self) -> dict[str, Any]:
        """Keyword arguments of the flow `sweep`: every parameter."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def budget_share(self) -> Decimal | None:
        """Each shard's part of the budget, rounded down so that the parts never add up past it."""
        if self.budget is None:
            return None
        return (self.budget / self.shards).quantize(BUDGET_QUANTUM, rounding=ROUND_DOWN)

    def child_parameters(self, grid: list[str], out: str, concurrency_limit_name: str) -> dict[str, Any]:
        """What every child run of a sharded sweep is given (each also gets its `shard` and `shards`):
        the grid and OUT as absolute paths, its share of the budget, the shared limit, no baseline."""
        child = replace(self, grid=grid, out=out, budget=self.budget_share(),
                        concurrency_limit_name=concurrency_limit_name, baseline=None)  # fmt: skip
        parameters = child.flow_parameters()
        del parameters["shard"], parameters["shards"]
        return parameters

    def settings(self) -> Settings:
        """How the engine runs this sweep."""
        return Settings(**{name: getattr(self, name) for name in ENGINE_PARAMETERS})


DEFAULTS = SweepParams(grid=[])


@dataclass(frozen=True)
class Settings:
    """The engine's view of a sweep: `ENGINE_PARAMETERS` (defaults from `SweepParams`), plus its own."""

    max_concurrency: int = DEFAULTS.max_concurrency
    poll_interval: float = DEFAULTS.poll_interval
    poll_cap: float = DEFAULTS.poll_cap
    timeout: float = DEFAULTS.timeout
    budget: Decimal | None = DEFAULTS.budget
    retry_failed: bool = DEFAULTS.retry_failed
    error_grace: float = DEFAULTS.error_grace
    estimate_usd: Decimal = DEFAULTS.estimate_usd
    manifest_interval: float = 1.0
    concurrency_limit_name: str | None = DEFAULTS.concurrency_limit_name
    row_task_runs_max: int = DEFAULTS.row_task_runs_max


ENGINE_PARAMETERS = tuple(f.name for f in fields(Settings) if f.name in {g.name for g in fields(SweepParams)})
