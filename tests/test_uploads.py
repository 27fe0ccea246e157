"""File/Upload: the client's `upload` against fakes on `httpx.MockTransport`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from wiro_tasks import (
    ImageCheckError,
    RetryPolicy,
    UploadError,
    WiroClient,
    sign,
)

from .images import encode, landscape, portrait, write

UPLOAD_KEYS = {"id", "name", "contenttype", "size", "parentid", "url", "addedtime", "accesskey"}


def test_client_uploads_are_signed_multipart() -> None:
    png = encode(landscape(64, 48), "PNG")
    seen: list[httpx.Headers] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, json={"result": True, "errors": [], "list": [{"url": "https://cdn.test/a.png"}]})

    with WiroClient("k", "s", base_url="https://api.test/v1", transport=httpx.MockTransport(answer)) as fake:
        fake.upload(png)
    [headers] = seen
    assert headers["content-type"].startswith("multipart/form-data; boundary=")
    assert headers["x-signature"] == sign("k", "s", headers["x-nonce"])


@pytest.mark.parametrize(
    "bad",
    [
        lambda p: p / "missing.png",
        lambda p: (p / "notes.png", (p / "notes.png").write_text("a prompt"))[0],
        lambda p: (p / "empty.png", (p / "empty.png").write_bytes(b""))[0],
        lambda p: (p / "cut.png", (p / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n"))[0],
        lambda p: p,
    ],
)
def test_a_bad_image_never_reaches_the_network(tmp_path: Path, bad: Any) -> None:
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(500)

    with WiroClient("k", "s", base_url="https://api.test/v1", transport=httpx.MockTransport(record)) as c:
        with pytest.raises(ImageCheckError):
            c.upload(bad(tmp_path))
        with pytest.raises(ImageCheckError, match="changed since it was checked"):
            c.upload(encode(landscape(8, 8), "PNG"), expected_sha256="0" * 64)
    assert requests == []


def test_a_file_changed_during_the_upload_is_never_completed(tmp_path: Path) -> None:
    path = write(tmp_path / "a.png", landscape(64, 48), "PNG")
    received: list[bytes] = []

    class ChangesTheFileFirst(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            write(path, portrait(64, 48), "PNG")  # same size class, other pixels
            received.append(request.read())
            return httpx.Response(200, json={"result": True, "errors": [], "list": [{"url": "https://cdn.test/a"}]})

    with (
        WiroClient("k", "s", base_url="https://api.test/v1", transport=ChangesTheFileFirst()) as c,
        pytest.raises(ImageCheckError, match="changed while uploading"),
    ):
        c.upload(path)
    assert received == []


ANSWER = {"result": True, "errors": []}


@pytest.mark.parametrize(
    "answer",
    [
        ANSWER,
        {**ANSWER, "list": []},
        {**ANSWER, "list": "https://cdn.test/a.png"},
        {**ANSWER, "list": [None]},
        {**ANSWER, "list": [{"id": "1", "name": "a.png"}]},
        {**ANSWER, "list": [{"url": "ftp://cdn.test/a.png"}]},
        {**ANSWER, "list": [{"url": "cdn.test/a.png"}]},
        {**ANSWER, "list": [{"url": 42}]},
        {**ANSWER, "list": [{"url": "https://cdn.test/a.png", "size": "1"}]},
    ],
)
def test_an_answer_without_a_usable_file_is_an_upload_error_retried(answer: dict[str, Any]) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=answer)

    retry = RetryPolicy(max_retries=2, backoff=0.0)
    transport = httpx.MockTransport(handler)
    with (
        WiroClient("k", "s", base_url="https://api.test/v1", transport=transport, retry=retry) as c,
        pytest.raises(UploadError, match="/File/Upload"),
    ):
        c.upload(encode(landscape(8, 8), "PNG"))
    assert len(calls) == 3, "uploads are not billed: a bad answer is worth asking again"
    assert len({r.headers["x-nonce"] for r in calls}) == 3
