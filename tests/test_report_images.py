"""Image-to-video sweeps in the report and in compare: start-image thumbnails, the image as an axis,
mixed text and image rows, and manifests from before images existed.

The manifests are built by hand in the shape the contract gives (a `model` column after `row_id`;
`inputImage`, `inputImageUrl`, `width`, `height`, `input_image_sha256` after `seed`; `size` null on
image rows) over real PNG and JPEG files made with Pillow."""

from __future__ import annotations

import csv
import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flows.store.manifest import MANIFEST_PARQUET
from flows.store.thumbnails import MAX_SIDE, save_thumbnail, thumbnail_path, thumbnail_size, with_image_columns
from flows.view.compare import COMPARE_CSV, COMPARE_PARQUET, compare_outs
from flows.view.compare_page import write_comparison
from flows.view.report import REPORT, build_report, swept_inputs, write_report
from wiro_tasks.emulator.i2v import fit_frame, i2v_size
from wiro_tasks.emulator.video import render_mp4
from wiro_tasks.inputs import IMAGE_TO_VIDEO, TEXT_TO_VIDEO

from . import images
from .nights import Row as NightRow
from .nights import night
from .test_report import (
    BOAT,
    FOX,
    Node,
    inputs_listed,
    parse,
    sheets,
    sweep,
    video_src,
    watch,  # fmt: skip
)
from .test_report import chromium as chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser

SCREENS = Path("/work/screens/i2v")
IMAGE_COLUMNS = ("inputImage", "inputImageUrl", "width", "height", "input_image_sha256")


@dataclass(frozen=True)
class Start:
    """A row's start image as the manifest names it: the path as given, its URL, its content hash."""

    path: str | None = None
    url: str | None = None
    sha: str | None = None


def picture(folder: Path, name: str, pixels: np.ndarray, fmt: str, url: str | None = None) -> Start:
    path = images.write(folder / name, pixels, fmt)
    return Start(str(path), url, hashlib.sha256(path.read_bytes()).hexdigest())


def image_sweep(prompts: Sequence[str], starts: Sequence[Start | None], seeds: Sequence[str],
                width: int = 0, height: int = 0) -> pd.DataFrame:  # fmt: skip
    """A finished sweep's manifest, prompts x starts x seeds (None: a text-to-video row), as the
    lead's manifest lays it out."""
    base = sweep(list(prompts), {"seed": list(seeds)})
    rows = []
    for record in cast(list[dict[str, Any]], base.to_dict("records")):
        for start in starts:
            row = dict(record)
            if start is None:
                row.update(model=TEXT_TO_VIDEO, inputImage=None, inputImageUrl=None, width=None, height=None,
                           input_image_sha256=None)  # fmt: skip
            else:
                identity = start.sha or start.url or ""
                row["row_id"] = hashlib.sha256(f"{record['row_id']}|{identity}".encode()).hexdigest()[:16]
                row.update(model=IMAGE_TO_VIDEO, size=None, inputImage=start.path, inputImageUrl=start.url,
                           width=width, height=height, input_image_sha256=start.sha,
                           output_path=f"videos/{row['row_id']}.mp4")  # fmt: skip
            rows.append(row)
    frame = pd.DataFrame(rows)
    columns = [c for c in base.columns if c not in ("model", *IMAGE_COLUMNS)]  # the lead's manifest has them
    at = columns.index("seed") + 1
    order = [columns[0], "model", *columns[1:at], *IMAGE_COLUMNS, *columns[at:]]
    return frame[order].astype({"width": "Int64", "height": "Int64"})


@pytest.fixture
def three(tmp_path: Path) -> list[Start]:
    """Three start images: a landscape PNG, a portrait JPEG, and a small landscape PNG."""
    return [picture(tmp_path, "harbour.png", images.landscape(), "PNG"),
            picture(tmp_path, "tower.jpg", images.portrait(), "JPEG", url="https://files.example/u/1/tower.jpg"),
            picture(tmp_path, "field.png", images.landscape(320, 240)[::-1].copy(), "PNG")]  # fmt: skip


def thumbs_for(out: Path, starts: Sequence[Start | None]) -> dict[str, tuple[int, int]]:
    made = {}
    for start in starts:
        if start is not None and start.path and start.sha:
            path = save_thumbnail(Path(start.path), out, start.sha)
            assert path is not None
            size = thumbnail_size(path)
            assert size is not None
            made[start.sha] = size
    return made


def start_src(card: Node) -> str | None:
    found = card.find_all("img", "start")
    return found[0].attrs["src"] if found else None


# ------------------------------------------------------------- thumbnails


def test_a_thumbnail_is_a_jpeg_at_most_256_px_on_its_longest_side(tmp_path: Path) -> None:
    wide = picture(tmp_path, "wide.png", images.landscape(), "PNG")
    tall = picture(tmp_path, "tall.jpg", images.portrait(), "JPEG")
    clear = images.write(tmp_path / "clear.png", np.zeros((100, 60, 4), np.uint8), "PNG")  # RGBA, transparent
    out = tmp_path / "out"
    for start, size in ((wide, (256, 192)), (tall, (171, 256))):
        assert start.path
        assert start.sha
        path = save_thumbnail(Path(start.path), out, start.sha)
        assert path == thumbnail_path(out, start.sha) == out / "thumbs" / f"{start.sha}.jpg"
        assert path.read_bytes()[:3] == b"\xff\xd8\xff"
        with Image.open(path) as shown:
            assert (shown.format, shown.size) == ("JPEG", size)
            assert max(shown.size) <= MAX_SIDE
    sha = hashlib.sha256(clear.read_bytes()).hexdigest()
    assert thumbnail_size(cast(Path, save_thumbnail(clear, out, sha))) == (60, 100), "small images are not enlarged"


def test_a_thumbnail_already_there_is_kept(tmp_path: Path) -> None:
    start = picture(tmp_path, "a.png", images.landscape(), "PNG")
    assert start.path
    assert start.sha
    first = save_thumbnail(Path(start.path), tmp_path, start.sha)
    assert first is not None
    first.write_bytes(b"kept")
    assert save_thumbnail(Path(start.path), tmp_path, start.sha) == first
    assert first.read_bytes() == b"kept", "not written again"


def test_a_thumbnail_that_cannot_be_made_is_a_warning_never_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "not.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing after")
    heic = tmp_path / "photo.heic"
    heic.write_bytes(images.heic_header(b"heic", b"mif1"))
    sha = "ab" * 32
    assert save_thumbnail(tmp_path / "not.png", tmp_path, sha) is None
    assert save_thumbnail(heic, tmp_path, sha) is None
    assert save_thumbnail(tmp_path / "gone.png", tmp_path, sha) is None
    assert save_thumbnail(tmp_path / "not.png", tmp_path, "../../escape") is None, "the hash names a file: hex only"
    assert caplog.text.count("no thumbnail for") == 4
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")], "no temporary file left"
    assert not (tmp_path / "thumbs").exists() or not any((tmp_path / "thumbs").iterdir())


# ------------------------------------------------------------- older manifests, text-to-video sweeps


def test_a_manifest_from_before_images_reads_as_all_null_and_looks_as_it_did() -> None:
    old = sweep([FOX, BOAT], {"seed": ["1", "2"], "steps": ["20", "30"]})
    old = old.drop(columns=[c for c in ("model", *IMAGE_COLUMNS) if c in old.columns])
    page = build_report(old)
    new = build_report(with_image_columns(old).assign(model=TEXT_TO_VIDEO))
    sheet = page.split('<script type="application/json" id="inputs">')[0]
    assert new.split('<script type="application/json" id="inputs">')[0] == sheet, "what a text-to-video sweep shows"
    assert inputs_listed(new)["names"] == [*inputs_listed(page)["names"][:-4], "model", "row_id", "task_id",
                                           "attempts", "source"], "its inputs list names the model it ran"  # fmt: skip
    assert "inputImage" not in swept_inputs(old)
    assert "inputImage" not in page.split('id="inputs"')[0], "no image anywhere on a text-to-video sheet"
    assert "inputImage" not in inputs_listed(page)["names"]


# ------------------------------------------------------------- the image as an axis


def test_three_images_by_two_prompts_by_two_seeds_put_the_images_across_with_their_thumbnails(
    three: list[Start],
) -> None:
    manifest = image_sweep([FOX, BOAT], three, ["1", "2"])
    thumbs = {s.sha: (256, 192) for s in three if s.sha}
    page = build_report(manifest, thumbs=thumbs)
    [sheet] = sheets(page)
    assert sheet.rows == [FOX, BOAT]
    names = ["harbour.png", "tower.jpg", "field.png"]  # in grid order
    assert sheet.columns == [f"inputImage {n} · seed {s}" for n in names for s in ("1", "2")]
    heads = parse(page).find_all("thead")[0].find_all("tr")
    top = heads[0].find_all("th")
    assert [th.attrs["colspan"] for th in top] == ["2", "2", "2"], "each image spans its seeds"
    assert [th.find_all("img", "thumb")[0].attrs["src"] for th in top] == [f"thumbs/{s.sha}.jpg" for s in three]
    assert sum(len(c) for c in sheet.cards.values()) == len(manifest) == 12
    for (_, c), [card] in sheet.cards.items():
        start = three[c // 2]
        assert start_src(card) == f"thumbs/{start.sha}.jpg", "the start image beside each video"
        row = manifest[manifest["row_id"] == card.attrs["data-row-id"]].iloc[0]
        assert row["input_image_sha256"] == start.sha
        assert video_src(card) == row["output_path"]
    assert not parse(page).find_all("div", "empty"), "no 'no such combination' cell"
    assert "model image-to-video" in parse(page).find_all("p", "fixed")[0].text()
    assert "size" not in parse(page).find_all("p", "fixed")[0].text(), "image rows have no size"


def test_the_image_as_rows_or_columns_by_name_and_thumbnail(three: list[Start]) -> None:
    manifest = image_sweep([FOX, BOAT], three, ["1", "2"])
    thumbs = {s.sha: (256, 192) for s in three if s.sha}
    fox, boat = sheets(build_report(manifest, rows="inputImage", thumbs=thumbs))
    assert (fox.heading, boat.heading) == (FOX, BOAT), "prompts left over head sections"
    assert fox.rows == ["inputImage harbour.png", "inputImage tower.jpg", "inputImage field.png"]
    assert fox.columns == ["seed 1", "seed 2"]
    page = build_report(manifest, rows="seed", cols="inputImage", thumbs=thumbs)
    first = sheets(page)[0]
    assert first.columns == ["inputImage harbour.png", "inputImage tower.jpg", "inputImage field.png"]
    assert first.rows == ["seed 1", "seed 2"]
    row_page = build_report(manifest, rows="inputImage,seed", cols="prompt", thumbs=thumbs)
    labels = parse(row_page).find_all("div", "rowlabel")
    assert [label.find_all("img", "thumb")[0].attrs["src"] for label in labels[::2]] == [
        f"thumbs/{s.sha}.jpg" for s in three
    ]


def test_the_image_is_known_by_its_content_not_its_path(tmp_path: Path) -> None:
    same = picture(tmp_path, "a.png", images.landscape(), "PNG")
    assert same.path
    copy = tmp_path / "copies" / "also-a.png"
    copy.parent.mkdir()
    shutil.copyfile(same.path, copy)
    other = picture(tmp_path, "b.png", images.portrait(), "PNG")
    moved = Start(str(copy), None, same.sha)
    manifest = pd.concat([image_sweep([FOX], [same, other], ["1"]), image_sweep([BOAT], [moved], ["1"])])
    page = build_report(manifest)
    [sheet] = sheets(page)
    assert sheet.columns == ["inputImage a.png", "inputImage b.png"], "two paths, one image: named as first seen"
    assert [len(sheet.cards[(r, c)]) for r in (0, 1) for c in (0, 1)] == [1, 1, 1, 0]
    listed = inputs_listed(page)
    paths = {values[listed["names"].index("inputImage")] for values in listed["rows"].values()}
    assert paths == {same.path, str(copy), other.path}, "each row's inputs list its path as given"


def test_url_images_are_known_by_url_and_only_web_urls_are_loaded() -> None:
    starts = [Start(url="https://cdn.example/frames/dawn%20sky.webp"), Start(url="http://127.0.0.1:9/u/b.png"),
              Start(url="javascript:alert(1)")]  # fmt: skip
    manifest = image_sweep([FOX], starts, ["1"])
    page = build_report(manifest)
    [sheet] = sheets(page)
    assert sheet.columns == ["inputImage dawn sky.webp", "inputImage b.png", "inputImage alert(1)"]
    assert [start_src(cards[0]) for cards in sheet.cards.values()] == [starts[0].url, starts[1].url, None]
    assert "inputImageUrl" not in swept_inputs(manifest), "the URL is the image: no axis of its own"
    assert "javascript:" not in "".join(n.attrs.get("src", "") for n in parse(page).find_all("img"))


def test_the_url_follows_the_image_so_it_is_no_axis(three: list[Start]) -> None:
    manifest = image_sweep([FOX], three, ["1", "2"])
    urls = {s.sha: f"https://files.example/{n}.png" for n, s in enumerate(three)}
    manifest["inputImageUrl"] = manifest["input_image_sha256"].map(urls)
    assert swept_inputs(manifest) == ["seed", "inputImage"]
    with pytest.raises(ValueError, match="the URL follows the image; use --rows inputImage"):
        build_report(manifest, rows="inputImageUrl")
    with pytest.raises(ValueError, match="did you mean inputImage"):
        build_report(manifest, cols="inputImag")


def test_an_unreadable_thumbnail_falls_back_to_the_url_then_to_nothing(three: list[Start]) -> None:
    manifest = image_sweep([FOX], three, ["1"])
    harbour, tower, _ = three
    assert harbour.sha
    [sheet] = sheets(build_report(manifest, thumbs={harbour.sha: (256, 192)}))
    assert [start_src(cards[0]) for cards in sheet.cards.values()] == [f"thumbs/{harbour.sha}.jpg", tower.url, None]


# ------------------------------------------------------------- text and image rows in one sweep


def mixed(three: list[Start]) -> pd.DataFrame:
    """The fox as text-to-video, the boat from two images; two seeds each."""
    text = with_image_columns(sweep([FOX], {"seed": ["1", "2"]})).assign(model=TEXT_TO_VIDEO)
    pictures = image_sweep([BOAT], three[:2], ["1", "2"])
    return pd.concat([text[pictures.columns], pictures], ignore_index=True)


def test_text_and_image_rows_in_one_sweep_are_sections_by_model_with_no_empty_cells(three: list[Start]) -> None:
    """With the image across, text rows would fill only a "no image" column and image rows only the
    image columns: each model gets its section, and its own columns."""
    manifest = mixed(three)
    page = build_report(manifest, thumbs={s.sha: (256, 192) for s in three if s.sha})
    text, pictures = sheets(page)
    assert (text.heading, pictures.heading) == ("model text-to-video", "model image-to-video")
    assert (text.rows, text.columns) == ([FOX], ["seed 1", "seed 2"])
    assert (pictures.rows, pictures.columns) == ([BOAT], [f"inputImage {n} · seed {s}" for n in ("harbour.png",
                                                 "tower.jpg") for s in "12"])  # fmt: skip
    assert not parse(page).find_all("div", "empty"), "no 'no such combination' cell"
    assert text.attrs == pictures.attrs == [[]], "the model heads the section: not repeated per row"
    assert not [c for c in text.columns + pictures.columns if "model" in c or "size" in c or "width" in c]
    fox_cards = [cards[0] for cards in text.cards.values()]
    assert [start_src(c) for c in fox_cards] == [None, None], "a text row has no start image"
    assert [c.find_all("div", "params")[0].text() for c in fox_cards] == ["seed 1", "seed 2"], "nor says so per cell"
    assert all(c.find_all("div", "media")[0].attrs["style"] == "aspect-ratio:832 / 480" for c in fox_cards)
    assert [start_src(cards[0]) for cards in pictures.cards.values()] == [f"thumbs/{s.sha}.jpg" for s in three[:2]
                                                                          for _ in "12"]  # fmt: skip
    fixed = parse(page).find_all("p", "fixed")[0].text()
    assert "size 832*480 (text-to-video rows)" in fixed
    assert "width 0 (the image's) (image-to-video rows)" in fixed
    assert "model" not in fixed, "the sections say it"


def test_text_and_image_rows_with_seeds_across_show_the_model_in_each_rows_header(three: list[Start]) -> None:
    manifest = mixed(three)
    [sheet] = sheets(build_report(manifest, rows="prompt,inputImage", cols="seed"))
    assert sheet.rows == [f"prompt {FOX} inputImage no image · text-to-video", f"prompt {BOAT} inputImage harbour.png",
                          f"prompt {BOAT} inputImage tower.jpg"]  # fmt: skip
    assert (sheet.columns, sheet.attrs) == (["seed 1", "seed 2"], [[], [], []])
    [sheet] = sheets(build_report(manifest[manifest["inputImage"].isna() | (manifest["inputImage"] == three[0].path)],
                                  cols="seed"))  # fmt: skip
    assert sheet.rows == [FOX, BOAT]
    assert sheet.attrs == [["inputImage no image · text-to-video"], ["inputImage harbour.png"]]
    assert "model" not in str(sheet.attrs), "the image's label says which model, once"
    raw = manifest.assign(inputImage=None, input_image_sha256=None)  # the boat's rows from URLs: same shape
    raw.loc[raw["model"] == IMAGE_TO_VIDEO, "inputImageUrl"] = "https://e.example/one.png"
    [sheet] = sheets(build_report(raw, cols="seed"))
    assert sheet.attrs == [["inputImage no image · text-to-video"], ["inputImage one.png"]]


def test_the_image_as_rows_names_the_text_rows_row(three: list[Start]) -> None:
    manifest = image_sweep([FOX, BOAT], [None, three[0]], ["1"])
    fox, boat = sheets(build_report(manifest, rows="inputImage", cols="seed"))
    assert fox.rows == boat.rows == ["inputImage no image · text-to-video", "inputImage harbour.png"]
    assert fox.attrs == boat.attrs == [[], []], "the model follows the image: said once, in its label"


def test_a_cell_takes_its_shape_from_its_width_and_height_else_from_its_image(three: list[Start]) -> None:
    tall = three[1]
    assert tall.sha
    follows = build_report(image_sweep([FOX], [tall], ["1"]), thumbs={tall.sha: (171, 256)})
    asked = build_report(image_sweep([FOX], [tall], ["1"], width=1280, height=704), thumbs={tall.sha: (171, 256)})
    for page, ratio in ((follows, "171 / 256"), (asked, "1280 / 704")):
        [sheet] = sheets(page)
        [card] = sheet.cards[(0, 0)]
        assert card.find_all("div", "media")[0].attrs["style"] == f"aspect-ratio:{ratio}"
    assert "width 0 (the image's)" in parse(follows).find_all("p", "fixed")[0].text()


def test_image_names_are_escaped(tmp_path: Path) -> None:
    nasty = picture(tmp_path, 'x<img src=y onerror="alert(1)">.png', images.landscape(64, 48), "PNG")
    page = build_report(image_sweep([FOX], [nasty, Start(url='https://e.example/a"b<c>.png')], ["1"]))
    assert "<img src=y" not in page
    assert 'a"b<c>' not in page
    [sheet] = sheets(page)
    assert sheet.columns[0] == 'inputImage x<img src=y onerror="alert(1)">.png', "and reads back as named"


# ------------------------------------------------------------- the file edge, and in Chromium


def start_video(image: Path, row: dict[str, Any]) -> bytes:
    """The MP4 the emulator's image-to-video model makes of a row: its first frame is its start image."""
    with Image.open(image) as opened:
        width, height = i2v_size(*opened.size)
    return render_mp4(width=width, height=height, num_frames=int(row["numFrames"]), fps=int(row["fps"]),
                      prompt=row["prompt"], seed=row["seed"], label=f"{width}x{height}",
                      first_frame=fit_frame(image, width, height))  # fmt: skip


def write_out(out: Path, manifest: pd.DataFrame, video: bytes) -> None:
    """An OUT on disk: the manifest (with its image columns) and the same MP4 for every succeeded row."""
    (out / "videos").mkdir(parents=True, exist_ok=True)
    for path in manifest.loc[manifest["status"] == "succeeded", "output_path"]:
        (out / path).write_bytes(video)
    pq.write_table(pa.Table.from_pandas(manifest, preserve_index=False), out / MANIFEST_PARQUET)


def test_write_report_makes_missing_thumbnails_from_images_still_there(tmp_path: Path, three: list[Start]) -> None:
    out = tmp_path / "out"
    manifest = image_sweep([FOX], three, ["1"])
    write_out(out, manifest, b"not played here")
    harbour, tower, field = three
    assert field.path
    Path(field.path).write_bytes(images.encode(images.portrait(), "PNG"))  # changed since the sweep: no thumbnail
    page = write_report(out).read_text(encoding="utf-8")
    assert sorted(p.name for p in (out / "thumbs").iterdir()) == sorted(f"{s.sha}.jpg" for s in (harbour, tower))
    [sheet] = sheets(page)
    assert [start_src(cards[0]) for cards in sheet.cards.values()] == [
        f"thumbs/{harbour.sha}.jpg", f"thumbs/{tower.sha}.jpg", None]  # fmt: skip


@pytest.fixture(scope="module")
def image_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OUT of 3 images x 2 prompts x 2 seeds, one row failed, thumbnails made as the runner makes them."""
    folder = tmp_path_factory.mktemp("images")
    three = [picture(folder, "harbour.png", images.landscape(), "PNG"),
             picture(folder, "tower.jpg", images.portrait(), "JPEG"),
             picture(folder, "field.png", images.landscape(320, 240)[::-1].copy(), "PNG")]  # fmt: skip
    manifest = image_sweep([FOX, BOAT], three, ["1", "2"]).assign(numFrames=17)
    failed = manifest.index[5]
    manifest.loc[failed, ["status", "error", "output_path"]] = ["failed", "RuntimeError: CUDA out of memory", ""]
    out = tmp_path_factory.mktemp("out")
    write_out(out, manifest, b"")
    for row in cast(list[dict[str, Any]], manifest[manifest["status"] == "succeeded"].to_dict("records")):
        (out / row["output_path"]).write_bytes(start_video(Path(row["inputImage"]), row))
    thumbs_for(out, three)
    write_report(out)
    return out


def test_chromium_shows_each_start_image_beside_its_video_and_on_the_image_header(
    chromium: Browser,
    image_out: Path,
) -> None:
    page = chromium.new_page(viewport={"width": 1900, "height": 1200})
    errors = watch(page)
    page.goto((image_out / REPORT).as_uri())
    starts = page.locator("article.cell img.start")
    assert starts.count() == 12
    page.wait_for_function("[...document.querySelectorAll('img.start, th img.thumb')].every(i => i.complete)")
    widths = starts.evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert all(w > 0 for w in widths), ("every start image decoded", widths)
    cell = page.locator("article.cell[data-status=succeeded]").first
    start, media = cell.locator("img.start").bounding_box(), cell.locator(".media").bounding_box()
    assert start
    assert media
    assert start["width"] > 20
    assert start["height"] > 20
    assert media["y"] + media["height"] <= start["y"] + 1, "under the video"
    assert start["x"] < media["x"] + media["width"], "and within its card"
    head = page.locator("thead th img.thumb")
    assert head.count() == 3
    assert head.evaluate_all("imgs => imgs.map(i => i.naturalWidth)") == [256, 171, 256]
    assert page.locator("thead th").first.inner_text().split() == ["inputImage", "harbour.png"]
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.wait_for_function("[...document.querySelectorAll('.media[data-src]')].every(m => m.querySelector('video'))")
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENS / "report-images.png"), full_page=True)
    cell.locator("summary").click()
    cell.locator("dl").wait_for()
    listed = dict(zip(cell.locator("dt").all_inner_texts(), cell.locator("dd").all_inner_texts(), strict=True))
    assert listed["inputImage"].endswith("harbour.png"), "the path as given"
    assert len(listed["input_image_sha256"]) == 64
    assert (listed["width"], listed["model"]) == ("0", IMAGE_TO_VIDEO)
    assert "size" not in listed, "an image row has none"
    page.get_by_label("inputImage").select_option(label="tower.jpg")
    assert page.locator("#shown").inner_text() == "4 of 12 cells shown"
    assert errors == []
    page.close()


# ------------------------------------------------------------- compare


def image_night(out: Path, manifest: pd.DataFrame, variants: dict[str, str], thumbs: Sequence[Start]) -> None:
    """A finished image sweep on disk: each row's MP4 (its variant: what another model version draws), the
    manifest with their real hashes, and the thumbnails of `thumbs`."""
    (out / "videos").mkdir(parents=True)
    manifest = manifest.copy()
    for n, row in enumerate(cast(list[dict[str, Any]], manifest.to_dict("records"))):
        data = render_mp4(width=320, height=240, num_frames=9, fps=8, prompt=row["prompt"], seed=row["seed"],
                          variant=variants.get(row["row_id"], ""))  # fmt: skip
        path = f"videos/{row['row_id']}.mp4"
        (out / path).write_bytes(data)
        manifest.loc[n, ["output_path", "output_sha256"]] = [path, hashlib.sha256(data).hexdigest()]
    pq.write_table(pa.Table.from_pandas(manifest, preserve_index=False), out / MANIFEST_PARQUET)
    thumbs_for(out, thumbs)


def test_compare_carries_the_image_inputs_and_shows_each_changed_rows_start_image(
    tmp_path: Path,
    three: list[Start],
    chromium: Browser,
) -> None:
    harbour, tower, _ = three
    web = Start(url="https://cdn.example/frames/dawn.webp")
    manifest = pd.concat([image_sweep([FOX], [harbour, tower, web], ["1"]), image_sweep([BOAT], [None], ["1"])],
                         ignore_index=True)  # fmt: skip
    ids = list(manifest["row_id"])
    image_night(tmp_path / "a", manifest, {}, [tower])
    image_night(tmp_path / "b", manifest, dict.fromkeys(ids[:3], "redraw:2"), [harbour])
    comparison = compare_outs(tmp_path / "a", tmp_path / "b")
    page = write_comparison(comparison)
    assert comparison.counts["changed"] == 3
    assert comparison.counts["identical"] == 1
    table = pq.read_table(tmp_path / "b" / COMPARE_PARQUET)
    for name, kind in (("model", pa.string()), ("inputImage", pa.string()), ("inputImageUrl", pa.string()),
                       ("width", pa.int64()), ("height", pa.int64()), ("input_image_sha256", pa.string())):  # fmt: skip
        assert table.schema.field(name).type == kind, name
    rows = {r["row_id"]: r for r in table.to_pylist()}
    assert rows[ids[0]]["inputImage"] == harbour.path
    assert rows[ids[1]]["input_image_sha256"] == tower.sha
    assert (rows[ids[1]]["width"], rows[ids[3]]["width"], rows[ids[3]]["model"]) == (0, None, TEXT_TO_VIDEO)
    with (tmp_path / "b" / COMPARE_CSV).open(newline="") as handle:
        assert {r["inputImage"] for r in csv.DictReader(handle)} == {harbour.path, tower.path, ""}
    cards = {c.attrs["data-row-id"]: c for c in parse(page.read_text(encoding="utf-8")).find_all("article", "card")}
    assert set(cards) == set(ids[:3]), "the changed rows"
    shown = {rid: card.find_all("figure", "start")[0].find_all("img")[0].attrs["src"] for rid, card in cards.items()}
    assert shown == {ids[0]: f"compare/thumbs/{harbour.sha}.jpg", ids[1]: f"compare/thumbs/{tower.sha}.jpg",
                     ids[2]: web.url}, "CURRENT's thumbnail, else BASELINE's, else the image's URL"  # fmt: skip
    assert "tower.jpg" in cards[ids[1]].text()
    head = cards[ids[0]].find_all("div", "head")[0].text()
    assert "inputImage harbour.png" in head
    assert "size" not in head, "an image row has no size to show"
    for sha in (harbour.sha, tower.sha):
        assert (tmp_path / "b" / "compare" / "thumbs" / f"{sha}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    browser = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch(browser)
    browser.route("https://cdn.example/**", lambda route: route.abort())  # no network in tests
    browser.goto(page.as_uri())
    card = browser.locator(f'article.card[data-row-id="{ids[0]}"]')
    start = card.locator("figure.start img")
    start.scroll_into_view_if_needed()
    browser.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=start.element_handle(), timeout=5_000)
    box, video = start.bounding_box(), card.locator("video").first.bounding_box()
    assert box
    assert video
    assert box["x"] + box["width"] <= video["x"], "beside the two videos, on their left"
    SCREENS.mkdir(parents=True, exist_ok=True)
    card.screenshot(path=str(SCREENS / "compare-start-image.png"))
    assert [e for e in errors if "cdn.example" not in e] == []
    browser.close()


def test_compare_reads_manifests_from_before_images(tmp_path: Path) -> None:
    night(tmp_path / "a", [NightRow(FOX), NightRow(BOAT)])
    night(tmp_path / "b", [NightRow(FOX), NightRow(BOAT, variant="redraw:2")])
    for side in ("a", "b"):  # as a sweep wrote them before image-to-video: no image columns at all
        path = tmp_path / side / "manifest.parquet"
        table = pq.read_table(path)
        pq.write_table(table.select([c for c in table.column_names if c not in ("model", *IMAGE_COLUMNS)]), path)
    comparison = compare_outs(tmp_path / "a", tmp_path / "b")
    page = write_comparison(comparison).read_text(encoding="utf-8")
    table = pq.read_table(tmp_path / "b" / COMPARE_PARQUET)
    for name in ("model", *IMAGE_COLUMNS):
        assert table.column(name).null_count == len(table), name
    assert "start" not in [c for n in parse(page).find_all("figure") for c in n.attrs.get("class", "").split()]
    assert comparison.counts["changed"] == 1
