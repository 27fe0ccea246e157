"""File/Upload: the client's `upload` against the emulator over loopback and against fakes on
`httpx.MockTransport`, and the emulator's endpoint on the wire (limits, types, auth, serving)."""

from __future__ import annotations

import hashlib
import json
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wiro_tasks import (
    MAX_UPLOAD_BYTES,
    AsyncWiroClient,
    AuthenticationError,
    ImageCheckError,
    RetryPolicy,
    UploadedFile,
    UploadError,
    WiroClient,
    sign,
)
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.uploads import MultipartError, parse_multipart

from .conftest import API_KEY, API_SECRET, NO_WAIT, EmulatorFactory
from .images import encode, landscape, portrait, write

UPLOAD_KEYS = {"id", "name", "contenttype", "size", "parentid", "url", "addedtime", "accesskey"}


def signed_headers() -> dict[str, str]:
    nonce = str(time.time_ns())
    return {"x-api-key": API_KEY, "x-nonce": nonce, "x-signature": sign(API_KEY, API_SECRET, nonce)}


def raw_upload(emulator: EmulatorServer, files: Any, *, headers: dict[str, str] | None = None) -> httpx.Response:
    """A multipart upload signed by hand, so tests can send what the client never would."""
    return httpx.post(
        f"{emulator.base_url}/File/Upload",
        files=files,
        headers=signed_headers() if headers is None else headers,
        timeout=60,
    )


def stored(emulator: EmulatorServer) -> int:
    return int(emulator.account.stats()["counters"].get("uploads_stored", 0))


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


def test_upload_answers_a_typed_file_served_back_byte_for_byte(
    emulator: EmulatorServer, client: WiroClient, tmp_path: Path
) -> None:
    path = write(tmp_path / "fox start.png", landscape(), "PNG")
    uploaded = client.upload(path)
    assert isinstance(uploaded, UploadedFile)
    assert uploaded.url.startswith(f"{emulator.root_url}/")
    assert (uploaded.name, uploaded.size, uploaded.content_type) == ("fox_start.png", path.stat().st_size, "image/png")
    assert uploaded.id
    assert uploaded.added_at is not None
    assert "access_key" not in repr(uploaded)
    served = httpx.get(uploaded.url)
    assert served.status_code == 200
    assert served.content == path.read_bytes()
    assert served.headers["content-type"] == "image/png"
    partial = httpx.get(uploaded.url, headers={"Range": "bytes=8-23"})
    assert (partial.status_code, partial.content) == (206, path.read_bytes()[8:24])
    counters = emulator.account.stats()["counters"]
    assert (counters["upload"], counters["uploads_stored"]) == (1, 1), "one request, one file, per call"
    again = client.upload(path)
    assert again.id != uploaded.id
    assert stored(emulator) == 2


@pytest.mark.anyio
async def test_async_upload(emulator: EmulatorServer, tmp_path: Path) -> None:
    path = write(tmp_path / "portrait.jpg", portrait(), "JPEG", quality=92)
    async with AsyncWiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT) as c:
        uploaded = await c.upload(path, folder_id="77")
    assert (uploaded.content_type, uploaded.parent_id, uploaded.size) == ("image/jpeg", "77", path.stat().st_size)
    assert httpx.get(uploaded.url).content == path.read_bytes()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_answer_has_wiros_shape_on_the_wire(emulator: EmulatorServer) -> None:
    png = encode(landscape(64, 48), "PNG")
    answer = raw_upload(emulator, {"file": ("a.png", png, "image/png")})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"result", "errors", "list"}
    assert (body["result"], body["errors"], len(body["list"])) == (True, [], 1)
    [entry] = body["list"]
    assert set(entry) == UPLOAD_KEYS
    assert all(isinstance(value, str) for value in entry.values()), "Wiro sends every value as a string"
    assert (entry["size"], entry["contenttype"], entry["parentid"]) == (str(len(png)), "image/png", "0")


def test_content_decides_the_name_and_type(client: WiroClient) -> None:
    jpeg = encode(landscape(64, 48), "JPEG")
    assert (client.upload(jpeg, name="scan.png").name, client.upload(jpeg).name) == ("scan.jpg", "image.jpg")
    assert client.upload(encode(landscape(64, 48), "GIF")).content_type == "image/gif"
    assert client.upload(encode(landscape(64, 48), "WEBP")).content_type == "image/webp"


def test_uploads_are_signed_and_refused_without_a_valid_signature(emulator: EmulatorServer, tmp_path: Path) -> None:
    png = encode(landscape(64, 48), "PNG")
    unsigned = raw_upload(emulator, {"file": ("a.png", png)}, headers={"x-api-key": API_KEY})
    assert unsigned.status_code == 401
    assert "requires signature" in unsigned.json()["errors"][0]["message"]
    forged = {**signed_headers(), "x-signature": "0" * 64}
    assert raw_upload(emulator, {"file": ("a.png", png)}, headers=forged).status_code == 401
    with (
        WiroClient(API_KEY, "not-the-secret", base_url=emulator.base_url, retry=NO_WAIT) as wrong,
        pytest.raises(AuthenticationError),
    ):
        wrong.upload(png)
    assert stored(emulator) == 0


def test_key_only_project_uploads_with_the_key(make_emulator: EmulatorFactory) -> None:
    emulator = make_emulator(api_secret=None)
    with WiroClient(API_KEY, base_url=emulator.base_url, retry=NO_WAIT) as c:
        assert c.upload(encode(landscape(32, 32), "PNG")).size
    assert stored(emulator) == 1


def test_the_server_takes_100_mb_and_refuses_a_byte_more_streaming_both_ways(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    header = encode(landscape(8, 8), "PNG")
    big = tmp_path / "big.png"
    with open(big, "wb") as out:  # sparse: a PNG header, then zeros
        out.write(header)
        out.truncate(MAX_UPLOAD_BYTES)
    tracemalloc.start()
    try:
        with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT, timeout=120) as c:
            uploaded = c.upload(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert uploaded.size == MAX_UPLOAD_BYTES
    assert peak < 16 * 2**20, f"client and emulator held {peak / 2**20:.0f} MiB at once for a 100 MB upload"
    kept = emulator.app.state.uploads.get(uploaded.id)
    assert kept.path.stat().st_size == MAX_UPLOAD_BYTES
    assert kept.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    with open(big, "ab") as out:
        out.write(b"\0")
    with open(big, "rb") as file:
        refused = raw_upload(emulator, {"file": ("big.png", file, "image/png")})
    assert refused.status_code == 413
    assert refused.json() == {
        "result": False,
        "errors": [{"code": 0, "message": "File size exceeds the limit of 100 MB."}],
    }
    assert stored(emulator) == 1
    assert not list((emulator.app.state.uploads.directory / ".incoming").iterdir()), "no partial file left"


def test_a_declared_length_far_over_the_limit_is_refused_before_reading(emulator: EmulatorServer) -> None:
    head = ["POST /v1/File/Upload HTTP/1.1", f"Host: {emulator.host}:{emulator.port}"]
    head += [f"{k}: {v}" for k, v in signed_headers().items()]
    head += ["Content-Type: multipart/form-data; boundary=x", f"Content-Length: {MAX_UPLOAD_BYTES * 3}"]
    with socket.create_connection((emulator.host, emulator.port), timeout=10) as raw:
        raw.sendall(("\r\n".join(head) + "\r\n\r\n--x\r\n").encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += raw.recv(65536)
        status, _, body = received.partition(b"\r\n\r\n")
        length = int(status.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:  # the answer comes while the 300 MB announced never do
            body += raw.recv(65536)
    assert status.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["errors"] == [{"code": 0, "message": "File size exceeds the limit of 100 MB."}]
    assert stored(emulator) == 0


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (b"just text, not a picture", "notes.png"),
        (b"%PDF-1.7\n" + bytes(100), "doc.jpg"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00mif1miaf" + bytes(40), "x.heic"),
        (b"", "empty.png"),
    ],
)
def test_the_server_refuses_what_is_not_an_image_wiro_takes(
    emulator: EmulatorServer, content: bytes, name: str
) -> None:
    answer = raw_upload(emulator, {"file": (name, content, "image/png")})
    assert answer.json() == {
        "result": False,
        "errors": [
            {"code": 0, "message": "File type is not allowed. Allowed image types: jpg, jpeg, png, webp, gif or heic."}
        ],
    }
    assert stored(emulator) == 0


def test_malformed_bodies_are_wiro_errors(emulator: EmulatorServer) -> None:
    assert raw_upload(emulator, {"image": ("a.png", encode(landscape(8, 8), "PNG"))}).json()["errors"] == [
        {"code": 0, "message": "Request parameter [file] required"}
    ]
    cut = {**signed_headers(), "content-type": "multipart/form-data; boundary=b"}
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n\x89PNG'
    answer = httpx.post(f"{emulator.base_url}/File/Upload", content=body, headers=cut)
    assert answer.json()["errors"] == [{"code": 0, "message": "Request body could not be parsed."}]
    json_body = httpx.post(f"{emulator.base_url}/File/Upload", json={"file": "x"}, headers=signed_headers())
    assert json_body.json()["result"] is False
    assert stored(emulator) == 0


def test_a_lost_upload_answer_is_retried_and_costs_nothing(emulator: EmulatorServer, client: WiroClient) -> None:
    png = encode(landscape(64, 48), "PNG")
    emulator.account.faults = emulator.account.faults.updated({"script": ["lost", "503", "ok"]})
    uploaded = client.upload(png)
    assert httpx.get(uploaded.url).content == png
    stats = emulator.account.stats()
    assert stats["counters"]["upload"] == 3
    assert stored(emulator) == 2, "the lost answer's file stays behind, unused"
    assert stats["billed"] == "0.00"


class Collect:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data.extend(data)


async def parse(body: bytes, boundary: bytes, chunk: int) -> dict[tuple[str, str | None], bytes]:
    parts: dict[tuple[str, str | None], Collect] = {}

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(body), chunk):
            yield body[at : at + chunk]

    def open_part(name: str, filename: str | None) -> Collect:
        return parts.setdefault((name, filename), Collect())

    await parse_multipart(chunks(), boundary, open_part)
    return {key: bytes(sink.data) for key, sink in parts.items()}


@pytest.mark.anyio
@pytest.mark.parametrize("chunk", [1, 2, 5, 37, 1000, 1 << 20])
async def test_the_streaming_parser_reads_what_httpx_writes_whatever_the_chunks(chunk: int) -> None:
    tricky = b"\r\n--edge" + bytes(range(256)) * 40 + b"\r\n--edg\r\n-" + b"\r\n--edge-"
    request = httpx.Request(
        "POST", "https://x/", files={"file": ("a b.png", tricky, "image/png")}, data={"folderid": "12"}
    )
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    body = request.read()
    assert await parse(b"preamble to skip\r\n" + body, boundary, chunk) == {
        ("folderid", None): b"12",
        ("file", "a b.png"): tricky,
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"no delimiter at all",
        b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nnever closed',
        b"--b\r\nContent-Type: text/plain\r\n\r\nno name\r\n--b--\r\n",
        b'--bXContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--b--\r\n',
        b"--b\r\n" + b"X-Long: " + b"y" * 20_000 + b"\r\n\r\nv\r\n--b--\r\n",
        b"".join(b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % n for n in range(40)) + b"--b--",
    ],
)
async def test_the_streaming_parser_refuses_malformed_bodies(body: bytes) -> None:
    with pytest.raises(MultipartError):
        await parse(body, b"b", 7)


def test_an_upload_cut_off_mid_body_is_sent_again_whole(emulator: EmulatorServer, client: WiroClient) -> None:
    image = encode(landscape(8, 8), "PNG") + bytes(20_000_000)  # long enough to be cut off while sending
    emulator.account.faults = emulator.account.faults.updated({"script": ["drop", "drop", "ok"]})
    uploaded = client.upload(image)
    assert uploaded.size == len(image)
    assert hashlib.sha256(httpx.get(uploaded.url).content).digest() == hashlib.sha256(image).digest()
    counters = emulator.account.stats()["counters"]
    assert (counters["upload"], counters["fault_drop"], counters["uploads_stored"]) == (3, 2, 1)


def test_a_hostile_file_name_stays_inside_the_store(emulator: EmulatorServer) -> None:
    png = encode(landscape(8, 8), "PNG")
    [entry] = raw_upload(emulator, {"file": ("../../etc/evil name?.png", png, "image/png")}).json()["list"]
    assert entry["name"] == "evil_name_.png"
    store = emulator.app.state.uploads
    assert store.get(entry["id"]).path.parent.parent == store.directory
    assert httpx.get(entry["url"]).content == png
