"""The emulator's HTTP face: Wiro's endpoints on Starlette, with auth, validation and faults.

Endpoints (all under `/v1`, all POST): `Run/{owner}/{model}`, `Task/Detail`, `Task/List`,
`Task/Cancel`, `Task/Kill`, `Tool/Detail`, `File/Upload` (`uploads.py`). Outputs are served from
`GET /files/{uuid}/{name}`, uploads from `GET /uploads/{id}/{name}`; the image-to-video model
starts its video from its `inputImageUrl` (`i2v.py`).
`/_emulator/stats`, `/_emulator/tasks` and `POST /_emulator/faults` are for tests and benchmarks,
and need the emulator's key (`x-api-key`) like the API does.

Every request body is read through `bounded_stream` with its route's limit, so no client can
make the emulator hold more than that in memory: API routes take `API_BODY_LIMIT` (bodies
past it get a Wiro-shaped 413); `File/Upload` has a larger limit of its own and streams its
parts to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from .._auth import sign
from .._exceptions import InputValidationError
from ..inputs import IMAGE_TO_VIDEO, MODELS, Value
from .config import EmulatorConfig, FaultKind
from .i2v import StartImage, StartImages, fit_frame, i2v_size
from .state import Account, EmulatedTask
from .uploads import UPLOAD_PATH, UploadStore
from .video import preview_dimensions, render_mp4

logger = logging.getLogger("wiro_tasks.emulator")
Handler = Callable[[Request], Awaitable[Response]]

NOT_FOUNDED = "Project authorization is not founded."
NOT_VALID = "Project authorization is not valid."
NEEDS_SIGNATURE = "Project requires signature authentication. x-signature and x-nonce headers are required."
NO_TASK = "There is no task yet."
API_BODY_LIMIT = 1 << 20  # a Run body holds at most two 2,000-character prompts and a few numbers
TOO_LARGE = "Request body is too large: the limit is {limit:,} bytes."


class BodyTooLarge(Exception):
    """A request body passed its route's limit; the `api` wrapper answers 413."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(TOO_LARGE.format(limit=limit))


class DroppedConnection(Exception):
    """Raised after a response has started, so the server closes the connection mid-answer."""


class _Drop(Response):
    """Starts a response, then drops the connection: the client never reads a whole answer."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"errors": [], "ta', "more_body": True})
        raise DroppedConnection


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


def wiro_error(message: str, code: int = 0, status: int = 200) -> JSONResponse:
    return JSONResponse({"result": False, "errors": [{"code": code, "message": message}]}, status)


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


def create_app(config: EmulatorConfig, *, storage: Path | None = None) -> Starlette:
    """A fresh emulated account behind Wiro's endpoints; `app.state.account` exposes it."""
    account = Account(config)
    owned = storage is None
    directory = Path(tempfile.mkdtemp(prefix="wiro-emulator-")) if storage is None else storage
    directory.mkdir(parents=True, exist_ok=True)
    renderer = Renderer(directory, config.preview)
    uploads = UploadStore(directory / "uploads", count=account.count)
    start_images = StartImages(directory / "fetched", uploads, timeout=config.image_fetch_timeout)
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())

    def authenticate(request: Request) -> Response | None:
        key = request.headers.get("x-api-key", "")
        if not key or not hmac.compare_digest(key.encode(), config.api_key.encode()):
            return wiro_error(NOT_FOUNDED, status=401)
        if not config.api_secret:
            return None
        nonce = request.headers.get("x-nonce", "")
        signature = request.headers.get("x-signature", "")
        if not nonce or not signature:
            return wiro_error(NEEDS_SIGNATURE, status=401)
        expected = sign(config.api_key, config.api_secret, nonce)
        with account.lock:
            valid = hmac.compare_digest(expected.encode(), signature.lower().encode())
            if not valid or nonce in account.seen_nonces:
                account.count("auth_refused")
                return wiro_error(NOT_VALID, status=401)
            account.seen_nonces.add(nonce)
        return None

    def next_fault(run: bool) -> FaultKind:
        faults = account.faults
        with account.lock:
            if run and faults.run_script:
                account.faults = faults.updated({"run_script": faults.run_script[1:]})
                return faults.run_script[0]
            if faults.script:
                account.faults = faults.updated({"script": faults.script[1:]})
                return faults.script[0]
            draw = account.random.random()
        for kind, rate in (
            ("503", faults.error_5xx_rate),
            ("429", faults.rate_429),
            ("drop", faults.drop_rate),
            ("slow", faults.slow_rate),
        ):
            if draw < rate:
                return kind  # type: ignore[return-value]
            draw -= rate
        if run and account.random.random() < faults.lost_run_rate:
            return "lost"  # the task is created, its answer never arrives
        return "ok"

    def api(name: str, *, run: bool = False, body_limit: int = API_BODY_LIMIT) -> Callable[[Handler], Handler]:
        """Wraps an endpoint with counting, injected faults, authentication and its body limit
        (`read_body` and `bounded_stream` enforce it; a body past it is answered 413)."""

        def wrap(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                account.count(name)
                fault = next_fault(run)
                if fault != "ok":
                    account.count(f"fault_{fault}")
                if fault in ("500", "503"):
                    return PlainTextResponse("<html>Service Unavailable</html>", int(fault))
                if fault == "429":
                    retry_after = f"{account.faults.retry_after:g}"
                    limited = wiro_error("Too many requests.", status=429)
                    limited.headers["Retry-After"] = retry_after
                    return limited
                if fault == "drop":
                    return _Drop()
                refused = authenticate(request)
                if refused is not None:
                    return refused
                request.state.fault = fault
                request.state.body_limit = body_limit
                renderer.public_base = renderer.public_base or file_base(request)
                try:
                    response = await handler(request)
                except BodyTooLarge as exc:
                    account.count("body_too_large")
                    return wiro_error(str(exc), status=413)
                if fault == "slow":  # the work is done; only the answer is late
                    await asyncio.sleep(account.faults.slow_seconds)
                return response

            return endpoint

        return wrap

    def file_base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/files"

    async def describe(request: Request, task: EmulatedTask) -> dict[str, Any]:
        now = account.clock()
        if task.output is None and task.succeeded_at(now):
            await asyncio.to_thread(renderer.attach, task)
        return account.describe(task, now, file_base(request))

    @api("run", run=True)
    async def run(request: Request) -> Response:
        slug = f"{request.path_params['owner']}/{request.path_params['model']}"
        spec = MODELS.get(slug)
        if spec is None:
            return wiro_error("Tool is not found.", code=1)
        body = await read_body(request)
        if body is None:
            return wiro_error("Request body could not be parsed.")
        try:
            parameters: dict[str, Value] = spec.validate(body, allow_unknown=True)
        except InputValidationError as exc:
            account.count("run_invalid")
            return wiro_error(f"Request parameter [{exc.field}] {exc.rule}")
        start = None
        if slug == IMAGE_TO_VIDEO:
            start = await start_images.resolve(str(parameters["inputImageUrl"]), request.url.netloc)
        now = account.clock()
        with account.lock:
            balance = account.balance(now)
            if balance <= 0:
                account.count("run_refused_97")
                return wiro_error("Insufficient balance. Please add funds to run more tasks.", code=97)
            limit = config.limit_for(balance)
            if limit is not None and account.in_flight(now) >= limit:
                account.count("run_refused_96")
                return wiro_error(
                    "You have reached your concurrent task limit. With your current balance of "
                    f"${balance:.2f}, you can run up to {limit} tasks at the same time.",
                    code=96,
                )
            previous = account.last_created
            task = account.create(slug, parameters)
            if isinstance(start, str):  # the model could not get its image: fails, costs nothing
                task.fail, task.failure = True, start
            elif start is not None:
                renderer.start_images[task.uuid] = start
        if request.state.fault == "lost":
            return _Drop()
        if request.state.fault == "dup" and previous is not None:  # a server that answers two Runs with one id
            task = previous
        return JSONResponse({"errors": [], "taskid": str(task.id), "socketaccesstoken": task.token, "result": True})

    @api("detail")
    async def detail(request: Request) -> Response:
        body = await read_body(request) or {}
        task = account.find(body.get("taskid"), body.get("tasktoken") or body.get("socketaccesstoken"))
        if task is None:
            return wiro_error(NO_TASK, code=1)
        described = await describe(request, task)
        return JSONResponse({"total": "1", "errors": [], "tasklist": [described], "result": True})

    @api("list")
    async def task_list(request: Request) -> Response:
        body = await read_body(request) or {}
        try:
            start = max(0, int(str(body.get("start", 0))))
            limit = min(1000, max(1, int(str(body.get("limit", 20)))))
        except ValueError:
            return wiro_error("Request parameter [start] must be integer")
        if config.list_page_cap is not None:
            limit = min(limit, max(1, config.list_page_cap))
        with account.lock:
            ids = sorted(account.tasks, reverse=str(body.get("order", "DESC")).upper() != "ASC")
            page = [account.tasks[i] for i in ids[start : start + limit]]
            total = len(ids)
        described = [await describe(request, t) for t in page]
        return JSONResponse({"total": str(total), "errors": [], "tasklist": described, "result": True})

    async def stop(request: Request, *, queued_only: bool) -> Response:
        body = await read_body(request) or {}
        token = body.get("socketaccesstoken") or body.get("tasktoken")
        task = account.find(body.get("taskid"), token)
        if task is None:
            return wiro_error(NO_TASK, code=1)
        reason = account.stop(task, queued_only=queued_only)
        if reason is not None:
            message = "Task is not in a cancellable state." if queued_only else f"Task could not be killed: {reason}"
            return wiro_error(message, code=1)
        described = await describe(request, task)
        return JSONResponse({"errors": [], "tasklist": [described], "result": True})

    @api("cancel")
    async def cancel(request: Request) -> Response:
        return await stop(request, queued_only=True)

    @api("kill")
    async def kill(request: Request) -> Response:
        return await stop(request, queued_only=False)

    @api("tool_detail")
    async def tool_detail(request: Request) -> Response:
        body = await read_body(request) or {}
        slug = f"{body.get('slugowner', '')}/{body.get('slugproject', '')}"
        spec = MODELS.get(slug)
        if spec is None:
            return wiro_error("Tool is not found.", code=1)
        params = [
            {
                "id": p.name,
                "type": p.kind,
                "default": "" if p.default is None else str(p.default),
                "required": p.required,
                "choices": list(p.choices),
            }
            for p in spec.params
        ]
        tool: dict[str, Any] = {
            "slugowner": slug.split("/")[0],
            "slugproject": slug.split("/")[1],
            "parameters": params,
        }
        if config.publish_price:
            tiers = [dict(t) for t in config.dynamic_price]
            tool["cps"] = str(config.advertised_cps or config.cps)
            tool["approximatelycost"] = str(config.approximate_cost)
            tool["dynamicprice"] = json.dumps(tiers) if config.price_as_text else tiers
        return JSONResponse({"errors": [], "tool": [tool], "result": True})

    @api("upload")
    async def file_upload(request: Request) -> Response:
        stored = await uploads.receive(request)
        if not isinstance(stored, list):
            return stored
        if request.state.fault == "lost":  # stored, then the answer is lost on the wire
            return _Drop()
        root = str(request.base_url).rstrip("/")
        return JSONResponse({"result": True, "errors": [], "list": [f.describe(root) for f in stored]})

    async def files(request: Request) -> Response:
        account.count("download")
        path = renderer.files.get(request.path_params["uuid"])
        if path is None or request.path_params["name"] != "output.mp4":
            return PlainTextResponse("Not Found", 404)
        if account.random.random() < account.faults.download_fault_rate:
            account.count("fault_download")
            return PlainTextResponse("Bad Gateway", 502)
        return FileResponse(path, media_type="video/mp4")

    async def socket(websocket: WebSocket) -> None:
        """Wiro's task websocket: one `task_info` subscription, then each new status as it happens."""
        await websocket.accept()
        account.count("socket")
        if account.random.random() < account.faults.socket_drop_rate:
            account.count("fault_socket_drop")
            await websocket.close(code=1011)
            return
        try:
            asked = await websocket.receive_json()
        except (WebSocketDisconnect, ValueError, KeyError):
            return
        token = asked.get("tasktoken") or asked.get("socketaccesstoken") if isinstance(asked, dict) else None
        task = account.find(token=token)
        if task is None or asked.get("type") != "task_info":
            await websocket.send_json({"type": "task_info", "id": "", "message": NO_TASK, "result": False})
            await websocket.close()
            return
        last = ""
        try:
            while True:
                now = account.clock()
                status = task.status_at(now)
                if status != last:
                    message: Any = status
                    if status == "task_postprocess_end":
                        if task.succeeded_at(now):
                            await asyncio.to_thread(renderer.attach, task)
                        message = account.describe(task, now, renderer.public_base)["outputs"]
                    await websocket.send_json({"type": status, "id": str(task.id), "message": message, "result": True})
                    last = status
                    if status in ("task_postprocess_end", "task_cancel"):
                        break
                await asyncio.sleep(max(0.001, min(0.25, task.next_change(now) - account.clock())))
            await websocket.close()
        except WebSocketDisconnect:
            return

    def operator(handler: Handler) -> Handler:
        """The test endpoints: the emulator's own key (`x-api-key`), as any API request needs."""

        async def endpoint(request: Request) -> Response:
            key = request.headers.get("x-api-key", "")
            if not key or not hmac.compare_digest(key.encode(), config.api_key.encode()):
                return wiro_error(NOT_FOUNDED, status=401)
            return await handler(request)

        return endpoint

    @operator
    async def stats(request: Request) -> Response:
        return JSONResponse(account.stats())

    @operator
    async def tasks(request: Request) -> Response:
        return JSONResponse(account.intervals())

    @operator
    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = json.loads(await bounded_body(request, API_BODY_LIMIT))
                if not isinstance(changes, dict):
                    raise TypeError(f"the body must be a JSON object of fault settings (got {type(changes).__name__})")
                with account.lock:
                    account.faults = account.faults.updated(changes)
            except BodyTooLarge as exc:
                return JSONResponse({"error": str(exc)}, 413)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(dict(vars(account.faults).items()))

    async def unknown(request: Request) -> Response:
        return wiro_error("Error parsing url.", status=404)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ticker = asyncio.create_task(deliver_callbacks(account, renderer))
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if owned:
                shutil.rmtree(directory, ignore_errors=True)

    routes = [
        Route("/v1/Run/{owner}/{model}", run, methods=["POST"]),
        Route("/v1/Task/Detail", detail, methods=["POST"]),
        Route("/v1/Task/List", task_list, methods=["POST"]),
        Route("/v1/Task/Cancel", cancel, methods=["POST"]),
        Route("/v1/Task/Kill", kill, methods=["POST"]),
        Route("/v1/Tool/Detail", tool_detail, methods=["POST"]),
        Route("/v1/File/Upload", file_upload, methods=["POST"]),
        Route("/files/{uuid}/{name}", files, methods=["GET", "HEAD"]),
        Route(UPLOAD_PATH + "/{file_id}/{name}", uploads.serve, methods=["GET", "HEAD"]),
        WebSocketRoute("/socket/v1", socket),
        Route("/_emulator/stats", stats),
        Route("/_emulator/tasks", tasks),
        Route("/_emulator/faults", faults, methods=["GET", "POST"]),
        Route("/{path:path}", unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.account = account
    app.state.renderer = renderer
    app.add_middleware(_ServerDate, account=account)
    app.state.uploads = uploads
    return app


class _ServerDate:
    """Adds the `Date` header of every HTTP answer from the emulated server's clock, as Wiro's
    servers send theirs: with `clock_offset` set, clients see a skewed server clock there too."""

    def __init__(self, app: Any, account: Account) -> None:
        self.app = app
        self.account = account

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Any) -> None:
            if message["type"] == "http.response.start":
                date = formatdate(self.account.wall_time(self.account.clock()), usegmt=True)
                message = {**message, "headers": [*message.get("headers", []), (b"date", date.encode())]}
            await send(message)

        await self.app(scope, receive, dated)


async def bounded_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; `BodyTooLarge` before the first byte past `limit` is kept
    (at once when the declared Content-Length says it will be)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        yield chunk


async def bounded_body(request: Request, limit: int) -> bytes:
    """The whole body, read once through `bounded_stream` (later calls get the same bytes)."""
    cached: bytes | None = getattr(request.state, "raw_body", None)
    if cached is None:
        cached = b"".join([chunk async for chunk in bounded_stream(request, limit)])
        request.state.raw_body = cached
    return cached


async def read_body(request: Request) -> dict[str, object] | None:
    """JSON, multipart or urlencoded bodies, as Wiro accepts, within the route's body limit;
    None when unreadable."""
    content_type = request.headers.get("content-type", "")
    raw = await bounded_body(request, getattr(request.state, "body_limit", API_BODY_LIMIT))
    if content_type.startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + raw)
        form: dict[str, object] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename() is not None:
                continue  # an uploaded file: the models here take URLs, not files
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                form[name] = payload.decode(errors="replace") if isinstance(payload, bytes) else ""
        return form
    if content_type.startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl(raw.decode()))
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def deliver_callbacks(account: Account, renderer: Renderer) -> None:
    """POSTs each finished task with a `callbackUrl` to it, once (unsigned, like Wiro)."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        while True:
            await asyncio.sleep(0.05)
            now = account.clock()
            with account.lock:
                due = [account.tasks[i] for i in account.callbacks if account.tasks[i].terminal_at(now)]
                account.callbacks.difference_update(t.id for t in due)
            for task in due:
                if task.succeeded_at(now):
                    await asyncio.to_thread(renderer.attach, task)
                described = account.describe(task, now, renderer.public_base)
                body = {"errors": [], "tasklist": [described], "result": True}
                try:
                    await http.post(task.callback_url, json=body)
                    account.count("callbacks_sent")
                except httpx.HTTPError as exc:
                    account.count("callbacks_failed")
                    logger.warning("callback to %s failed: %s", task.callback_url, type(exc).__name__)
