"""A file host on loopback that sends what a test tells it to, lies included, and counts it.

Raw asyncio, not an HTTP framework, so it can do what a framework would refuse to: announce one
length and send another, send a body with no length at all and no end, drip a byte at a time.
It can also stand in front of an emulator as its API (`proxy_api`), passing every request
through and rewriting the outputs of the tasks it describes, so a real sweep downloads from it.

    with FileHost() as host:
        host.routes["/huge"] = endless()
        client.download(TaskOutput("v", host.url("/huge"), size=5000), dest)
        assert host.sent["/huge"] < ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

Send = Callable[[bytes], Awaitable[None]]
Route = Callable[[Send], Awaitable[None]]
CHUNK = 1 << 16


def head(status: str = "200 OK", length: int | None = None, content_type: str = "video/mp4") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def body(data: bytes, length: int | None = None) -> Route:
    """`data`, announced with `length` (its own length by default) in Content-Length."""

    async def route(send: Send) -> None:
        await send(head(length=len(data) if length is None else length))
        await send(data)

    return route


def endless(total: int = 1 << 30, length: int | None = None) -> Route:
    """Up to `total` bytes with no Content-Length (or a false one), ended by closing."""

    async def route(send: Send) -> None:
        await send(head(length=length))
        block = b"\0" * CHUNK
        for _ in range(total // CHUNK):
            await send(block)

    return route


def drip(count: int, every: float) -> Route:
    """`count` bytes, announced, one every `every` seconds: never a read timeout, never done."""

    async def route(send: Send) -> None:
        await send(head(length=count))
        for _ in range(count):
            await send(b"x")
            await asyncio.sleep(every)

    return route


def silent(seconds: float) -> Route:
    """No answer at all for `seconds`."""

    async def route(send: Send) -> None:
        await asyncio.sleep(seconds)

    return route


class FileHost:
    """The server, in a thread of its own. `routes` maps a path to what it sends; `sent` counts
    the body bytes each path handed to the socket, `requests` how often each was asked for."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.sent: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.api: str | None = None  # the emulator's root URL, when standing in for its API
        self.rewrite: Callable[[dict[str, Any], dict[str, Any]], None] = lambda task, output: None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="filehost", daemon=True)
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def proxy_api(self, emulator_root: str, rewrite: Callable[[dict[str, Any], dict[str, Any]], None]) -> str:
        """Answer `/v1/...` by asking the emulator at `emulator_root`, then `rewrite(task, output)`
        every output of every task in the answer; the base URL to give a client."""
        self.api, self.rewrite = emulator_root, rewrite
        return self.url("/v1")

    def __enter__(self) -> FileHost:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            pending = asyncio.all_tasks(self._loop)  # connections still dripping or silent
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            method, path = request.split(b" ", 2)[:2]
            key = path.decode()
            self.requests[key] += 1
            if self.api and key.startswith("/v1/"):
                await self._forward(method.decode(), key, request, reader, writer)
                return
            route = self.routes.get(key)
            if route is None:
                writer.write(head("404 Not Found", 0))
                return

            calls = 0

            async def send(data: bytes) -> None:
                nonlocal calls
                writer.write(data)
                await writer.drain()
                if calls:  # the first call is the status line and headers
                    self.sent[key] += len(data)
                calls += 1

            await route(send)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _forward(
        self, method: str, path: str, request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        headers: dict[str, str] = {}
        for line in request.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip():
                headers[name.strip().lower()] = value.strip()
        content = await reader.readexactly(int(headers.get("content-length", "0")))
        passed = {k: v for k, v in headers.items() if k.startswith("x-") or k == "content-type"}
        async with httpx.AsyncClient() as client:
            answer = await client.request(method, f"{self.api}{path}", content=content, headers=passed)
        payload = answer.json()
        for task in payload.get("tasklist") or []:
            for output in task.get("outputs") or []:
                self.rewrite(task, output)
        data = json.dumps(payload).encode()
        writer.write(head(f"{answer.status_code} {answer.reason_phrase}", len(data), "application/json") + data)
        await writer.drain()
