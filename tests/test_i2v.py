"""The image-to-video model on the emulator, end to end over loopback: real PNG and JPEG files are
uploaded, the model runs from their URLs, and the first frame of each video is decoded (FFmpeg,
through PyAV) and compared with its start image."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wiro_tasks import ImageToVideoInput, Task, WiroClient
from wiro_tasks.emulator.i2v import i2v_size
from wiro_tasks.emulator.video import _make_plan, _render_yuv, preview_dimensions, render_mp4

from .conftest import API_KEY, API_SECRET, FAST_POLL, NO_WAIT, EmulatorFactory
from .images import LANDSCAPE_BLOCKS, difference, encode, heic_header, landscape, portrait, resized, write
from .mp4 import decode_mp4, first_frame_rgb

FRAMES = 9


def run(client: WiroClient, url: str, width: int = 0, height: int = 0) -> Task:
    inputs = ImageToVideoInput(url, "the start image moves", width=width, height=height, num_frames=FRAMES)
    return client.wait(client.run(inputs).task_id, schedule=FAST_POLL)


def first_frame(client: WiroClient, task: Task, tmp_path: Path) -> np.ndarray:
    assert task.succeeded, task.error_message
    video = client.download(task.outputs[0], tmp_path / f"{task.id}.mp4").path.read_bytes()
    lumas, stream, complaints = decode_mp4(video)
    assert complaints == []
    assert len(lumas) == FRAMES
    rgb, complaints = first_frame_rgb(video)
    assert complaints == []
    assert rgb.shape == (stream.height, stream.width, 3)
    return rgb


def test_each_first_frame_is_its_own_uploaded_image_and_follows_its_shape(client: WiroClient, tmp_path: Path) -> None:
    images = {
        "png": (landscape(), write(tmp_path / "blocks.png", landscape(), "PNG"), (704, 544)),
        "jpeg": (portrait(), write(tmp_path / "stripes.jpg", portrait(), "JPEG", quality=95), (512, 768)),
    }
    uploads = {kind: client.upload(path) for kind, (_, path, _) in images.items()}
    tasks = {kind: run(client, uploaded.url) for kind, uploaded in uploads.items()}  # both exist at once
    for kind, (pixels, _, size) in images.items():
        task = tasks[kind]
        assert task.parameters["inputImageUrl"] == uploads[kind].url, "the model ran from the uploaded URL"
        frame = first_frame(client, task, tmp_path)
        height, width = frame.shape[:2]
        assert (width, height) == size
        assert width % 32 == height % 32 == 0
        assert width * height <= 832 * 480
        image_ratio = pixels.shape[1] / pixels.shape[0]
        assert abs(width / height / image_ratio - 1) < 0.05, "the aspect ratio follows the image"
        for other_kind, (other, _, _) in images.items():
            gap = difference(resized(frame, other.shape[1], other.shape[0]), other)
            assert gap < 6 if other_kind == kind else gap > 40, (kind, other_kind, gap)


def test_a_given_size_is_kept_and_the_image_covers_it(client: WiroClient, tmp_path: Path) -> None:
    uploaded = client.upload(encode(landscape(), "PNG"))
    frame = first_frame(client, run(client, uploaded.url, width=832, height=480), tmp_path)
    assert frame.shape == (480, 832, 3)
    expected = landscape(832, 624)[72:552]  # 640x480 scaled to cover 832 wide, centre-cropped
    assert difference(frame, expected) < 6
    for i, colour in enumerate(LANDSCAPE_BLOCKS):  # each block's middle, as drawn
        y, x = (120 if i < 2 else 360), (208 if i % 2 == 0 else 624)
        assert np.abs(frame[y - 20 : y + 20, x - 20 : x + 20].mean(axis=(0, 1)) - colour).max() < 6
    one_side = run(client, uploaded.url, width=512)
    assert first_frame(client, one_side, tmp_path).shape == (384, 512, 3)


def test_preview_videos_still_start_from_the_image(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    emulator = make_emulator(preview=True)
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT) as c:
        frame = first_frame(c, run(c, c.upload(encode(landscape(), "JPEG", quality=95)).url), tmp_path)
    assert frame.shape[1::-1] == preview_dimensions(704, 544)
    assert difference(resized(frame, 640, 480), landscape()) < 12


class ImageHost:
    """A stand-in for some other host's image URLs, on loopback: each path its own behaviour."""

    def __init__(self, image: bytes) -> None:
        self.hits: dict[str, int] = {}
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.hits[self.path] = host.hits.get(self.path, 0) + 1
                if self.path == "/slow.jpg":
                    time.sleep(2)
                served = {"/start.jpg": image, "/slow.jpg": image, "/notes.png": b"a prompt, not a picture"}
                body = served.get(self.path)
                if self.path == "/huge.png":
                    self.send_response(200)
                    self.send_header("Content-Length", str(100_000_001))
                    self.end_headers()
                    return
                if self.path == "/endless.png":
                    self.send_response(200)
                    self.end_headers()
                    self.close_connection = True
                    try:
                        for _ in range(200):
                            self.wfile.write(b"\x89PNG\r\n\x1a\n" + bytes(1 << 20))
                    except OSError:
                        pass
                    return
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image_host() -> Iterator[ImageHost]:
    host = ImageHost(encode(portrait(), "JPEG", quality=95))
    yield host
    host.close()


def test_an_image_on_another_host_is_fetched(client: WiroClient, image_host: ImageHost, tmp_path: Path) -> None:
    frame = first_frame(client, run(client, f"{image_host.url}/start.jpg"), tmp_path)
    assert frame.shape == (768, 512, 3)
    assert difference(resized(frame, 480, 720), portrait()) < 6
    assert image_host.hits["/start.jpg"] == 1


def assert_failed_free(task: Task, *reasons: str) -> None:
    """Failed as Wiro's failures end: final, pexit non-zero, no output, no charge, a reason."""
    assert task.failed
    assert task.pexit == "1"
    assert task.outputs == ()
    assert task.total_cost == 0
    for reason in reasons:
        assert reason in task.debug_error


@pytest.mark.parametrize(
    ("path", "timeout", "reasons"),
    [
        ("/missing.png", 30, ("could not be downloaded", "HTTP 404")),
        ("/notes.png", 30, ("is not usable", "is not a jpg, jpeg, png, webp, gif or heic image")),
        ("/huge.png", 30, ("could not be downloaded", "larger than 100,000,000 bytes")),
        ("/endless.png", 60, ("could not be downloaded", "larger than 100,000,000 bytes")),
        ("/slow.jpg", 0.5, ("could not be downloaded", "no complete answer within 0.5 s")),
    ],
)
def test_a_task_that_cannot_get_a_usable_image_fails_and_costs_nothing(
    make_emulator: EmulatorFactory, image_host: ImageHost, path: str, timeout: float, reasons: tuple[str, ...]
) -> None:
    emulator = make_emulator(image_fetch_timeout=timeout)
    with WiroClient(API_KEY, API_SECRET, base_url=emulator.base_url, retry=NO_WAIT) as c:
        task = run(c, f"{image_host.url}{path}")
    assert_failed_free(task, f"{image_host.url}{path}", *reasons)
    assert emulator.account.stats()["billed"] == "0.00"


def test_an_unreachable_url_fails_without_showing_its_credentials(client: WiroClient) -> None:
    task = run(client, "http://someone:hunter2@127.0.0.1:1/start.png?token=s3cret")
    assert_failed_free(task, "could not be downloaded from http://127.0.0.1:1/start.png", "ConnectError")
    assert "hunter2" not in task.debug_error
    assert "s3cret" not in task.debug_error


def test_own_uploads_that_do_not_exist_or_do_not_decode_fail(client: WiroClient, tmp_path: Path) -> None:
    png = encode(landscape(), "PNG")
    uploaded = client.upload(png)
    assert_failed_free(run(client, uploaded.url.replace(f"/{uploaded.id}/", "/999999/")), "HTTP 404")
    damaged = client.upload(png[:33] + bytes(len(png) - 33))  # a valid header, then no image data
    assert_failed_free(run(client, damaged.url), "could not be decoded")
    heic = client.upload(heic_header(b"heic", b"mif1"))
    assert_failed_free(run(client, heic.url), "cannot decode heic")


@pytest.mark.parametrize(
    ("image", "given", "size"),
    [
        ((640, 480), (0, 0), (704, 544)),
        ((480, 720), (0, 0), (512, 768)),
        ((832, 480), (0, 0), (832, 480)),
        ((1920, 1080), (0, 0), (832, 480)),
        ((3000, 100), (0, 0), (3456, 96)),
        ((640, 480), (832, 480), (832, 480)),
        ((640, 480), (512, 0), (512, 384)),
        ((480, 640), (0, 512), (384, 512)),
    ],
)
def test_the_size_rule(image: tuple[int, int], given: tuple[int, int], size: tuple[int, int]) -> None:
    assert i2v_size(*image, *given) == size


def test_render_mp4_shows_a_given_first_frame_exactly_and_only_it() -> None:
    picture = resized(portrait(), 96, 64).astype(np.float32) / np.float32(255)

    def render(**extra: Any) -> bytes:
        return render_mp4(width=96, height=64, num_frames=3, fps=16, prompt="p", seed="1", label="caption", **extra)

    lumas, _, complaints = decode_mp4(render(first_frame=picture))
    assert complaints == []
    plan = _make_plan(96, 64, 3, 16, "p", "1", "caption", captioned=False)
    assert plan.text_rows == 0, "no caption drawn over the image"
    expected = _render_yuv(plan, "p", "1", picture)[0][:64, :96]
    assert np.array_equal(lumas[0], expected)
    drawn = decode_mp4(render())[0][0]
    assert np.abs(drawn.astype(int) - lumas[0].astype(int)).mean() > 10
    with pytest.raises(ValueError, match="first_frame must be 64x96x3"):
        render(first_frame=picture[:, :90])
