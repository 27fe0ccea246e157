"""Image-to-video sweeps end to end: grids of real PNG and JPEG start images (made here) run by the
sweep flow against the emulator. Each distinct image is uploaded once per OUT, the image-to-video
model runs from the uploaded URL, each video starts from its own image, and a kill between the
upload and the Run answer pays and uploads nothing twice."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.engine.rows import records
from flows.grid import load_grid
from flows.store.journal import read_events
from flows.store.manifest import read_manifest
from wiro_tasks import IMAGE_TO_VIDEO, TEXT_TO_VIDEO
from wiro_tasks.emulator import EmulatorServer

from .conftest import EmulatorFactory
from .images import difference, landscape, portrait, resized, write
from .mp4 import first_frame_rgb
from .processes import FAST_SCANS, finish, start, wait_for
from .test_faults import runs_seen
from .test_sweep import run_sweep

pytestmark = pytest.mark.usefixtures("prefect_api")
FRAMES = 9


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def counters(emulator: EmulatorServer) -> Counter[str]:
    return Counter(emulator.account.stats()["counters"])


def tasks(emulator: EmulatorServer) -> list[Any]:
    return list(emulator.account.tasks.values())


def test_an_image_grid_uploads_each_image_once_and_each_video_starts_from_its_image(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator(queue_seconds=0.05, task_seconds=0.3)
    wiro_env(emulator)
    frames = tmp_path / "frames"
    (frames / "copies").mkdir(parents=True)
    blocks = write(frames / "blocks.png", landscape(), "PNG")
    stripes = write(frames / "stripes.jpg", portrait(), "JPEG", quality=95)
    same = Path(shutil.copy(blocks, frames / "copies" / "same-bytes.png"))  # another path, the same image
    grid = tmp_path / "grid.csv"
    grid.write_text(
        "inputImage,prompt,numFrames\n"
        f"frames/blocks.png,the blocks drift,{FRAMES}\n"
        f"{stripes},the stripes wave,{FRAMES}\n"  # an absolute path
        f"frames/copies/same-bytes.png,the blocks drift,{FRAMES}\n"
        f",a fox with no start image,{FRAMES}\n"  # a text row in the same sweep
    )
    out = tmp_path / "out"
    state = run_sweep(grid, out, axes={"seed": ["1", "2"]})
    assert state.is_completed(), state.message

    seen = counters(emulator)
    assert seen["upload"] == 2, "one upload per distinct image (two paths hold the same bytes)"
    uploaded = {f.url(emulator.root_url) for f in emulator.app.state.uploads.files}
    assert len(uploaded) == 2
    made = tasks(emulator)
    assert Counter(t.model for t in made) == {IMAGE_TO_VIDEO: 4, TEXT_TO_VIDEO: 2}, "3 rows, 2 merged, x 2 seeds"
    assert {t.parameters["inputImageUrl"] for t in made if t.model == IMAGE_TO_VIDEO} <= uploaded

    manifest = read_manifest(out)
    assert len(manifest) == 6
    assert set(manifest["status"]) == {"succeeded"}, manifest[["prompt", "status", "error"]]
    images = manifest[manifest["model"] == IMAGE_TO_VIDEO]
    assert set(images["input_image_sha256"]) == {sha256(blocks), sha256(stripes)}
    assert set(images["inputImage"]) == {"frames/blocks.png", str(stripes)}, "the path as the grid gave it"
    assert images["inputImageUrl"].notna().all()
    assert set(images["inputImageUrl"]) <= uploaded
    assert images["size"].isna().all()
    assert (images[["width", "height"]] == 0).all().all(), "0: the video follows the image"
    text = manifest[manifest["model"] == TEXT_TO_VIDEO]
    assert text[["inputImage", "inputImageUrl", "input_image_sha256", "width", "height"]].isna().all().all()
    assert (text["size"] == "832*480").all()
    merged = images[images["input_image_sha256"] == sha256(same)]
    assert all("grid.csv:1" in s and "grid.csv:3" in s for s in merged["source"]), "one row, both sources"

    for row in records(images):
        pixels = landscape() if row["input_image_sha256"] == sha256(blocks) else portrait()
        rgb, complaints = first_frame_rgb((out / row["output_path"]).read_bytes())
        assert complaints == []
        height, width = rgb.shape[:2]
        assert abs(width / height / (pixels.shape[1] / pixels.shape[0]) - 1) < 0.05, "the shape follows the image"
        assert difference(resized(rgb, pixels.shape[1], pixels.shape[0]), pixels) < 6, row["inputImage"]

    page = (out / "report.html").read_text()
    for image in (blocks, stripes):  # the report shows each start image beside its videos
        assert (out / "thumbs" / f"{sha256(image)}.jpg").is_file()
        assert f"thumbs/{sha256(image)}.jpg" in page

    again = run_sweep(grid, out, axes={"seed": ["1", "2"]})
    assert again.is_completed(), again.message
    assert counters(emulator)["upload"] == 2, "a rerun uploads nothing"
    assert counters(emulator)["run"] == 6, "... and pays for nothing"


def test_row_ids_follow_the_image_content_not_its_path(tmp_path: Path) -> None:
    first = tmp_path / "shoot-1"
    first.mkdir()
    write(first / "start.png", landscape(), "PNG")
    (first / "grid.csv").write_text("inputImage,prompt\nstart.png,it moves\n")
    [before] = load_grid([first / "grid.csv"])["row_id"]

    moved = first.rename(tmp_path / "moved")
    [after_move] = load_grid([moved / "grid.csv"])["row_id"]
    assert after_move == before, "moving the folder keeps the id"

    pixels = landscape()
    pixels[0, 0] = (0, 0, 0)  # one pixel
    write(moved / "start.png", pixels, "PNG")
    [after_edit] = load_grid([moved / "grid.csv"])["row_id"]
    assert after_edit != before, "new pixels make a new row"


def test_a_directory_axis_sweeps_every_image_in_it(tmp_path: Path) -> None:
    folder = tmp_path / "starts"
    folder.mkdir()
    write(folder / "a.png", landscape(), "PNG")
    write(folder / "b.jpg", portrait(), "JPEG")
    (folder / "notes.txt").write_text("not an image")
    (tmp_path / "grid.csv").write_text("prompt\none\ntwo\n")
    frame = load_grid([tmp_path / "grid.csv"], {"inputImage": [str(folder)]})
    assert len(frame) == 4
    assert set(frame["model"]) == {IMAGE_TO_VIDEO}
    assert {Path(p).name for p in frame["inputImage"]} == {"a.png", "b.jpg"}
    forced = load_grid([tmp_path / "grid.csv"], {"inputImage": [str(folder / "a.png")]}, model="i2v")
    assert len(forced) == 2


@pytest.mark.parametrize("moment", ["run answer pending", "just uploaded"])
def test_a_sigkill_between_upload_and_run_then_a_resume_uploads_and_pays_nothing_twice(
    moment: str,
    make_emulator: EmulatorFactory,
    subprocess_env: Callable[[EmulatorServer], dict[str, str]],
    tmp_path: Path,
) -> None:
    """Killed while the Run answer is on its way (the task exists, the upload is journaled), or
    right after the upload is journaled: the resume uploads nothing and adopts or submits once."""
    emulator = make_emulator(queue_seconds=0.05, task_seconds=0.3)
    if moment == "run answer pending":  # the task is made at once, its answer comes 30 s later
        emulator.account.faults = emulator.account.faults.updated({"run_script": ["slow"], "slow_seconds": 30.0})
    frames = tmp_path / "frames"
    frames.mkdir()
    write(frames / "one.png", landscape(), "PNG")
    write(frames / "two.jpg", portrait(), "JPEG", quality=90)
    grid = tmp_path / "grid.csv"
    grid.write_text(f"inputImage,prompt,numFrames\nframes/one.png,first,{FRAMES}\nframes/two.jpg,second,{FRAMES}\n")
    out, log = tmp_path / "out", tmp_path / "log.txt"
    journal = out / "journal.jsonl"
    args = [str(grid), "--out", str(out), "--max-concurrency", "1", "--poll-interval", "0.05"]

    def uploaded() -> bool:
        return journal.exists() and b'"uploaded"' in journal.read_bytes()

    process = start(args, subprocess_env(emulator), log, FAST_SCANS)
    try:
        if moment == "run answer pending":
            ready = wait_for(lambda: uploaded() and runs_seen(emulator) >= 1, process, 60)
        else:
            ready = wait_for(uploaded, process, 60)
        assert ready, log.read_text()[-3000:]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    time.sleep(0.2)
    before = counters(emulator)
    assert before["upload"] == 1, before

    emulator.account.faults = emulator.account.faults.updated({"run_script": []})
    resumed = start(args, subprocess_env(emulator), log, FAST_SCANS)
    assert finish(resumed, log, 120) == 0, log.read_text()[-3000:]

    after = counters(emulator)
    assert after["upload"] == 2, ("each image uploaded once in all", before, after)
    paid = Counter(t.parameters["prompt"] for t in tasks(emulator))
    assert paid == {"first": 1, "second": 1}, paid
    events = read_events(journal)
    assert Counter(e["sha256"] for e in events if e["event"] == "uploaded").most_common(1)[0][1] == 1
    manifest = pd.read_csv(out / "manifest.csv")
    assert set(manifest["status"]) == {"succeeded"}, manifest[["prompt", "status", "error"]]
    assert manifest["inputImageUrl"].str.startswith("http").all()


def test_the_example_image_grid_dry_runs_with_each_models_price(tmp_path: Path) -> None:
    """examples/image-grid.csv (three start images and a text row) is valid as shipped, and the dry
    run prices each model from its own Tool/Detail."""
    from click.testing import CliRunner

    from flows.cli import main

    example = Path(__file__).parent.parent / "examples" / "image-grid.csv"
    result = CliRunner().invoke(main, ["run", str(example), "--axis", "seed=1,2", "--out", str(tmp_path / "out"),
                                       "--emulator", "--dry-run"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "8 combinations; 0 already done" in result.output
    for model in (IMAGE_TO_VIDEO, TEXT_TO_VIDEO):
        assert f"Price of {model}: cps $0.0012/s from Tool/Detail" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_another_api_or_key_uploads_again_and_a_retried_row_gets_a_fresh_url(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """A journaled URL belongs to the API and key it was uploaded with (`--emulator` starts a new
    one each run), and a row whose task failed from it uploads anew when retried: the file may be
    gone from Wiro's storage. Before, either left the image's rows failing for good in that OUT."""
    write(tmp_path / "start.png", landscape(), "PNG")
    grid = tmp_path / "grid.csv"
    grid.write_text(f"inputImage,prompt,numFrames\nstart.png,it moves,{FRAMES}\n")
    out = tmp_path / "out"
    first = make_emulator(queue_seconds=0.05, task_seconds=0.2)
    wiro_env(first)
    assert run_sweep(grid, out, axes={"seed": ["1"]}).is_completed()
    first.stop()  # its URLs answer nothing now

    second = make_emulator(queue_seconds=0.05, task_seconds=0.2)
    wiro_env(second)
    state = run_sweep(grid, out, axes={"seed": ["1", "2"]})
    assert state.is_completed(), read_manifest(out)[["seed", "status", "error"]]
    assert counters(second)["upload"] == 1, "uploaded again for the other API and key, once"

    second.app.state.uploads._files.clear()  # the uploaded file is gone from the account's storage
    gone = run_sweep(grid, out, axes={"seed": ["1", "2", "3"]})
    assert not gone.is_completed()
    [failed] = records(read_manifest(out).query("seed == '3'"))
    assert "could not be downloaded" in failed["error"]
    retried = run_sweep(grid, out, axes={"seed": ["1", "2", "3"]}, retry_failed=True)
    assert retried.is_completed(), read_manifest(out)[["seed", "status", "error"]]
    assert counters(second)["upload"] == 2, "the retried row uploaded its image anew"
    assert Counter(t.parameters["seed"] for t in tasks(second)) == {"2": 1, "3": 2}, (
        "task ids of the first API said nothing"
    )


def test_the_budget_counts_a_per_image_price_for_images_not_uploaded_yet(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    """A cp-pixel tier charging per input image: a local image's row is priced with its image before
    the upload gives it a URL. Before, the image's charge was left out and $0.50 billed $0.60."""
    tier = {"inputs": {}, "price": "0.10", "priceMethod": "cp-pixel", "priceInput": "0.10"}
    emulator = make_emulator(queue_seconds=0.05, task_seconds=0.2, dynamic_price=(tier,))
    wiro_env(emulator)
    write(tmp_path / "start.png", landscape(), "PNG")
    grid = tmp_path / "grid.csv"
    grid.write_text(f"inputImage,prompt,numFrames,width,height\nstart.png,it moves,{FRAMES},512,512\n")
    out = tmp_path / "out"
    run_sweep(grid, out, axes={"seed": [str(n) for n in range(1, 7)]}, budget=0.5, max_concurrency=2)
    billed = Decimal(str(emulator.account.stats()["billed"]))
    manifest = read_manifest(out)
    assert billed <= Decimal("0.5"), (billed, manifest[["seed", "status", "cost_usd", "error"]])
    assert (manifest["status"] == "succeeded").sum() == 2, "two rows of $0.20 fit in $0.50"
    assert sum(manifest["cost_usd"]) == billed


def test_an_upload_that_keeps_failing_is_tried_once_per_image_not_once_per_row(
    make_emulator: EmulatorFactory, wiro_env: Callable[[EmulatorServer], None], tmp_path: Path
) -> None:
    emulator = make_emulator(queue_seconds=0.05, task_seconds=0.2)
    wiro_env(emulator)
    emulator.account.faults = emulator.account.faults.updated({"script": ["503"] * 40})  # everything fails a while
    write(tmp_path / "start.png", landscape(), "PNG")
    grid = tmp_path / "grid.csv"
    grid.write_text(f"inputImage,prompt,numFrames\nstart.png,it moves,{FRAMES}\n")
    out = tmp_path / "out"
    state = run_sweep(grid, out, axes={"seed": [str(n) for n in range(1, 5)]})
    assert not state.is_completed()
    manifest = read_manifest(out)
    assert set(manifest["status"]) == {"failed"}
    assert all("no Run request was sent" in e for e in manifest["error"])
    seen = counters(emulator)
    assert "run" not in seen
    assert seen["upload"] <= 6, f"one upload with its retries for the image, not one per row: {seen}"
