"""Finished sweeps on disk, made the real way: grid, journal, MP4s from the emulator's renderer, manifest.

    night(tmp / "a", [Row(FOX), Row(BOAT, status="failed")])
    night(tmp / "b", [Row(FOX, variant="redraw:2"), Row(BOAT)])

A row's `variant` is what another model version renders for it (wiro_tasks/emulator/versions.py);
`render` overrides what is drawn without changing the row (a model that changed its output's
size, frame count or fps), so the row keeps its row_id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pandas as pd

from flows.grid import INPUTS, expand_grid
from flows.store.journal import Journal
from flows.store.manifest import build_manifest, write_manifest
from wiro_tasks.emulator.app import Renderer
from wiro_tasks.emulator.state import EmulatedTask
from wiro_tasks.emulator.video import render_mp4
from wiro_tasks.inputs import TEXT_TO_VIDEO, model_spec

FRAMES = 33  # 2 s at 16 fps: short clips keep the suite quick; the size is the model's own 832*480


@dataclass(frozen=True)
class Row:
    prompt: str
    seed: str = "1"
    status: str = "succeeded"
    variant: str = ""
    elapsed: float = 3.0
    cost: str = "0.0036"
    error: str = ""
    render: dict[str, Any] = field(default_factory=dict)  # e.g. {"num_frames": 17}


@dataclass(frozen=True)
class End:
    """How a row's one task ended, as its `finished` journal line says."""

    status: str
    cost: str
    elapsed: str
    error: str = ""


def emulator_video(renders: Path, row: Mapping[str, Any], variant: str = "") -> bytes:
    """The MP4 the emulator serves for a row: its Run body validated, then its renderer (no --preview)."""
    parameters = model_spec(TEXT_TO_VIDEO).validate({name: row[name] for name in INPUTS}, allow_unknown=True)
    task = EmulatedTask(id=1, model=TEXT_TO_VIDEO, parameters=parameters, created=0.0, queue=0.0, run=0.0,
                        variant=variant)  # fmt: skip
    _, size, path = Renderer(renders, preview=False).render(task)
    data = path.read_bytes()
    assert len(data) == size
    return data


def render(row: dict[str, Any], spec: Row, renders: Path) -> bytes:
    """The MP4 the emulator serves for this row (its renderer, the row's variant), or an override."""
    if not spec.render:
        return emulator_video(renders, row, spec.variant)
    parameters = model_spec(TEXT_TO_VIDEO).validate({name: row[name] for name in INPUTS}, allow_unknown=True)
    width, height = (int(x) for x in str(parameters["size"]).split("*"))
    args: dict[str, Any] = {"width": width, "height": height, "num_frames": int(parameters["numFrames"]),
                            "fps": int(parameters["fps"]), "prompt": str(parameters["prompt"]),
                            "seed": str(parameters["seed"]), "variant": spec.variant, **spec.render}  # fmt: skip
    label = f"steps {parameters['steps']}  scale {parameters['scale']}  {args['width']}x{args['height']}"
    return render_mp4(**args, label=label)  # the caption the emulator's renderer writes


def finished_out(
    out: Path, grid: pd.DataFrame, ends: list[End], video: Callable[[dict[str, Any]], bytes], first_task: int
) -> pd.DataFrame:
    """Write a finished sweep of `grid` into `out` (row n ended as `ends[n]`, its task id
    `first_task + n`): the journal, each success's `video(row)` under videos/, the manifest."""
    journal = Journal(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    for n, (row, end) in enumerate(zip(cast(list[dict[str, Any]], grid.to_dict("records")), ends, strict=True)):
        rid, task = row["row_id"], str(first_task + n)
        journal.append("intent", rid)
        journal.append("submitted", rid, task_id=task)
        journal.append("finished", rid, task_id=task, status=end.status, cost=end.cost, elapsed=end.elapsed,
                       **({"error": end.error} if end.error else {}))  # fmt: skip
        if end.status != "succeeded":
            continue
        data = video(row)
        name = f"videos/{rid}.mp4"
        (out / name).write_bytes(data)
        journal.append("downloaded", rid, path=name, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    states = journal.load()
    journal.close()
    manifest = build_manifest(grid, states)
    write_manifest(out, manifest)
    return manifest


def night(out: Path, rows: list[Row], renders: Path | None = None) -> pd.DataFrame:
    """Write a finished sweep of `rows` into `out`; its manifest."""
    out.mkdir(parents=True, exist_ok=True)
    renders = renders or out.parent / ".renders"
    renders.mkdir(exist_ok=True)
    raw = pd.DataFrame({"prompt": [r.prompt for r in rows], "seed": [r.seed for r in rows], "numFrames": FRAMES,
                        "source": [f"nightly.csv:{n + 1}" for n in range(len(rows))]})  # fmt: skip
    grid = expand_grid(raw)
    assert len(grid) == len(rows), "every Row is its own combination"
    failure = "RuntimeError: CUDA out of memory"
    ends = [End("succeeded", r.cost, str(r.elapsed)) if r.status == "succeeded"
            else End(r.status, "0", str(r.elapsed), r.error or failure) for r in rows]  # fmt: skip
    specs = dict(zip(grid["row_id"], rows, strict=True))
    return finished_out(out, grid, ends, lambda row: render(row, specs[row["row_id"]], renders), first_task=3000)
