"""The emulator's answers against one example per endpoint, written down from Wiro's documents (or,
where the documents show none, from Wiro's own clients' test fixtures), each with its source.

An answer conforms when every key of the example is there, with a value of the same JSON kind
(text, number, boolean, list, object), at every depth: the documents' examples are partial, so
the emulator may say more, except where the strictest documented mode says it must not.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from wiro_tasks import AsyncWiroClient, ImageToVideoInput, TaskStatus, TextToVideoInput, WiroClient, sign
from wiro_tasks.emulator import EmulatorServer
from wiro_tasks.emulator.config import DOCUMENTED, EmulatorConfig

from .conftest import API_KEY, API_SECRET, FAST_POLL, NO_WAIT, EmulatorFactory
from .images import encode, landscape

# Wiro-Docs markdown/run-a-model.md, "Response"
RUN = {"result": True, "errors": [], "taskid": "2221", "socketaccesstoken": "eDcCm5yyUfIvMFspTwww49OUfgXkQt"}

# Wiro-Docs markdown/tasks.md, "POST /Task/Detail", "Response"
DETAIL: dict[str, Any] = {
    "result": True,
    "errors": [],
    "total": "1",
    "tasklist": [
        {
            "id": "534574",
            "socketaccesstoken": "eDcCm5yyUfIvMFspTwww49OUfgXkQt",
            "parameters": {"prompt": "Hello, world!"},
            "status": "task_postprocess_end",
            "pexit": "0",
            "debugoutput": "",
            "starttime": "1734513809",
            "endtime": "1734513813",
            "elapsedseconds": "6.0000",
            "totalcost": "0.003510000000",
            "outputs": [
                {"name": "0.png", "contenttype": "image/png", "size": "202472", "url": "https://cdn1.wiro.ai/.../0.png"}
            ],
        }
    ],
}

# No document shows a Task/List answer. Wiro-MCP's `src/client.ts` reads `tasklist` and `total`
# from it, as from Task/Detail; the task holds what every Task/Detail example holds, less the
# `parameters` (and `createtime`) that no document promises in a list.
LIST = {
    "result": True,
    "errors": [],
    "tasklist": [{k: v for k, v in DETAIL["tasklist"][0].items() if k != "parameters"}],
}

# No document shows a Cancel or Kill answer: Wiro-MCP tests/client.test.mjs ("cancelTask ...",
# "killTask ...") and WiroKit (wiroai/ReactNative-QuickStart packages/wirokit) test/task-api.test.ts.
STOPPED_EMPTY = {"result": True, "errors": [], "tasklist": []}
STOPPED_BARE = {"result": True}

# Wiro-Docs markdown/models.md, "POST /Tool/Detail", "Response"
TOOL: dict[str, Any] = {
    "result": True,
    "errors": [],
    "tool": [
        {
            "id": "1562",
            "title": "Nano Banana API: Create Mobile & Web Apps with Nano Banana",
            "slugowner": "google",
            "slugproject": "nano-banana",
            "cleanslugowner": "google",
            "cleanslugproject": "nano-banana",
            "description": "Google's Gemini 2.5 Flash Image Preview ...",
            "categories": ["tool", "partner"],
            "parameters": [
                {"title": "", "subtitle": "", "items": [{"id": "prompt", "type": "textarea", "required": True}]}
            ],
            "dynamicprice": [{"inputs": {}, "price": 0.039, "priceMethod": "cpo"}],
        }
    ],
}

# Wiro-Docs markdown/files.md, "POST /File/Upload", "Response" (its "Response (Upload)" further
# down shows other fields, `size` as a number, `isfolder` and `created`: the documents disagree)
UPLOAD = {
    "result": True,
    "errors": [],
    "list": [
        {
            "id": "file-id",
            "name": "dataset.csv",
            "contenttype": "text/csv",
            "size": "1048576",
            "parentid": "folder-id",
            "url": "https://cdn1.wiro.ai/...",
            "addedtime": "1716276727",
            "accesskey": "...",
        }
    ],
}


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "text", list: "list", dict: "object", type(None): "null"}[type(value)]


MAY_BE_EMPTY = (".dynamicprice",)  # a model billed per second has no price tiers


def mismatches(example: Any, answer: Any, where: str = "") -> list[str]:
    """Where `answer` does not have the example's shape: a key missing, or a value of another kind."""
    if kind(example) != kind(answer):
        return [f"{where or 'answer'}: {kind(answer)}, the example has {kind(example)}"]
    if isinstance(example, dict):
        found = []
        for key, value in example.items():
            if key not in answer:
                found.append(f"{where}.{key}: missing")
            else:
                found += mismatches(value, answer[key], f"{where}.{key}")
        return found
    if isinstance(example, list) and example:
        if not answer and not where.endswith(MAY_BE_EMPTY):
            return [f"{where or 'answer'}: empty, the example has items"]
        if not answer:
            return []
        return mismatches(example[0], answer[0], f"{where}[0]")
    return []


def post(server: EmulatorServer, endpoint: str, **kwargs: Any) -> Any:
    with WiroClient(API_KEY, API_SECRET, base_url=server.base_url, retry=NO_WAIT) as c:
        response = c._http.post(endpoint, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def finished_task(server: EmulatorServer) -> str:
    with WiroClient(API_KEY, API_SECRET, base_url=server.base_url, retry=NO_WAIT) as c:
        task_id = c.run(TextToVideoInput(prompt="a red fox", num_frames=5)).task_id
        while not c.detail(task_id).is_terminal:
            time.sleep(0.05)
    return task_id


@pytest.mark.parametrize("documented", [False, True], ids=["today", "documented"])
def test_every_answer_has_the_documented_shape(make_emulator: EmulatorFactory, documented: bool) -> None:
    today = {name: getattr(EmulatorConfig(), name) for name in DOCUMENTED}
    server = make_emulator(preview=True, **(DOCUMENTED if documented else today))
    run = post(server, "/Run/Wan-AI/Wan2.2-TI2V-5B-text-to-video", json={"prompt": "a fox", "numFrames": 5})
    assert mismatches(RUN, run) == []
    task_id = finished_task(server)
    detail = post(server, "/Task/Detail", json={"taskid": task_id})
    assert mismatches(DETAIL, detail) == []
    # not in tasks.md's example; Wiro's clients read them (WiroKit's and n8n's task types)
    names = {k: detail["tasklist"][0][k] for k in ("modelslugowner", "modelslugproject")}
    assert names == {"modelslugowner": "Wan-AI", "modelslugproject": "Wan2.2-TI2V-5B-text-to-video"}
    assert detail["tasklist"][0]["modeldescription"]
    listed = post(server, "/Task/List", json={"type": "model", "sort": "id", "order": "DESC", "start": 0, "limit": 5})
    assert mismatches(LIST, listed) == []
    undocumented = {"createtime", "parameters"} & set().union(*listed["tasklist"])
    assert undocumented == (set() if documented else {"createtime", "parameters"})
    tool = post(server, "/Tool/Detail", json={"slugowner": "Wan-AI", "slugproject": "Wan2.2-TI2V-5B-text-to-video"})
    assert mismatches(TOOL, tool) == []
    files = {"file": ("fox.png", encode(landscape(64, 48), "PNG"), "image/png")}
    assert mismatches(UPLOAD, post(server, "/File/Upload", files=files)) == []


@pytest.mark.parametrize(("answer", "example"), [("empty", STOPPED_EMPTY), ("bare", STOPPED_BARE)])
def test_cancel_and_kill_answer_as_wiros_own_fixtures(
    make_emulator: EmulatorFactory, answer: str, example: dict[str, Any]
) -> None:
    server = make_emulator(stop_answer=answer, queue_seconds=2.0, task_seconds=30.0)
    with WiroClient(API_KEY, API_SECRET, base_url=server.base_url, retry=NO_WAIT) as c:
        queued = c.run(TextToVideoInput(prompt="queued")).task_id
        running = c.run(TextToVideoInput(prompt="running [emulator:seconds=30]")).task_id
    assert post(server, "/Task/Cancel", json={"taskid": queued}) == example
    server.account.tasks[int(running)].queue = 0.0  # accepted at once: Kill, not Cancel
    assert post(server, "/Task/Kill", json={"taskid": running}) == example


def test_a_killed_task_is_billed_only_when_kills_are(make_emulator: EmulatorFactory) -> None:
    """Wiro-Docs `pricing.md`/`tasks.md`: only successful tasks are billed. Wiro's agent skill: a
    task killed while running may still be charged. The emulator models both."""
    bills = {}
    for bill_kills in (True, False):
        server = make_emulator(bill_kills=bill_kills, queue_seconds=0.0, task_seconds=30.0)
        with WiroClient(API_KEY, API_SECRET, base_url=server.base_url, retry=NO_WAIT) as c:
            task_id = c.run(TextToVideoInput(prompt="killed")).task_id
            time.sleep(0.3)
            killed = c.kill(task_id)
        assert killed.cancelled
        assert killed.elapsed_seconds > 0
        bills[bill_kills] = (killed.total_cost, server.account.stats()["billed"])
    assert bills[True][0] > 0
    assert bills[True][1] == str(bills[True][0])
    assert bills[False] == (Decimal(0), "0.00")


def test_the_documented_mode_is_the_strictest_reading() -> None:
    strict = EmulatorConfig(**DOCUMENTED)
    assert strict.documented
    assert (strict.stop_answer, strict.bill_kills, strict.list_fields) == ("bare", False, False)
    assert strict.socket_frames == "documented"
    assert not EmulatorConfig().documented


def test_task_list_honours_model_name_and_type(make_emulator: EmulatorFactory) -> None:
    """Wiro-MCP `src/client.ts` `listTasks`: `{type: "model", sort: "id", order: "DESC", start,
    limit}`, and `modelName` for "a model slug or partial model name" (`src/tools/list-tasks.ts`)."""
    server = make_emulator()
    with WiroClient(API_KEY, API_SECRET, base_url=server.base_url, retry=NO_WAIT) as c:
        text = c.run(TextToVideoInput(prompt="a fox")).task_id
        image = c.upload(encode(landscape(64, 48), "PNG"), name="start.png")
        i2v = c.run(ImageToVideoInput(image.url, "a start image", num_frames=5)).task_id
    body = {"type": "model", "sort": "id", "order": "DESC", "start": "0", "limit": "20"}

    def listed(**extra: str) -> tuple[list[str], str]:
        answer = post(server, "/Task/List", json={**body, **extra})
        return [t["id"] for t in answer["tasklist"]], answer["total"]

    assert listed() == ([i2v, text], "2")
    assert listed(modelName="wan-ai/wan2.2-ti2v-5b-text-to-video") == ([text], "1")
    assert listed(modelName="image-to-video") == ([i2v], "1")
    assert listed(modelName="Wan2.2") == ([i2v, text], "2")
    assert listed(modelName="sora") == ([], "0")
    assert listed(type="agent") == ([], "0"), "every task here is a model's"


# Wiro-Docs markdown/error-reference.md: "Model Access Errors", "Task Errors", "Balance & Limits"
# and "Validation Errors", each answer `{"result": false, "errors": [{"code", "message"}]}`.
MODEL_NOT_FOUND = {"code": 1, "message": "slug-owner-project-not-exist"}
MISSING_IDENTIFIER = {"code": 0, "message": "taskid or socketaccesstoken is required"}
TASK_NOT_FOUND = {"code": 1, "message": "There is no task yet."}
INSUFFICIENT_BALANCE = {"code": 97, "message": "Insufficient balance"}
INVALID_BODY = {"code": 0, "message": "Request parameters are invalid."}
CONCURRENCY = (
    "You have reached your concurrent task limit. With your current balance of ${balance}, you can run "
    "up to {maxConcurrent} tasks at the same time. Add funds to increase your limit."
)


def refusal(server: EmulatorServer, endpoint: str, **kwargs: Any) -> Any:
    answer = post(server, endpoint, **kwargs)
    assert answer["result"] is False
    [error] = answer["errors"]
    return error


def test_errors_say_what_error_reference_md_says(make_emulator: EmulatorFactory) -> None:
    server = make_emulator(task_seconds=30.0, concurrency_limit=1)
    run = "/Run/Wan-AI/Wan2.2-TI2V-5B-text-to-video"
    assert refusal(server, "/Run/Acme/no-such-model", json={"prompt": "p"}) == MODEL_NOT_FOUND
    tool = {"slugowner": "Acme", "slugproject": "no-such-model"}
    assert refusal(server, "/Tool/Detail", json=tool) == MODEL_NOT_FOUND
    assert refusal(server, "/Task/Detail", json={}) == MISSING_IDENTIFIER
    assert refusal(server, "/Task/Detail", json={"taskid": "999999"}) == TASK_NOT_FOUND
    assert refusal(server, run, content=b"{not json", headers={"content-type": "application/json"}) == INVALID_BODY
    assert post(server, run, json={"prompt": "the one running"})["result"] is True
    limited = refusal(server, run, json={"prompt": "one too many"})
    message = CONCURRENCY.replace("{balance}", "100.00").replace("{maxConcurrent}", "1")
    assert limited == {"code": 96, "message": message}
    broke = make_emulator(balance=Decimal(0))
    assert refusal(broke, run, json={"prompt": "p"}) == INSUFFICIENT_BALANCE


# Wiro-Docs markdown/websocket.md, "Messages" (and the order of tasks.md's "Task Lifecycle"):
# every frame names the task by its `tasktoken`; lifecycle events carry no message; task_output
# a line of the model's stdout; task_postprocess_end the outputs.
SOCKET_QUEUE = {"type": "task_queue", "tasktoken": "eDcCm5yy..."}
SOCKET_OUTPUT = {"type": "task_output", "tasktoken": "eDcCm5yy...", "message": "Step 1/10..."}
SOCKET_END = {
    "type": "task_postprocess_end",
    "tasktoken": "eDcCm5yy...",
    "message": [{"name": "0.png", "url": "https://cdn1.wiro.ai/.../0.png", "size": "202472"}],
}
SOCKET_ORDER = [
    "task_queue",
    "task_accept",
    "task_preprocess_start",
    "task_preprocess_end",
    "task_assign",
    "task_start",
    "task_output",
    "task_output_full",
    "task_end",
    "task_postprocess_start",
    "task_postprocess_end",
]


async def socket_frames(server: EmulatorServer, token: str) -> list[dict[str, Any]]:
    """Every frame the task socket sends for `token`, as JSON, until it closes."""
    from websockets.asyncio.client import connect

    async with connect(server.socket_url) as socket:
        await socket.send(json.dumps({"type": "task_info", "tasktoken": token}))
        return [json.loads(frame) async for frame in socket]


@pytest.mark.anyio
async def test_the_socket_sends_the_frames_websocket_md_shows(make_emulator: EmulatorFactory) -> None:
    server = make_emulator(socket_frames="documented", queue_seconds=0.5, task_seconds=0.3)
    async with AsyncWiroClient(API_KEY, API_SECRET, base_url=server.base_url) as c:
        token = (await c.run(TextToVideoInput(prompt="a fox", num_frames=5))).socket_token
    frames = await socket_frames(server, token)
    assert [f["type"] for f in frames] == SOCKET_ORDER, "each step once, in order, none skipped"
    assert all(f["tasktoken"] == token for f in frames)
    assert mismatches(SOCKET_QUEUE, frames[0]) == []
    assert mismatches(SOCKET_OUTPUT, frames[SOCKET_ORDER.index("task_output")]) == []
    assert mismatches(SOCKET_END, frames[-1]) == []
    with_message = ("task_output", "task_output_full", "task_postprocess_end")
    assert [f["type"] for f in frames if f["message"] is None] == [t for t in SOCKET_ORDER if t not in with_message]


@pytest.mark.anyio
@pytest.mark.parametrize("frames", ["emulator", "documented"])
async def test_the_client_reads_both_kinds_of_socket_frames(make_emulator: EmulatorFactory, frames: str) -> None:
    server = make_emulator(socket_frames=frames, queue_seconds=2.0)  # queued still when the socket opens, under load
    async with AsyncWiroClient(API_KEY, API_SECRET, base_url=server.base_url, socket_url=server.socket_url) as c:
        submitted = await c.run(TextToVideoInput(prompt="a fox", num_frames=5))
        events = [e async for e in c.events(submitted.socket_token)]
    assert events[0].status is TaskStatus.QUEUE
    assert [e.status for e in events if e.status.is_terminal] == [TaskStatus.POSTPROCESS_END]
    assert events[-1].message[0]["url"].endswith("/output.mp4")
    assert TaskStatus.UNKNOWN not in {e.status for e in events}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# Wiro-Docs markdown/models.md, "POST /Tool/List", "Response": `dynamicprice` as a JSON string;
# its "POST /Tool/Detail" example (TOOL above) has the array.
LISTED_PRICE = '[{"inputs":{},"price":0.09,"priceMethod":"cpr"}]'


@pytest.mark.parametrize("as_text", [False, True], ids=["array", "string"])
def test_dynamicprice_as_either_document_shows_it_prices_the_same(
    make_emulator: EmulatorFactory, as_text: bool
) -> None:
    tier = json.loads(LISTED_PRICE)[0]
    server = make_emulator(dynamic_price=(tier,), price_as_text=as_text)
    detail: dict[str, Any] = TOOL["tool"][0]
    example = {**detail, "dynamicprice": LISTED_PRICE if as_text else detail["dynamicprice"]}
    tool = post(server, "/Tool/Detail", json={"slugowner": "Wan-AI", "slugproject": "Wan2.2-TI2V-5B-text-to-video"})
    assert mismatches({**TOOL, "tool": [example]}, tool) == []
    with WiroClient(API_KEY, API_SECRET, base_url=server.base_url, retry=NO_WAIT) as c:
        price = c.tool().price
        task = c.wait(c.run(TextToVideoInput(prompt="a fox", num_frames=5)).task_id)
    assert [(t.price, t.method) for t in price.tiers] == [(Decimal("0.09"), "cpr")]
    assert price.anomalies == ()
    assert task.total_cost == Decimal("0.09"), "billed as the published tier says"


# Wiro-Docs markdown/model-parameters.md, "Single File (fileinput)": a file in `{id}` with an empty
# `{id}Url` (option 1), a URL in `{id}Url` with an empty `{id}` (option 2), or a URL in `{id}`
# itself (option 3); multipart for files, JSON otherwise.
I2V = "/Run/Wan-AI/Wan2.2-TI2V-5B-image-to-video"


def signed_post(server: EmulatorServer, path: str, **kwargs: Any) -> Any:
    """A Run as a client of Wiro's documents sends it (the project's client always sends JSON)."""
    nonce = str(time.time_ns())
    headers = {"x-api-key": API_KEY, "x-nonce": nonce, "x-signature": sign(API_KEY, API_SECRET, nonce)}
    return httpx.post(server.base_url + path, headers=headers, **kwargs).json()


def test_run_takes_the_start_image_as_model_parameters_md_shows(make_emulator: EmulatorFactory) -> None:
    server = make_emulator(preview=True)
    png = encode(landscape(64, 48), "PNG")
    fields = {"prompt": "the image moves", "numFrames": "5"}
    with WiroClient(API_KEY, API_SECRET, base_url=server.base_url, retry=NO_WAIT) as c:
        url = c.upload(png, name="start.png").url
        answers = {
            "file in inputImage": signed_post(
                server, I2V, data={**fields, "inputImageUrl": ""}, files={"inputImage": ("start.png", png, "image/png")}
            ),
            "URL in inputImageUrl": signed_post(server, I2V, data={**fields, "inputImage": "", "inputImageUrl": url}),
            "URL in inputImage": signed_post(server, I2V, json={**fields, "inputImage": url}),
        }
        for how, answer in answers.items():
            assert answer["result"] is True, (how, answer)
            task = c.wait(answer["taskid"], schedule=FAST_POLL)
            assert task.succeeded, (how, task.error_message)
            uuid = server.account.tasks[int(task.id)].uuid
            assert server.app.state.renderer.start_images[uuid].sha256 == hashlib.sha256(png).hexdigest(), how
    text = {"inputImage": ("notes.png", b"not an image at all", "image/png")}
    refused = signed_post(server, I2V, data={**fields, "inputImageUrl": ""}, files=text)
    assert refused["result"] is False
    assert refused["errors"][0]["code"] == 0
    assert server.account.stats()["tasks"] == 3


# Wiro-Docs markdown/files.md, "POST /File/Upload": "Images (jpg, png, gif, jpeg, webp, heic), video
# (mp4, webm, mov), audio (mp3, wav, m4a), documents (pdf, csv, docx, xlsx, pptx, txt, md, epub),
# and ZIP archives". Each sample's first bytes are what its kind begins with.
DOCUMENTED_FILES = {
    "clip.mp4": (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "video/mp4"),
    "clip.webm": (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "video/webm"),
    "clip.mov": (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ", "video/quicktime"),
    "sound.mp3": (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
    "sound.wav": (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
    "sound.m4a": (b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A isom", "audio/mp4"),
    "paper.pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
    "table.csv": (b"prompt,seed\na fox,1\n", "text/csv"),
    "letter.docx": (
        b"PK\x03\x04\x14\x00\x06\x00",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    "sheet.xlsx": (b"PK\x03\x04\x14\x00\x06\x00", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "slides.pptx": (
        b"PK\x03\x04\x14\x00\x06\x00",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    "notes.txt": ("a fox, in snow: ünïcödé".encode(), "text/plain"),
    "readme.md": (b"# A fox\n", "text/markdown"),
    "book.epub": (b"PK\x03\x04\x0a\x00\x00\x00", "application/epub+zip"),
    "bundle.zip": (b"PK\x03\x04\x0a\x00\x00\x00", "application/zip"),
}
NOT_DOCUMENTED = {"tool.exe": b"MZ\x90\x00", "paper.docx": b"%PDF-1.7\n", "data.bin": b"\x00\x01\x02"}


def upload(server: EmulatorServer, name: str, content: bytes) -> Any:
    with WiroClient(API_KEY, API_SECRET, base_url=server.base_url, retry=NO_WAIT) as c:
        return c._http.post("/File/Upload", files={"file": (name, content)}).json()


def test_file_upload_takes_the_types_files_md_lists(make_emulator: EmulatorFactory) -> None:
    server = make_emulator(upload_types="documented")
    for name, (content, content_type) in DOCUMENTED_FILES.items():
        answer = upload(server, name, content)
        assert answer["result"] is True, (name, answer)
        assert mismatches(UPLOAD, answer) == []
        assert (answer["list"][0]["name"], answer["list"][0]["contenttype"]) == (name, content_type)
    assert upload(server, "start.png", encode(landscape(64, 48), "PNG"))["list"][0]["contenttype"] == "image/png"
    for name, content in NOT_DOCUMENTED.items():
        assert upload(server, name, content)["result"] is False, (
            f"{name}: not a type files.md lists, or not what it says"
        )


def test_file_upload_takes_images_alone_by_default(make_emulator: EmulatorFactory) -> None:
    server = make_emulator(upload_types="images")
    assert upload(server, "paper.pdf", DOCUMENTED_FILES["paper.pdf"][0])["result"] is False
    assert upload(server, "start.png", encode(landscape(64, 48), "PNG"))["result"] is True


# The fault and money tests: each runs against the emulator in today's mode and in DOCUMENTED
# (issue 21's "done when"); tests/conftest.py parametrizes the tests marked `both_modes`.
BOTH_MODES = {
    "tests/test_faults.py": {
        "test_fault_matrix_every_row_accounted_for_one_task_each",
        "test_a_server_clock_an_hour_off_never_makes_a_row_pay_twice",
        "test_the_bill_never_passes_the_budget_whatever_the_price",
    },
    "tests/test_bill.py": {"test_final_records_without_a_bill_never_let_the_sweep_pass_its_budget"},
    "tests/test_real_api.py": {
        "test_cancel_and_kill_answered_without_the_task_return_the_task_as_read_after",
        "test_a_task_past_its_deadline_ends_timed_out_when_kill_answers_without_the_task",
        "test_stopping_a_sweeps_tasks_records_each_stop_as_the_task_reads_after_it",
        "test_a_final_task_error_that_wiro_will_not_stop_is_failed_at_once",
        "test_an_interim_task_error_is_cancelled_and_failed_with_its_reason",
        "test_the_emulator_accepts_a_repeated_nonce_only_when_asked",
    },
    "tests/test_real_api_scan.py": {
        "test_a_task_list_without_parameters_is_read_with_task_detail",
        "test_an_old_task_read_whole_ends_the_scan_without_reading_the_rest",
        "test_tasks_whose_inputs_no_answer_gives_make_the_scan_blind",
        "test_task_detail_reads_are_bounded",
        "test_a_sweep_whose_lost_answer_cannot_be_traced_stops_submitting_and_says_why",
    },
}


def test_the_fault_and_money_tests_run_in_both_modes() -> None:
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *BOTH_MODES]
    collected = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    modes: dict[str, Counter[str]] = {}
    for line in collected.stdout.splitlines():
        path, _, test = line.partition("::")
        name, _, params = test.partition("[")
        mode = next((m for m in ("today", "documented") if m in params.rstrip("]").split("-")), "")
        if name in BOTH_MODES.get(path, ()):
            modes.setdefault(f"{path}::{name}", Counter())[mode] += 1
    assert len(modes) == sum(len(names) for names in BOTH_MODES.values()), "every one was collected"
    for test, seen in modes.items():
        assert set(seen) == {"today", "documented"}, (test, seen)
        assert seen["today"] == seen["documented"], (test, seen)
