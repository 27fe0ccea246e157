"""A Run's file inputs as Wiro-Docs `model-parameters.md` documents them ("Single File (fileinput)").

A model input `{id}` that takes a file (`inputImage` for the image-to-video model) arrives as:
1. a file in `{id}` (multipart), with `{id}Url` empty;
2. a URL in `{id}Url`, with `{id}` empty (what the project's client sends, as JSON);
3. a URL in `{id}` itself.
The file of (1) is stored as a `File/Upload` would be and the Run gets its URL; (1) and (3) end
in `{id}Url`, which the model reads.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..inputs import IMAGE_TO_VIDEO
from .uploads import UploadStore
from .wire import INVALID_BODY, read_body, wiro_error

FILE_INPUTS = {IMAGE_TO_VIDEO: "inputImage"}  # each model's fileinput, by its `id`
FIELD_LIMIT = 64 << 10  # one form field of a multipart Run (a prompt is at most 2,000 characters)


async def run_body(request: Request, uploads: UploadStore, model: str) -> dict[str, object] | Response:
    """The Run's inputs, a file input's file stored and named by its URL; or Wiro's refusal."""
    file_input = FILE_INPUTS.get(model)
    body: dict[str, object] | None
    if file_input and request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await uploads.receive_form(request, file_input, FIELD_LIMIT)
        if isinstance(form, Response):
            return form
        fields, stored = form
        body = dict(fields)
        if stored is not None:
            body[file_input] = stored.url(str(request.base_url).rstrip("/"))
    else:
        body = await read_body(request)
    if body is None:
        return wiro_error(INVALID_BODY)
    if file_input:
        _to_url_field(body, file_input)
    return body


def _to_url_field(body: dict[str, object], file_input: str) -> None:
    """`{id}Url` as the model reads it: given, or else the URL (or stored file) found in `{id}`."""
    given = body.pop(file_input, None)
    url_field = file_input + "Url"
    if not str(body.get(url_field) or "").strip() and isinstance(given, str) and given.strip():
        body[url_field] = given.strip()
