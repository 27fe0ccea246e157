"""`wiro-sweep serve OUT...`: the sweeps' reports, manifests and videos over HTTP, read-only.

A browser blocks `file://` links from an http page such as the Prefect UI, and on a remote
worker the path does not exist where the browser is. This server gives each file of the OUT
folders it was started with an http address: its absolute path, e.g.

    wiro-sweep serve runs/ --port 4201        # every OUT under runs/
    export WIRO_SWEEP_REPORT_URL=http://127.0.0.1:4201    # where the workers' artifacts link

makes a sweep into /srv/runs/nightly-2026-11-30 link to
http://127.0.0.1:4201/srv/runs/nightly-2026-11-30/report.html. Only GET and HEAD are answered,
with Range support so videos seek. Nothing outside the given folders is served: a path is
resolved (symlinks followed, `..` and encoded dots undone) and must end inside one of them,
name no hidden file, and be a report, manifest, video or poster. Its index (`/`) lists each OUT
with its date, rows by status and billed, from its small summary file (flows/view/outs_index.py).
It binds to loopback unless told, and answers only requests whose `Host` names where it is bound
(`trusted_hosts`): a page of another name that DNS rebinding points at this machine is refused with 400.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from flows.errors import InputError
from flows.view.outs_index import index_page

REPORT_URL_ENV = "WIRO_SWEEP_REPORT_URL"
DEFAULT_PORT = 4201
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".png": "image/png",  # compare.html's frame strips
}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
EVERY_INTERFACE = ("0.0.0.0", "::", "")
HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"}


class ReportURLError(InputError, ValueError):
    """WIRO_SWEEP_REPORT_URL is not an http(s) address; the command exits with 2."""


def report_base(value: str | None = None) -> str:
    """The checked base address of a report server (`WIRO_SWEEP_REPORT_URL`), or "" when unset."""
    value = os.environ.get(REPORT_URL_ENV, "") if value is None else value
    if not value.strip():
        return ""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ReportURLError(f"{REPORT_URL_ENV} must be an http(s) address such as http://127.0.0.1:{DEFAULT_PORT} "
                             f"(got {value!r})")  # fmt: skip
    return value.strip().rstrip("/")


def link(path: Path, base: str | None = None) -> str:
    """Where a browser opens `path`: on the report server when one is set, else as a file:// URI."""
    root = report_base(base)
    absolute = Path(path).resolve()
    return f"{root}{quote(str(absolute))}" if root else absolute.as_uri()


def trusted_hosts(bound: str, allowed: Sequence[str] = ()) -> list[str]:
    """The names a request's `Host` may give (port aside) to a server bound to `bound`: that address,
    loopback's names when it is loopback, and on every interface also this machine's names and the
    host of `WIRO_SWEEP_REPORT_URL`; `allowed` adds names (a proxy's, a DNS alias)."""
    hosts = {_host_name(bound), *(_host_name(name) for name in allowed)}
    if bound in EVERY_INTERFACE or is_loopback(bound):
        hosts.update(LOOPBACK_NAMES)
    if bound in EVERY_INTERFACE:
        hosts.update(_host_name(name) for name in (socket.gethostname(), socket.getfqdn()))
        linked = urlsplit(report_base()).hostname
        if linked:
            hosts.add(_host_name(linked))
    hosts.difference_update(_host_name(name) for name in EVERY_INTERFACE)
    return sorted(hosts)


def is_loopback(host: str) -> bool:
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """`host` as a Host header gives it: lowercase, an IPv6 address in brackets."""
    bare = host.strip().strip("[]").lower()
    return f"[{bare}]" if ":" in bare else bare


def resolve(roots: Sequence[Path], url_path: str) -> Path | None:
    """The served file an absolute URL path names, or None: it must resolve (links followed) to a
    file inside one of `roots`, with no hidden part, and of a served kind."""
    try:
        target = Path(url_path).resolve(strict=True)
    except (OSError, ValueError, RuntimeError):  # missing, a NUL byte, a symlink loop
        return None
    if target.is_dir():
        target = target / "report.html"
    for root in roots:
        if target.is_relative_to(root) and target != root:
            inside = target.relative_to(root).parts
            if any(part.startswith(".") for part in inside) or target.suffix not in MEDIA_TYPES:
                return None
            return target if target.is_file() else None
    return None


def create_app(folders: Sequence[Path], hosts: Sequence[str] = LOOPBACK_NAMES) -> Starlette:
    """The read-only app serving `folders` (each resolved once, here) to requests for `hosts`."""
    roots = [Path(f).resolve(strict=True) for f in folders]

    async def index(request: Request) -> Response:
        return HTMLResponse(await asyncio.to_thread(index_page, roots), headers=HEADERS)

    async def file(request: Request) -> Response:
        path = "/" + request.path_params["path"]
        target = await asyncio.to_thread(resolve, roots, path)
        if target is None:
            return PlainTextResponse("not found", status_code=404, headers=HEADERS)
        if target.name == "report.html" and not path.endswith("report.html"):
            return RedirectResponse(quote(str(target)), status_code=307, headers=HEADERS)
        return FileResponse(target, media_type=MEDIA_TYPES[target.suffix], headers=HEADERS)

    own_names = Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts), www_redirect=False)
    return Starlette(routes=[Route("/", index, methods=["GET", "HEAD"]),
                             Route("/{path:path}", file, methods=["GET", "HEAD"])], middleware=[own_names])  # fmt: skip


class ReportServer:
    """The app on a port, in a thread of this process (tests, benchmarks)."""

    def __init__(self, folders: Sequence[Path], host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        app = create_app(folders, trusted_hosts(host))
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve(sockets=[self._socket])),
                                        name=f"wiro-sweep-serve:{self.port}", daemon=True)  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ReportServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the report server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def serve_folders(folders: Sequence[Path], hosts: Sequence[str], host: str = "127.0.0.1",
                  port: int = DEFAULT_PORT) -> None:  # fmt: skip
    """Serve `folders` read-only on `host:port` to requests for `hosts` until interrupted."""
    uvicorn.run(create_app(folders, hosts), host=host, port=port, log_level="warning", access_log=False)
