"""The emulator's outputs: each finished task's video, rendered once into a private folder."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from .i2v import StartImage, fit_frame, i2v_size
from .state import EmulatedTask
from .video import preview_dimensions, render_mp4


class Renderer:
    """Renders each distinct output once into a private folder, and remembers where."""

    def __init__(self, directory: Path, preview: bool) -> None:
        self.directory = directory
        self.preview = preview
        self.files: dict[str, Path] = {}
        self.public_base = ""
        self.start_images: dict[str, StartImage] = {}  # by task uuid, for image-to-video tasks
        self._lock = threading.Lock()
        self._rendering: dict[str, threading.Lock] = {}

    def attach(self, task: EmulatedTask) -> None:
        """Render a finished task's video, if it has none yet (once, whoever asks first)."""
        with self._lock:
            task_lock = self._rendering.setdefault(task.uuid, threading.Lock())
        with task_lock:
            if task.output is None:
                name, size, path = self.render(task)
                self.files[task.uuid] = path
                task.output = (name, size)

    def render(self, task: EmulatedTask) -> tuple[str, int, Path]:
        p = task.parameters
        start = self.start_images.get(task.uuid)
        if "size" in p:
            width, height = (int(x) for x in str(p["size"]).split("*"))
        elif start is not None:
            width, height = i2v_size(start.width, start.height, int(p.get("width") or 0), int(p.get("height") or 0))
        else:
            width, height = int(p.get("width") or 832), int(p.get("height") or 480)
        if self.preview:
            width, height = preview_dimensions(width, height)
        args: dict[str, Any] = {
            "width": width,
            "height": height,
            "num_frames": int(p["numFrames"]),
            "fps": int(p["fps"]),
            "prompt": str(p["prompt"]),
            "seed": str(p["seed"]),
            "label": f"steps {p['steps']}  scale {p['scale']}  {width}x{height}",
        }
        if task.variant:  # another model version's output (emulator/versions.py)
            args["variant"] = task.variant
        keyed = {**args, "image": start.sha256} if start is not None else args
        key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:32]
        path = self.directory / f"{key}.mp4"
        if not path.exists():
            part = path.with_name(f"{key}.{threading.get_ident()}.part")
            frame = fit_frame(start.path, width, height) if start is not None else None
            part.write_bytes(render_mp4(**args, first_frame=frame))
            part.replace(path)
        return "output.mp4", path.stat().st_size, path
