"""`/socket/v1`: Wiro's task websocket. One `task_info` subscription, then each new status as it happens."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..context import emulator_of
from ..wire import NO_TASK


async def socket(websocket: WebSocket) -> None:
    """Pushes a task's statuses until it ends; drops as often as `socket_drop_rate`."""
    emulator = emulator_of(websocket)
    account = emulator.account
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
                    described = await emulator.describe(task, emulator.renderer.public_base, now)
                    message = described["outputs"]
                await websocket.send_json({"type": status, "id": str(task.id), "message": message, "result": True})
                last = status
                if status in ("task_postprocess_end", "task_cancel"):
                    break
            await asyncio.sleep(max(0.001, min(0.25, task.next_change(now) - account.clock())))
        await websocket.close()
    except WebSocketDisconnect:
        return
