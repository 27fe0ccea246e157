"""The model inputs: defaults, coercion, and a clear message for every broken rule."""

from __future__ import annotations

import pytest

from wiro_tasks import (
    IMAGE_TO_VIDEO,
    TEXT_TO_VIDEO,
    ImageToVideoInput,
    InputValidationError,
    TextToVideoInput,
    model_spec,
)


def test_defaults_are_the_model_pages() -> None:
    t = TextToVideoInput(prompt="a lighthouse at dusk")
    assert t.to_wire() == {
        "prompt": "a lighthouse at dusk",
        "negativePrompt": "bad quality, low detail, unrealistic water movement, washed-out colors",
        "size": "832*480",
        "numFrames": 121,
        "scale": 5.0,
        "steps": 25,
        "fps": 16,
        "seed": "42",
    }
    assert (t.width, t.height) == (832, 480)
    assert t.duration == pytest.approx(7.5625)
    assert ImageToVideoInput(input_image_url="https://x/y.png", prompt="p").negative_prompt == ("bad quality, blurry")


def test_strings_and_numbers_are_coerced_like_wiro_does() -> None:
    t = TextToVideoInput.from_wire(
        {"prompt": "p", "numFrames": "81", "scale": "6.5", "steps": 30.0, "fps": "24", "seed": 7}
    )
    assert isinstance(t, TextToVideoInput)
    assert (t.num_frames, t.scale, t.steps, t.fps, t.seed) == (81, 6.5, 30, 24, "7")


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("numFrames", 120, "must be 4n+1"),
        ("numFrames", 1001, "must be between 5 and 241"),
        ("numFrames", "12.5", "must be integer"),
        ("size", "1280*720", "must be one of 832*480, 480*832"),
        ("scale", "loud", "must be integer or float"),
        ("scale", 21, "must be between 0 and 20"),
        ("scale", float("nan"), None),
        ("steps", 0, "must be between 1 and 100"),
        ("fps", True, "must be integer"),
        ("seed", "-3", "must be an integer between 0 and 4294967295"),
        ("seed", "abc", "must be an integer"),
        ("callbackUrl", "ftp://x", "must be an http(s) URL"),
        ("prompt", "", "required"),
        ("prompt", "   ", "required"),
        ("prompt", "bell\x07", "control character U+0007"),
        ("prompt", "x" * 2001, "at most 2000 characters"),
        ("negativePrompt", "nul\x00", "control character U+0000"),
        pytest.param("numFrames", 10**400, "must be between 5 and 241", id="numFrames-int-400-digits"),
        pytest.param("numFrames", "9" * 400, "must be between 5 and 241", id="numFrames-text-400-digits"),
        pytest.param("numFrames", "9" * 5000, "must be integer", id="numFrames-text-5000-digits"),
        pytest.param("numFrames", 10**5000, "must be between 5 and 241", id="numFrames-int-5000-digits"),
        pytest.param("scale", 10**400, "must be between 0 and 20", id="scale-int-400-digits"),
        pytest.param("scale", -(10**400), "must be between 0 and 20", id="scale-negative-400-digits"),
        pytest.param("steps", 2**63, "must be between 1 and 100", id="steps-2**63"),
        pytest.param("seed", 10**400, "must be an integer between 0", id="seed-int-400-digits"),
        pytest.param("seed", "9" * 5000, "must be an integer between 0", id="seed-text-5000-digits"),
        pytest.param("prompt", 10**5000, "must be text", id="prompt-int-5000-digits"),
    ],
)
def test_each_rule_names_field_and_rule(field: str, value: object, rule: str | None) -> None:
    raw: dict[str, object] = {"prompt": "a cat"}
    raw[field] = value
    if value != value:  # NaN: an empty DataFrame cell, so the default applies
        assert model_spec(TEXT_TO_VIDEO).validate(raw)[field] == 5.0
        return
    with pytest.raises(InputValidationError) as caught:
        model_spec(TEXT_TO_VIDEO).validate(raw)
    assert caught.value.field == field
    assert rule is not None
    assert rule in caught.value.rule
    assert str(caught.value).startswith(f"{field}: ")


def test_unicode_prompts_are_fine() -> None:
    t = TextToVideoInput(prompt="一只猫在雪地里奔跑 🐈\nsecond line")
    assert t.prompt.startswith("一只猫")


def test_unknown_inputs_and_models_are_refused() -> None:
    with pytest.raises(InputValidationError, match="is not an input of"):
        TextToVideoInput.from_wire({"prompt": "p", "numframes": 81})
    with pytest.raises(InputValidationError, match="must be one of"):
        model_spec("Wan-AI/Wan2.1-T2V-14B")


def test_image_to_video_rules() -> None:
    spec = model_spec(IMAGE_TO_VIDEO)
    ok = spec.validate({"inputImageUrl": "https://cdn.example/a.png", "prompt": "p", "width": "512"})
    assert (ok["width"], ok["height"]) == (512, 0)
    with pytest.raises(InputValidationError, match="inputImageUrl: required"):
        spec.validate({"prompt": "p"})
    with pytest.raises(InputValidationError, match="multiple of 32"):
        spec.validate({"inputImageUrl": "https://a/b.png", "prompt": "p", "height": 500})
    with pytest.raises(InputValidationError, match="is not an input of"):
        spec.validate({"inputImageUrl": "https://a/b.png", "prompt": "p", "size": "832*480"})


def test_typed_inputs_validate_on_creation() -> None:
    with pytest.raises(InputValidationError, match="numFrames"):
        TextToVideoInput(prompt="p", num_frames=8)


def test_huge_numbers_are_validation_errors_with_short_messages() -> None:
    with pytest.raises(InputValidationError, match="numFrames: must be between 5 and 241") as caught:
        TextToVideoInput(prompt="a", num_frames=10**400)
    assert len(str(caught.value)) < 160, "the value is cut short in the message"


def test_numbers_keep_their_types() -> None:
    t = TextToVideoInput.from_wire({"prompt": "p", "scale": 7, "numFrames": " 81 ", "steps": "30"})
    assert isinstance(t, TextToVideoInput)
    assert (t.scale, t.num_frames, t.steps) == (7.0, 81, 30)
    assert type(t.scale) is float
    assert type(t.num_frames) is int
