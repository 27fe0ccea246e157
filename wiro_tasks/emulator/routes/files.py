"""Files both ways: `POST /v1/File/Upload` (`uploads.py`), the uploads served back from
`GET /uploads/{id}/{name}`, and each task's video from `GET /files/{uuid}/output.mp4`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from ..context import Emulator, emulator_of
from ..wire import Drop
from .guard import api


@api("upload")
async def file_upload(request: Request, emulator: Emulator) -> Response:
    stored = await emulator.uploads.receive(request)
    if not isinstance(stored, list):
        return stored
    if request.state.fault == "lost":  # stored, then the answer is lost on the wire
        return Drop()
    root = str(request.base_url).rstrip("/")
    return JSONResponse({"result": True, "errors": [], "list": [f.describe(root) for f in stored]})


async def uploaded(request: Request) -> Response:
    """An uploaded file, as Wiro's file host serves it (no key needed)."""
    return await emulator_of(request).uploads.serve(request)


async def output(request: Request) -> Response:
    """A task's video (no key needed, as on Wiro's file host), or a 502 as often as `download_fault_rate`."""
    emulator = emulator_of(request)
    account = emulator.account
    account.count("download")
    path = emulator.renderer.files.get(request.path_params["uuid"])
    if path is None or request.path_params["name"] != "output.mp4":
        return PlainTextResponse("Not Found", 404)
    if account.random.random() < account.faults.download_fault_rate:
        account.count("fault_download")
        return PlainTextResponse("Bad Gateway", 502)
    return FileResponse(path, media_type="video/mp4")
