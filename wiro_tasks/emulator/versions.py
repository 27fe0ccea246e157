"""Model versions: what another version of the emulated model does differently, task by task.

The default version (`DEFAULT_MODEL_VERSION`, "1") renders every task as the emulator always
has. Any other version (`wiro-sweep emulator --model-version 2`, or `POST /_emulator/faults`
`{"model_version": "2"}`) changes some tasks, the same ones every time for the same version
and inputs, in shares set by the `version_*` fault settings:

- `version_noise_rate`: the same video with faint pixel noise (a re-encode; reads ~45 dB PSNR);
- `version_redraw_rate`: a wholly different video (reads ~7-13 dB);
- `version_fail_rate`: the task fails;
- `version_slow_rate`: the task runs `version_slowdown` times longer (and is billed for it).

So two emulated nights, one per version, show every kind of change a regression run looks for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from ..inputs import Value
from .config import DEFAULT_MODEL_VERSION, Faults
from .dice import weighted_pick

_NOT_INPUTS = ("callbackUrl", "projectid")


@dataclass(frozen=True)
class Drift:
    """What a model version does to one task: its render variant, failure, and time factor."""

    kind: str = "same"  # same, noise, redraw, fail or slow
    variant: str = ""  # for render_mp4: "", "noise:TAG" or "redraw:TAG"
    fails: bool = False
    slowdown: float = 1.0


def drift(faults: Faults, model: str, parameters: Mapping[str, Value]) -> Drift:
    """What `faults.model_version` does to a task of `model` with these inputs."""
    version = faults.model_version
    if version == DEFAULT_MODEL_VERSION:
        return Drift()
    inputs = {k: str(v) for k, v in parameters.items() if k not in _NOT_INPUTS}
    digest = hashlib.sha256(json.dumps([version, model, inputs], sort_keys=True).encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    tag = f"{version}:{digest[8:16].hex()}"
    kind = weighted_pick(
        draw,
        (
            ("noise", faults.version_noise_rate),
            ("redraw", faults.version_redraw_rate),
            ("fail", faults.version_fail_rate),
            ("slow", faults.version_slow_rate),
        ),
    )
    if kind in ("noise", "redraw"):
        return Drift(kind, variant=f"{kind}:{tag}")
    if kind == "fail":
        return Drift("fail", fails=True)
    if kind == "slow":
        return Drift("slow", slowdown=faults.version_slowdown)  # at least 1: Faults refuses less
    return Drift()
