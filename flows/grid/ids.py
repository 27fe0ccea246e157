"""A row's id: the model and its resolved inputs, as JSON, hashed. Every OUT names its rows, its
journal's lines and its videos by these ids, so their bytes never change: a row named anew would
be paid for again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]

from wiro_tasks.inputs import Value


def canonical(values: Mapping[str, Value]) -> dict[str, Value]:
    """One spelling per value, so equal inputs make one combination: `-0.0` becomes `0.0`
    (`scale=0,-0.0` was two rows, and two paid tasks, of one input)."""
    return {k: 0.0 if isinstance(v, float) and v == 0 else v for k, v in values.items()}


def row_id(model: str, values: Mapping[str, Value]) -> str:
    """A stable id from the model and the resolved inputs: reordering a file keeps it, and so
    does spelling a number another way (`5`, `05`, `5.0`, `-0.0` and `0`)."""
    return _id_of(model, canonical(values))


def _id_of(model: str, values: Mapping[str, Value]) -> str:
    """`row_id` of values already `canonical`: the SHA-256 of `json.dumps(..., sort_keys=True,
    separators=(",", ":"))`, whose bytes every OUT's rows are named by."""
    text = "".join(_ID_JSON({"model": model, "inputs": values}, 0))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _id_encoder() -> Callable[[object, int], Iterable[str]]:
    """`json.dumps`'s encoder for ids, made once: `JSONEncoder.encode` makes a new one each call
    (a quarter of a second at 100,000 rows). Python's own encoder where the C one is missing."""
    plain = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
    if c_make_encoder is None:
        return lambda value, _: [plain.encode(value)]
    made: Callable[[object, int], Iterable[str]] = c_make_encoder(
        None, plain.default, encode_basestring_ascii, None, ":", ",", True, False, True
    )  # no markers: an id's values hold no cycle
    return made


_ID_JSON = _id_encoder()
