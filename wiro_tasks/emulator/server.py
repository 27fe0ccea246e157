"""Serving the emulator: in a background thread (tests, `--emulator` runs) or in the foreground."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from .._config import ENV_API_KEY, ENV_API_SECRET, ENV_BASE_URL, ENV_SOCKET_URL
from .app import create_app
from .config import EmulatorConfig
from .state import Account

KEEP_ALIVE_SECONDS = 75


def _config(app: Any, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=2,
        ws="websockets-sansio",
        date_header=False,  # the app sends its own, from the emulated server's (possibly skewed) clock
    )


class EmulatorServer:
    """The emulator on a loopback port, in a thread of this process.

    with EmulatorServer(EmulatorConfig(api_key="k", api_secret="s")) as emulator:
        client = WiroClient("k", "s", base_url=emulator.base_url)
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        storage: Path | None = None,
        log_level: str = "warning",
    ) -> None:
        self.config = config or EmulatorConfig.from_env()
        self.app = create_app(self.config, storage=storage)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(_config(self.app, log_level))
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client's `base_url` (or `WIRO_BASE_URL`) should be."""
        return f"{self.root_url}/v1"

    @property
    def socket_url(self) -> str:
        """What a client's `socket_url` (or `WIRO_SOCKET_URL`) should be."""
        return f"ws://{self.host}:{self.port}/socket/v1"

    @property
    def account(self) -> Account:
        account: Account = self.app.state.account
        return account

    def env(self) -> dict[str, str]:
        """Environment variables that point a client (or a subprocess) at this emulator."""
        env = {ENV_API_KEY: self.config.api_key, ENV_BASE_URL: self.base_url, ENV_SOCKET_URL: self.socket_url}
        if self.config.api_secret:
            env[ENV_API_SECRET] = self.config.api_secret
        return env

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        if self._thread is not None:
            raise RuntimeError("an EmulatorServer starts once; make a new one")
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._socket])),
            name=f"wiro-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Wiro emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the emulator in the foreground until interrupted (`wiro-sweep emulator`)."""
    server = uvicorn.Server(_config(create_app(config), "info"))
    server.config.host, server.config.port = host, port
    server.run()
