"""What every emulator route speaks: Wiro's error shape, bounded request bodies, dropped answers,
and the server's `Date` header.

Every request body is read through `bounded_stream` with its route's limit, so no client can
make the emulator hold more than that in memory: API routes take `API_BODY_LIMIT` (bodies
past it get a Wiro-shaped 413); `File/Upload` has a larger limit of its own and streams its
parts to disk.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .state import Account

NOT_FOUNDED = "Project authorization is not founded."
NOT_VALID = "Project authorization is not valid."
NEEDS_SIGNATURE = "Project requires signature authentication. x-signature and x-nonce headers are required."
NO_TASK = "There is no task yet."
# Wiro-Docs `error-reference.md`'s words for the errors below
NO_MODEL = "slug-owner-project-not-exist"
NO_TASK_REFERENCE = "taskid or socketaccesstoken is required"
INVALID_BODY = "Request parameters are invalid."
NO_BALANCE = "Insufficient balance"
CONCURRENCY_LIMIT = (
    "You have reached your concurrent task limit. With your current balance of ${balance:.2f}, you can run "
    "up to {limit} tasks at the same time. Add funds to increase your limit."
)
API_BODY_LIMIT = 1 << 20  # a Run body holds at most two 2,000-character prompts and a few numbers
TOO_LARGE = "Request body is too large: the limit is {limit:,} bytes."


class BodyTooLarge(Exception):
    """A request body passed its route's limit; the `api` wrapper answers 413."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(TOO_LARGE.format(limit=limit))


class DroppedConnection(Exception):
    """Raised after a response has started, so the server closes the connection mid-answer."""


class Drop(Response):
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


class QuietDrops(logging.Filter):
    """Keeps the drops the emulator makes on purpose out of the server's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


def wiro_error(message: str, code: int = 0, status: int = 200) -> JSONResponse:
    return JSONResponse({"result": False, "errors": [{"code": code, "message": message}]}, status)


def file_base(request: Request) -> str:
    """Where this server's outputs are served, as the request reached it."""
    return str(request.base_url).rstrip("/") + "/files"


class ServerDate:
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
