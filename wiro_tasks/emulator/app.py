"""The emulator's HTTP face: Wiro's endpoints on Starlette, with auth, validation and faults.

Endpoints (all under `/v1`, all POST): `Run/{owner}/{model}`, `Task/Detail`, `Task/List`,
`Task/Cancel`, `Task/Kill`, `Tool/Detail`, `File/Upload` (`uploads.py`). Outputs are served from
`GET /files/{uuid}/{name}`, uploads from `GET /uploads/{id}/{name}`; the image-to-video model
starts its video from its `inputImageUrl` (`i2v.py`).
`/_emulator/stats`, `/_emulator/tasks` and `POST /_emulator/faults` are for tests and benchmarks,
and need the emulator's key (`x-api-key`) like the API does.

The routes live in `routes/`, one module per concern; the state they share is one `Emulator`
(`context.py`), on `app.state.emulator`. Request bodies are bounded per route (`wire.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette

from .callbacks import deliver_callbacks
from .config import EmulatorConfig
from .context import Emulator
from .render import Renderer
from .routes import ROUTES
from .wire import API_BODY_LIMIT, QuietDrops, ServerDate

__all__ = ["API_BODY_LIMIT", "Renderer", "create_app"]


def create_app(config: EmulatorConfig, *, storage: Path | None = None) -> Starlette:
    """A fresh emulated account behind Wiro's endpoints; `app.state.account` exposes it."""
    emulator = Emulator.open(config, storage)
    logging.getLogger("uvicorn.error").addFilter(QuietDrops())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ticker = asyncio.create_task(deliver_callbacks(emulator))
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            emulator.close()

    app = Starlette(routes=ROUTES, lifespan=lifespan)
    app.state.emulator = emulator
    app.state.account = emulator.account
    app.state.renderer = emulator.renderer
    app.state.uploads = emulator.uploads
    app.add_middleware(ServerDate, account=emulator.account)
    return app
