"""`/socket/v1`: Wiro's task websocket. One `task_info` subscription, then each new status as it happens.

Frames are the emulator's own `{type, id, message, result}` (the status as the message), or with
`socket_frames="documented"` those of Wiro-Docs `websocket.md`: `{type, tasktoken, message}`, a
null message on lifecycle events, and every step of `tasks.md`'s lifecycle in order, with
`task_output_full`, `task_end` and `task_postprocess_start` before `task_postprocess_end`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..context import Emulator, emulator_of
from ..state import EmulatedTask
from ..wire import NO_TASK

# tasks.md's lifecycle up to the model's output, then what follows its exit
RUNNING = (
    "task_queue",
    "task_accept",
    "task_preprocess_start",
    "task_preprocess_end",
    "task_assign",
    "task_start",
    "task_output",
)
EXITED = ("task_output_full", "task_end", "task_postprocess_start")
FINAL = ("task_postprocess_end", "task_cancel")
STDOUT = "Generating video: step 1 of the model's run"


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
    try:
        await _push(websocket, emulator, task)
        await websocket.close()
    except WebSocketDisconnect:
        return


async def _push(websocket: WebSocket, emulator: Emulator, task: EmulatedTask) -> None:
    account = emulator.account
    documented = emulator.config.socket_frames == "documented"
    last = ""
    while True:
        now = account.clock()
        status = task.status_at(now)
        if status != last:
            outputs = None
            if status == "task_postprocess_end":
                outputs = (await emulator.describe(task, emulator.renderer.public_base, now))["outputs"]
            frames = _documented(task, last, status, outputs) if documented else [_emulator(task, status, outputs)]
            for frame in frames:
                await websocket.send_json(frame)
            last = status
            if status in FINAL:
                return
        await asyncio.sleep(max(0.001, min(0.25, task.next_change(now) - account.clock())))


def _emulator(task: EmulatedTask, status: str, outputs: Any) -> dict[str, Any]:
    """The emulator's own frame: the new status, or the outputs at the end, as the message."""
    return {"type": status, "id": str(task.id), "message": status if outputs is None else outputs, "result": True}


def _documented(task: EmulatedTask, last: str, status: str, outputs: Any) -> list[dict[str, Any]]:
    """websocket.md's frames from status `last` to `status`: each step passed, none skipped."""
    done = RUNNING.index(last) + 1 if last in RUNNING else 0
    if last == "task_error":  # an interim in the queue: the queue itself was sent before it
        done = 1
    if status == "task_error":
        steps = ["task_error"] if last else ["task_queue", "task_error"]
    elif status in RUNNING:
        steps = list(RUNNING[done : RUNNING.index(status) + 1])
    elif status == "task_cancel":
        steps = [status]
    else:
        steps = [*RUNNING[done:], *EXITED, status]
    messages = {
        "task_error": "ConnectionError: could not fetch model weights; waiting for recovery",
        "task_output": STDOUT,
        "task_output_full": STDOUT + "\n",
        "task_postprocess_end": outputs,
    }
    return [{"type": step, "tasktoken": task.token, "message": messages.get(step)} for step in steps]
