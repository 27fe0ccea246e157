"""Inputs of the two Wan 2.2 TI2V-5B models, with the model page's defaults and rules.

One `ModelSpec` per model lists its parameters; `ModelSpec.validate` coerces a mapping of Wiro
names (strings or numbers, as Wiro accepts) into typed values or raises `InputValidationError`
naming the field and the rule. The client validates before sending; the emulator answers the same
rules with Wiro's error messages. `TextToVideoInput` and `ImageToVideoInput` are the typed forms.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from ._exceptions import InputValidationError

TEXT_TO_VIDEO = "Wan-AI/Wan2.2-TI2V-5B-text-to-video"
IMAGE_TO_VIDEO = "Wan-AI/Wan2.2-TI2V-5B-image-to-video"

T2V_NEGATIVE_PROMPT = "bad quality, low detail, unrealistic water movement, washed-out colors"
I2V_NEGATIVE_PROMPT = "bad quality, blurry"
SIZES = ("832*480", "480*832")
MAX_PROMPT_CHARS = 2000
MAX_URL_CHARS = 4096  # far past any real file URL; a Run body carrying more is refused (413) after all
MAX_SEED = 2**32 - 1

Kind = Literal["text", "int", "float", "choice", "url", "seed"]
Value = str | int | float
Memo = dict[tuple[str, str, type, object], Value]
"""Values already coerced, by model, parameter and raw value (`ModelSpec.validate`)."""
_MEMO_TYPES = (str, int, float)  # exactly these (a bool is not an int here): hashable, and equal only when alike
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
"""Unicode's control (Cc) and surrogate (Cs) characters, and the line and paragraph separators; not tab, LF or CR."""


@dataclass(frozen=True)
class Param:
    """One model parameter: its Wiro name, type, default and limits."""

    name: str
    kind: Kind
    default: Value | None = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    frames_rule: bool = False
    allow_zero: bool = False
    multiple_of: int | None = None

    def coerce(self, raw: object) -> Value:
        """The typed value of `raw`, or `InputValidationError` with the broken rule."""
        if self.kind in ("text", "choice", "url", "seed"):
            return self._coerce_text(raw)
        number = _number(self.name, raw, integer=self.kind == "int")
        if self.allow_zero and number == 0:
            return float(number) if self.kind == "float" else number
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None and not lo <= number <= hi:
            extra = " (or 0)" if self.allow_zero else ""
            raise InputValidationError(self.name, f"must be between {_fmt(lo)} and {_fmt(hi)}{extra}", raw)
        if self.frames_rule and (int(number) - 1) % 4:
            raise InputValidationError(self.name, "must be 4n+1 (5, 9, ..., 81, ..., 121, ...)", raw)
        if self.multiple_of and int(number) % self.multiple_of:
            raise InputValidationError(self.name, f"must be a multiple of {self.multiple_of}", raw)
        if self.kind == "float":
            try:
                return float(number)  # an int in range (checked above, exactly) always fits
            except OverflowError:
                raise InputValidationError(self.name, "must be integer or float", raw) from None
        return number

    def _coerce_text(self, raw: object) -> str:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise InputValidationError(self.name, "must be text", raw)
        if isinstance(raw, float) and not raw.is_integer():
            raise InputValidationError(self.name, "must be text", raw)
        try:
            text = str(int(raw)) if isinstance(raw, float) else str(raw)
        except ValueError:  # an int past Python's 4300-digit limit for str()
            raise InputValidationError(self.name, "must be text", raw) from None
        if self.kind == "choice":
            if text not in self.choices:
                raise InputValidationError(self.name, f"must be one of {', '.join(self.choices)}", raw)
            return text
        if self.kind == "seed":
            if not re.fullmatch(r"\s*\d{1,20}\s*", text) or int(text) > MAX_SEED:
                raise InputValidationError(self.name, f"must be an integer between 0 and {MAX_SEED}", raw)
            return str(int(text))
        if self.kind == "url":
            text = text.strip()
            if len(text) > MAX_URL_CHARS:
                raise InputValidationError(self.name, f"must be at most {MAX_URL_CHARS} characters (has {len(text)})")
            if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
                raise InputValidationError(
                    self.name, "must be an http(s) URL without spaces or control characters", raw
                )
            parts = urlsplit(text)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InputValidationError(self.name, "must be an http(s) URL", raw)
            return text
        bad = _bad_character(text)
        if bad is not None:
            raise InputValidationError(self.name, f"must not contain control character {bad}", raw)
        if self.required and not text.strip():
            raise InputValidationError(self.name, "required", raw)
        if len(text) > MAX_PROMPT_CHARS:
            raise InputValidationError(
                self.name, f"must be at most {MAX_PROMPT_CHARS} characters (has {len(text)})", None
            )
        return text


@dataclass(frozen=True)
class ModelSpec:
    """A Wiro model ("tool"): its slug and parameters, in the model page's order."""

    slug: str
    params: tuple[Param, ...]

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @functools.cached_property
    def _known(self) -> frozenset[str]:
        return frozenset((*self.names, "projectid"))

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def validate(
        self, raw: Mapping[str, object], *, allow_unknown: bool = False, memo: Memo | None = None
    ) -> dict[str, Value]:
        """Typed values for every parameter, defaults filled in; the first broken rule raises.

        `memo` (a dict the caller keeps) remembers each value coerced: a grid of 100,000 rows that
        repeats its prompts, seeds and sizes checks each distinct value once."""
        if not allow_unknown and not raw.keys() <= self._known:
            unknown = sorted(set(raw) - self._known)
            raise InputValidationError(unknown[0], f"is not an input of {self.slug}", raw[unknown[0]])
        values: dict[str, Value] = {}
        slug = self.slug
        for p in self.params:
            given = raw.get(p.name)
            if given is None or _missing(given, p):
                if p.required:
                    raise InputValidationError(p.name, "required", None)
                if p.default is None:
                    continue
                given = p.default
            kind = type(given)
            if memo is None or kind not in _MEMO_TYPES:
                values[p.name] = p.coerce(given)
                continue
            key = (slug, p.name, kind, repr(given) if kind is float else given)  # -0.0 is not 0.0
            value = memo.get(key, _UNSEEN)
            if value is _UNSEEN:
                value = memo[key] = p.coerce(given)  # a broken rule raises, and is not remembered
            values[p.name] = value
        return values


_UNSEEN: Any = object()


def _missing(value: object, param: Param) -> bool:
    """None, NaN (an empty cell of a DataFrame), or an empty string where text is not free."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and not value.strip() and param.kind != "text"


def _text(name: str, default: str | None = None, *, required: bool = False) -> Param:
    return Param(name, "text", default=default, required=required)


_COMMON_TAIL = (
    Param("numFrames", "int", 121, minimum=5, maximum=241, frames_rule=True),
    Param("scale", "float", 5.0, minimum=0.0, maximum=20.0),
    Param("steps", "int", 25, minimum=1, maximum=100),
    Param("fps", "int", 16, minimum=1, maximum=60),
)

TEXT_TO_VIDEO_SPEC = ModelSpec(
    TEXT_TO_VIDEO,
    (
        _text("prompt", required=True),
        _text("negativePrompt", T2V_NEGATIVE_PROMPT),
        Param("size", "choice", SIZES[0], choices=SIZES),
        *_COMMON_TAIL,
        Param("seed", "seed", "42"),
        Param("callbackUrl", "url"),
    ),
)

IMAGE_TO_VIDEO_SPEC = ModelSpec(
    IMAGE_TO_VIDEO,
    (
        Param("inputImageUrl", "url", required=True),
        _text("prompt", required=True),
        _text("negativePrompt", I2V_NEGATIVE_PROMPT),
        Param("width", "int", 0, minimum=256, maximum=1280, allow_zero=True, multiple_of=32),
        Param("height", "int", 0, minimum=256, maximum=1280, allow_zero=True, multiple_of=32),
        *_COMMON_TAIL,
        Param("seed", "seed", "42"),
        Param("callbackUrl", "url"),
    ),
)

MODELS: dict[str, ModelSpec] = {s.slug: s for s in (TEXT_TO_VIDEO_SPEC, IMAGE_TO_VIDEO_SPEC)}


def model_spec(slug: str) -> ModelSpec:
    """The spec of a known model, or `InputValidationError` naming the ones that exist."""
    try:
        return MODELS[slug]
    except KeyError:
        raise InputValidationError("model", f"must be one of {', '.join(MODELS)}", slug) from None


class _WireInput:
    """Shared behaviour of the typed inputs: validation on creation, and the wire form."""

    MODEL: ClassVar[str]
    _WIRE: ClassVar[dict[str, str]]

    def __post_init__(self) -> None:
        checked = model_spec(self.MODEL).validate(self._raw())
        for attr, wire in self._WIRE.items():
            if wire in checked:
                object.__setattr__(self, attr, checked[wire])

    def _raw(self) -> dict[str, Value]:
        raw = {wire: getattr(self, attr) for attr, wire in self._WIRE.items()}
        return {k: v for k, v in raw.items() if v is not None}

    def to_wire(self) -> dict[str, Value]:
        """The JSON body of a Run request: Wiro's names; numbers as numbers, text as text."""
        return self._raw()

    @classmethod
    def from_wire(cls, raw: Mapping[str, object]) -> _WireInput:
        """Build from Wiro names (strings or numbers); unknown names are refused."""
        model_spec(cls.MODEL).validate(raw)
        by_wire = {wire: attr for attr, wire in cls._WIRE.items()}
        return cls(**{by_wire[k]: v for k, v in raw.items() if k in by_wire})


@dataclass(frozen=True, kw_only=True)
class _VideoInput(_WireInput):
    """The inputs both models take after their own (`_COMMON_TAIL`, seed, callbackUrl); by keyword."""

    num_frames: int = 121
    scale: float = 5.0
    steps: int = 25
    fps: int = 16
    seed: str = "42"
    callback_url: str | None = None


@dataclass(frozen=True)
class TextToVideoInput(_VideoInput):
    """Inputs of `Wan-AI/Wan2.2-TI2V-5B-text-to-video`, validated on creation."""

    MODEL: ClassVar[str] = TEXT_TO_VIDEO

    prompt: str
    negative_prompt: str = T2V_NEGATIVE_PROMPT
    size: str = SIZES[0]

    @property
    def width(self) -> int:
        return int(self.size.split("*")[0])

    @property
    def height(self) -> int:
        return int(self.size.split("*")[1])

    @property
    def duration(self) -> float:
        """Seconds of video: numFrames / fps."""
        return self.num_frames / self.fps


@dataclass(frozen=True)
class ImageToVideoInput(_VideoInput):
    """Inputs of `Wan-AI/Wan2.2-TI2V-5B-image-to-video`; width/height 0 follow the image."""

    MODEL: ClassVar[str] = IMAGE_TO_VIDEO

    input_image_url: str
    prompt: str
    negative_prompt: str = I2V_NEGATIVE_PROMPT
    width: int = 0
    height: int = 0


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _wire_names(cls: type[_VideoInput]) -> dict[str, str]:
    """Each attribute's Wiro name, in the model page's order (that of a Run body)."""
    by_wire = {_camel(f.name): f.name for f in fields(cls)}
    return {by_wire[name]: name for name in model_spec(cls.MODEL).names}


TextToVideoInput._WIRE = _wire_names(TextToVideoInput)
ImageToVideoInput._WIRE = _wire_names(ImageToVideoInput)

ModelInput = TextToVideoInput | ImageToVideoInput


def _number(name: str, raw: object, *, integer: bool) -> int | float:
    """`raw` as an exact number: ints stay ints however long (a float() of a 400-digit int
    overflows), so the range check compares exactly and says what is wrong."""
    rule = "must be integer" if integer else "must be integer or float"
    if isinstance(raw, bool):
        raise InputValidationError(name, rule, raw)
    value: int | float
    if isinstance(raw, (int, float)):
        value = raw
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            value = int(text)  # past 4300 digits this raises too, and float() says inf
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise InputValidationError(name, rule, raw) from None
    else:
        raise InputValidationError(name, rule, raw)
    if isinstance(value, int):
        return value
    if not math.isfinite(value):
        raise InputValidationError(name, rule, raw)
    if integer:
        if not value.is_integer():
            raise InputValidationError(name, rule, raw)
        return int(value)
    return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _bad_character(text: str) -> str | None:
    """The first control character of `text` (`_CONTROL`) as U+XXXX, or None."""
    found = _CONTROL.search(text)
    return f"U+{ord(found.group()):04X}" if found else None
