"""The `wiro-sweep run` options, made from `SweepParams`: one option (or argument) per field that
the command line offers, with the field's default, type, bounds and help.

Money options (`--budget`, `--estimate-usd`) are read as text straight into a `Decimal` (never a
float), and must be a finite amount above 0.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from decimal import Decimal, InvalidOperation
from typing import Any, Union, get_args, get_origin, get_type_hints

import click

from flows.engine.settings import Flag, SweepParams, usd
from flows.errors import InputError

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def cli_fields() -> list[tuple[Field[Any], Flag]]:
    """The fields of `SweepParams` the command line offers, in their order, with how it offers them."""
    return [(f, f.metadata["cli"]) for f in fields(SweepParams) if f.metadata["cli"] is not None]


def flag_name(f: Field[Any], flag: Flag) -> str:
    return flag.flag or "--" + f.name.replace("_", "-")


def money(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> Decimal | None:
    """A USD amount as typed, exactly: a finite `Decimal` above 0 (None when not given)."""
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not an amount in USD") from None
    if not amount.is_finite() or amount <= 0:
        raise click.BadParameter("must be more than 0")
    try:
        return usd(amount, param.name if param and param.name else "amount")
    except InputError as exc:
        raise click.BadParameter(str(exc)) from None


def _bare(hint: Any) -> Any:
    """`int` for `int | None`; the type itself otherwise."""
    if get_origin(hint) in (Union, types.UnionType):
        kinds = [a for a in get_args(hint) if a is not type(None)]
        return kinds[0] if len(kinds) == 1 else hint
    return hint


def _decorator(f: Field[Any], flag: Flag, hint: Any) -> Decorator:
    if flag.argument:
        return click.argument(f.name, nargs=-1, required=True, type=click.Path())
    name, kind = flag_name(f, flag), _bare(hint)
    unset = f.default is MISSING or f.default is None or flag.required  # required here: no default shown
    given = {} if unset else {"default": f.default, "show_default": True}
    options: dict[str, Any] = {"help": flag.help, "metavar": flag.metavar, "required": flag.required, **given}
    if kind is bool:
        return click.option(name, f.name, is_flag=True, help=flag.help)
    if kind is Decimal:
        options.update(callback=money, metavar=flag.metavar or "USD")
        if given:
            options["default"] = str(f.default)
    elif kind is int:
        low, high = (None if b is None else int(b) for b in (flag.low, flag.high))
        options["type"] = click.IntRange(low, high)
    elif kind is float:
        options["type"] = click.FloatRange(flag.low, flag.high)
    elif get_origin(kind) is dict:  # NAME=V1,V2 values, parsed by the command (`flows.grid.parse_axes`)
        options["multiple"] = True
    elif flag.directory:
        options["type"] = click.Path(file_okay=False)
    return click.option(name, f.name, **options)


def sweep_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `command` every option of `SweepParams`, in the dataclass's order (as keyword arguments
    named after the fields)."""
    hints = get_type_hints(SweepParams)
    for f, flag in reversed(cli_fields()):  # click lists the options in the order they were added, last first
        command = _decorator(f, flag, hints[f.name])(command)
    return command
