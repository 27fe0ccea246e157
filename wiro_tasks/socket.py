"""Wiro's task websocket: events pushed as a task moves, so a waiting client need not poll.

Send `{"type": "task_info", "tasktoken": <socketaccesstoken>}`, then read events whose `type` is
the task's new status: `{type, id, message, result}`, or as `websocket.md` shows them `{type,
tasktoken, message}` with a null message on lifecycle events (a missing `id` is "", a missing
`result` true). `task_end` and `task_postprocess_start` come before the end, which is
`task_postprocess_end` (or `task_cancel`). The socket is only a hint that something
changed: callers confirm with Task/Detail, and fall back to polling when it is missing or breaks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from ._config import shown_url
from ._exceptions import WiroConnectionError
from .types import TaskStatus


@dataclass(frozen=True)
class TaskEvent:
    """One pushed event; `status` is the task's status after it."""

    type: str
    task_id: str = ""
    result: bool = True
    message: Any = None

    @property
    def status(self) -> TaskStatus:
        return TaskStatus.parse(self.type)

    @classmethod
    def from_api(cls, raw: Any) -> TaskEvent | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            return None
        return cls(type=raw["type"], task_id=str(raw.get("id", "")), result=bool(raw.get("result", True)),
                   message=raw.get("message"))  # fmt: skip


async def task_events(url: str, socket_token: str, *, open_timeout: float = 10.0) -> AsyncIterator[TaskEvent]:
    """Events of one task until it is final or the server closes; connection trouble raises
    `WiroConnectionError`. The token is a capability: it is sent, never logged."""
    try:
        async with connect(url, open_timeout=open_timeout, max_size=2**22) as socket:
            await socket.send(json.dumps({"type": "task_info", "tasktoken": socket_token}))
            async for frame in socket:
                try:
                    event = TaskEvent.from_api(json.loads(frame))
                except ValueError:
                    continue
                if event is None:
                    continue
                yield event
                if event.status.is_terminal:
                    return
    except (OSError, TimeoutError, WebSocketException) as exc:
        why = str(exc).replace(url, shown_url(url))  # e.g. InvalidURI quotes the URL, user:password and all
        raise WiroConnectionError(f"task socket: {type(exc).__name__}: {why}") from None
