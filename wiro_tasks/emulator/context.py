"""The state one emulator's routes share, in one explicit object (`app.state.emulator`).

Routes are plain functions (`routes/`); each finds its `Emulator` on the request's app rather than
in a closure, so a route module can be read, and tested, on its own.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection

from .config import EmulatorConfig
from .i2v import StartImages
from .render import Renderer
from .state import Account, EmulatedTask
from .uploads import UploadStore


@dataclass
class Emulator:
    """One emulated account, its rendered outputs, its uploads, and the folder they live in."""

    config: EmulatorConfig
    account: Account
    renderer: Renderer
    uploads: UploadStore
    start_images: StartImages
    directory: Path
    owned: bool  # the folder is the emulator's own (a temporary one), removed when it stops

    @classmethod
    def open(cls, config: EmulatorConfig, storage: Path | None = None) -> Emulator:
        """A fresh account; files under `storage`, or a temporary folder of its own."""
        account = Account(config)
        directory = Path(tempfile.mkdtemp(prefix="wiro-emulator-")) if storage is None else storage
        directory.mkdir(parents=True, exist_ok=True)
        renderer = Renderer(directory, config.preview)
        documented_types = config.upload_types == "documented"
        uploads = UploadStore(directory / "uploads", count=account.count, documented_types=documented_types)
        start_images = StartImages(directory / "fetched", uploads, timeout=config.image_fetch_timeout)
        return cls(config, account, renderer, uploads, start_images, directory, owned=storage is None)

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.directory, ignore_errors=True)

    async def describe(self, task: EmulatedTask, file_url: str, now: float | None = None) -> dict[str, Any]:
        """The task as Wiro describes it at `now` (by default now), its video rendered first
        when it has just succeeded."""
        now = self.account.clock() if now is None else now
        if task.output is None and task.succeeded_at(now):
            await asyncio.to_thread(self.renderer.attach, task)
        return self.account.describe(task, now, file_url)


def emulator_of(connection: HTTPConnection) -> Emulator:
    """The emulator behind a request or websocket (set by `create_app`)."""
    emulator: Emulator = connection.app.state.emulator
    return emulator
