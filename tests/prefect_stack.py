"""A real `prefect server` (PostgreSQL where one answers), its work pool, the account's concurrency
limit and deployments.yaml deployed, with workers and sweeps as processes of their own: the
production setup on loopback, for test_server and test_ui."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))


class Stack:
    """A server and the processes started against it, and how to run commands on it.

    Its environment is this one's without any PREFECT_ or WIRO_ setting, plus the server's own
    (`settings` add to or override them)."""

    def __init__(self, home: Path, database_url: str, **settings: str) -> None:
        self.home = home
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "WIRO_"))},
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
            **settings,
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def serve(self, seconds: float = 180) -> None:
        """Start `prefect server` on PREFECT_API_URL's port; return once it answers its health check."""
        api = self.env["PREFECT_API_URL"]
        port = str(urlsplit(api).port)
        server = self.start("server", [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port])
        deadline = time.monotonic() + seconds
        while True:
            try:
                if httpx.get(f"{api}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert server.poll() is None, self.log("server")
            assert time.monotonic() < deadline, self.log("server")
            time.sleep(0.3)

    def deploy(self, account_limit: int) -> str:
        """The `wiro-sweep` process work pool, the `wiro-account` limit, and every deployment of
        deployments.yaml, as the README sets them up; what `prefect deploy` said."""
        self.run([PREFECT, "work-pool", "create", "wiro-sweep", "--type", "process"])
        self.run([PREFECT, "global-concurrency-limit", "create", "wiro-account", "--limit", str(account_limit)])
        return self.run([PREFECT, "--no-prompt", "deploy", "--prefect-file", "deployments.yaml", "--all"])

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.home / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command, env=env or self.env, stdout=log, stderr=log, cwd=ROOT, start_new_session=True
            )
        self.processes.append(process)
        return process

    def run(self, command: list[str]) -> str:
        done = subprocess.run(command, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")

    def api(self, method: str, path: str, **kwargs: object) -> dict[str, object]:
        """One call to the server's REST API."""
        response = httpx.request(method, self.env["PREFECT_API_URL"] + path, timeout=30, **kwargs)  # type: ignore[arg-type]
        response.raise_for_status()
        answer: dict[str, object] = response.json()
        return answer

    def state(self, flow_run_id: str) -> str:
        state = self.api("GET", f"/flow_runs/{flow_run_id}")["state"]
        assert isinstance(state, dict)
        return str(state["type"])

    def stop(self, processes: list[subprocess.Popen[bytes]] | None = None, grace: float = 20) -> None:
        """SIGTERM to each process group, then SIGKILL to those still running `grace` seconds later
        (one deadline for them all: a stop takes at most `grace`, not `grace` per process)."""
        chosen = self.processes if processes is None else processes
        for process in reversed(chosen):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in chosen:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
