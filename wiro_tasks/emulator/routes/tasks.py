"""`POST /v1/Task/Detail`, `Task/List`, `Task/Cancel` and `Task/Kill`: reading and stopping tasks."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..context import Emulator
from ..wire import NO_TASK, NO_TASK_REFERENCE, file_base, read_body, wiro_error
from .guard import api


@api("detail")
async def detail(request: Request, emulator: Emulator) -> Response:
    body = await read_body(request) or {}
    token = body.get("tasktoken") or body.get("socketaccesstoken")
    if body.get("taskid") in (None, "") and not token:
        return wiro_error(NO_TASK_REFERENCE)
    task = emulator.account.find(body.get("taskid"), token)
    if task is None:
        return wiro_error(NO_TASK, code=1)
    described = await emulator.describe(task, file_base(request))
    return JSONResponse({"total": "1", "errors": [], "tasklist": [described], "result": True})


@api("list")
async def task_list(request: Request, emulator: Emulator) -> Response:
    account = emulator.account
    body = await read_body(request) or {}
    try:
        start = max(0, int(str(body.get("start", 0))))
        limit = min(1000, max(1, int(str(body.get("limit", 20)))))
    except ValueError:
        return wiro_error("Request parameter [start] must be integer")
    if emulator.config.list_page_cap is not None:
        limit = min(limit, max(1, emulator.config.list_page_cap))
    with account.lock:
        ids = sorted(account.tasks, reverse=str(body.get("order", "DESC")).upper() != "ASC")
        ids = [i for i in ids if _listed(account.tasks[i].model, body) and i not in account.unlisted]
        page = [account.tasks[i] for i in ids[start : start + limit]]
        total = len(ids)
    described = [await emulator.describe(t, file_base(request)) for t in page]
    if not emulator.config.list_fields:  # no document promises them in Task/List
        for entry in described:
            entry.pop("createtime", None)
            entry.pop("parameters", None)
    return JSONResponse({"total": str(total), "errors": [], "tasklist": described, "result": True})


def _listed(model: str, body: dict[str, object]) -> bool:
    """Whether Task/List's filters keep a task of `model`: `type` (every task here is a "model"
    task) and `modelName`, a slug or part of one (Wiro-MCP `listTasks`), in any case."""
    if str(body.get("type") or "model") != "model":
        return False
    wanted = str(body.get("modelName") or "").lower()
    return wanted in model.lower()


async def _stop(request: Request, emulator: Emulator, *, queued_only: bool) -> Response:
    body = await read_body(request) or {}
    token = body.get("socketaccesstoken") or body.get("tasktoken")
    task = emulator.account.find(body.get("taskid"), token)
    if task is None:
        return wiro_error(NO_TASK, code=1)
    reason = emulator.account.stop(task, queued_only=queued_only)
    if reason is not None:
        message = "Task is not in a cancellable state." if queued_only else f"Task could not be killed: {reason}"
        return wiro_error(message, code=1)
    shape = emulator.config.stop_answer
    if shape == "bare":  # WiroKit's fixtures (`test/task-api.test.ts`)
        return JSONResponse({"result": True})
    if shape == "empty":  # Wiro-MCP's fixtures (`tests/client.test.mjs`)
        return JSONResponse({"result": True, "errors": [], "tasklist": []})
    described = await emulator.describe(task, file_base(request))
    return JSONResponse({"errors": [], "tasklist": [described], "result": True})


@api("cancel")
async def cancel(request: Request, emulator: Emulator) -> Response:
    return await _stop(request, emulator, queued_only=True)


@api("kill")
async def kill(request: Request, emulator: Emulator) -> Response:
    return await _stop(request, emulator, queued_only=False)
