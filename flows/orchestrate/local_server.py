"""A Prefect server for `wiro-sweep run` in a terminal where no Prefect API is configured.

Prefect would start its own temporary server in the terminal's process group, where Ctrl-C
kills it together with the sweep: the sweep then hangs retrying the dead API while its Wiro
tasks run on and bill. This one is the same temporary server (SQLite under PREFECT_HOME, no
UI), started in a session of its own, so Ctrl-C reaches the sweep alone and its run can still
record how it ended. It is stopped when the command ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

STARTUP_SECONDS = 120.0
LOG_DRAIN_SECONDS = 5.0
PR_SET_PDEATHSIG = 1


@contextmanager
def prefect_api() -> Iterator[str | None]:
    """Yields the URL of a server started here, or None when a Prefect API is configured already."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    settings = get_current_settings()
    if settings.api.url:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WIRO_")},  # it needs no Wiro credentials
        **settings.to_environment_variables(exclude_unset=True),
        "PREFECT_UI_ENABLED": "0",  # as Prefect's own temporary server
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        # It shares the terminal: Prefect's first-run notice from it would land inside the live bar
        # (the CLI's own process shows the notice, if due, before the bar is drawn).
        "DO_NOT_TRACK": "1",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]  # fmt: skip
    server = subprocess.Popen(
        command, env=env, start_new_session=True, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_until_healthy(url, server)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _send_pending_logs()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _send_pending_logs() -> None:
    """Deliver the run's queued log lines while the server is still there to take them; sent
    after it stopped, each batch printed "--- Error logging to API ---" under the closing block."""
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(Exception):  # the logs are Prefect's record; the sweep's truth is on disk
        APILogWorker.drain_all(timeout=LOG_DRAIN_SECONDS)


def _die_with_parent() -> None:
    """In the server's process: be stopped when the sweep dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(AttributeError, OSError):  # elsewhere it is stopped on the way out only
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_until_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the local Prefect server exited with code {server.returncode}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"the local Prefect server did not answer within {STARTUP_SECONDS:.0f} s")
