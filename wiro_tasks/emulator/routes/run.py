"""`POST /v1/Run/{owner}/{model}`: validates the inputs, checks balance and concurrency, creates the task."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..._exceptions import InputValidationError
from ...inputs import IMAGE_TO_VIDEO, MODELS, Value
from ..context import Emulator
from ..file_inputs import run_body
from ..wire import CONCURRENCY_LIMIT, NO_BALANCE, NO_MODEL, Drop, wiro_error
from .guard import api


@api("run", run=True)
async def run(request: Request, emulator: Emulator) -> Response:
    account = emulator.account
    slug = f"{request.path_params['owner']}/{request.path_params['model']}"
    spec = MODELS.get(slug)
    if spec is None:
        return wiro_error(NO_MODEL, code=1)
    body = await run_body(request, emulator.uploads, slug)
    if not isinstance(body, dict):
        return body  # refused: unreadable, or a file input that is not an image
    try:
        parameters: dict[str, Value] = spec.validate(body, allow_unknown=True)
    except InputValidationError as exc:
        account.count("run_invalid")
        return wiro_error(f"Request parameter [{exc.field}] {exc.rule}")
    start = None
    if slug == IMAGE_TO_VIDEO:
        start = await emulator.start_images.resolve(str(parameters["inputImageUrl"]), request.url.netloc)
    now = account.clock()
    with account.lock:
        balance = account.balance(now)
        if balance <= 0:
            account.count("run_refused_97")
            return wiro_error(NO_BALANCE, code=97)
        limit = emulator.config.limit_for(balance)
        if limit is not None and account.in_flight(now) >= limit:
            account.count("run_refused_96")
            return wiro_error(CONCURRENCY_LIMIT.format(balance=balance, limit=limit), code=96)
        previous = account.last_created
        account.unlisted.clear()  # the list has caught up with the tasks made before this Run
        task = account.create(slug, parameters)
        if request.state.fault == "unlisted":
            account.unlisted.add(task.id)
        if isinstance(start, str):  # the model could not get its image: fails, costs nothing
            task.fail, task.failure = True, start
        elif start is not None:
            emulator.renderer.start_images[task.uuid] = start
    if request.state.fault in ("lost", "unlisted"):
        return Drop()
    if request.state.fault == "dup" and previous is not None:  # a server that answers two Runs with one id
        task = previous
    return JSONResponse({"errors": [], "taskid": str(task.id), "socketaccesstoken": task.token, "result": True})
