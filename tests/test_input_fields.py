"""The typed inputs match their model's parameters: one attribute per parameter, with its default."""

from __future__ import annotations

from dataclasses import MISSING, fields

import pytest

from wiro_tasks import ImageToVideoInput, TextToVideoInput
from wiro_tasks.inputs import model_spec


@pytest.mark.parametrize("cls", [TextToVideoInput, ImageToVideoInput])
def test_each_input_class_has_its_models_parameters_and_defaults(cls: type[TextToVideoInput]) -> None:
    spec = model_spec(cls.MODEL)
    attributes = {f.name: f for f in fields(cls)}
    assert list(cls._WIRE.values()) == list(spec.names), "one attribute per parameter, in the page's order"
    for attribute, wire in cls._WIRE.items():
        default = attributes[attribute].default
        expected = spec.param(wire).default
        if default is MISSING:
            assert spec.param(wire).required, wire
        elif expected is not None:
            assert spec.param(wire).coerce(default) == spec.param(wire).coerce(expected), wire


def test_the_shared_inputs_are_passed_by_name_after_each_models_own() -> None:
    i2v = ImageToVideoInput("https://x/y.png", "the image moves", num_frames=33, seed="7")
    t2v = TextToVideoInput("a fox", num_frames=33, seed="7")
    assert (i2v.num_frames, i2v.seed, t2v.num_frames, t2v.seed) == (33, "7", 33, "7")
    assert list(t2v.to_wire()) == ["prompt", "negativePrompt", "size", "numFrames", "scale", "steps", "fps", "seed"]
