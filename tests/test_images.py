"""The pure start-image check: what Wiro's File/Upload would take, judged locally from content."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from wiro_tasks import MAX_UPLOAD_BYTES, ImageCheckError, InputValidationError, check_image

from .images import encode, heic_header, landscape, portrait, write


@pytest.mark.parametrize(
    ("fmt", "options", "kind"),
    [
        ("PNG", {}, "png"),
        ("JPEG", {"quality": 90}, "jpeg"),
        ("JPEG", {"progressive": True}, "jpeg"),
        ("GIF", {}, "gif"),
        ("WEBP", {"quality": 80}, "webp"),
        ("WEBP", {"lossless": True}, "webp"),
    ],
)
def test_types_wiro_takes_with_their_size_and_hash(
    tmp_path: Path, fmt: str, options: dict[str, object], kind: str
) -> None:
    path = write(tmp_path / "start.img", landscape(321, 123), fmt, **options)
    info = check_image(path)
    assert (info.kind, info.width, info.height) == (kind, 321, 123)
    assert info.size == path.stat().st_size
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.path == path
    assert info.content_type == f"image/{kind}"
    assert check_image(path.read_bytes()).sha256 == info.sha256  # bytes give the same answer


def test_webp_extended_header_and_jpeg_metadata_before_the_frame(tmp_path: Path) -> None:
    rgba = encode(landscape(90, 70)[:, :, [0, 1, 2, 0]], "WEBP")  # RGBA: a VP8X header
    assert rgba[12:16] == b"VP8X"
    assert (check_image(rgba).width, check_image(rgba).height) == (90, 70)
    exif = b"Exif\0\0" + bytes(60_000)  # a large segment the walk must skip
    jpeg = encode(portrait(48, 64), "JPEG", exif=exif)
    info = check_image(jpeg)
    assert (info.kind, info.width, info.height) == ("jpeg", 48, 64)


def test_heic_by_its_brands_and_avif_is_not_heic() -> None:
    info = check_image(heic_header(b"heic", b"mif1", b"heic"))
    assert (info.kind, info.width, info.height) == ("heic", None, None)
    assert check_image(heic_header(b"mif1", b"mif1", b"heix")).kind == "heic"
    with pytest.raises(ImageCheckError, match="is not a jpg, jpeg, png, webp, gif or heic image"):
        check_image(heic_header(b"avif", b"mif1", b"miaf"))


def test_content_decides_not_the_name(tmp_path: Path) -> None:
    jpeg_named_png = write(tmp_path / "scan.png", landscape(64, 48), "JPEG")
    info = check_image(jpeg_named_png)
    assert info.kind == "jpeg"
    assert info.upload_name() == "scan.jpg"
    assert check_image(write(tmp_path / "frame001", landscape(64, 48), "PNG")).upload_name() == "frame001.png"
    assert check_image(write(tmp_path / "a.JPEG", landscape(64, 48), "JPEG")).upload_name() == "a.JPEG"
    text_named_png = tmp_path / "notes.png"
    text_named_png.write_text("a prompt, not a picture\n")
    with pytest.raises(ImageCheckError, match=r"by its content \(its name says \.png\)") as caught:
        check_image(text_named_png)
    assert isinstance(caught.value, InputValidationError)
    assert (caught.value.field, caught.value.value, caught.value.path) == (
        "inputImage",
        str(text_named_png),
        text_named_png,
    )


@pytest.mark.parametrize(
    ("make", "rule"),
    [
        (lambda p: p, "file not found"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b""), p)[1], "is empty"),
        (lambda p: (p.write_bytes(b"\x89PNG\r\n\x1a\n"), p)[1], "is a damaged png image"),
        (lambda p: (p.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\0"), p)[1], "is a damaged jpeg image"),
        (lambda p: (p.write_bytes(b"GIF89a\0\0\0\0"), p)[1], "is a damaged gif image"),
        (lambda p: (p.write_bytes(b"%PDF-1.7\n"), p)[1], "is not a jpg, jpeg, png, webp, gif or heic image"),
    ],
)
def test_bad_files_name_the_rule(tmp_path: Path, make: object, rule: str) -> None:
    path = make(tmp_path / "x.png")  # type: ignore[operator]
    with pytest.raises(ImageCheckError, match=rule) as caught:
        check_image(path)
    assert str(caught.value).startswith(f"inputImage: {rule}")


def test_the_100_mb_limit_without_writing_100_mb(tmp_path: Path) -> None:
    header = encode(landscape(8, 8), "PNG")
    at_limit, over = tmp_path / "at.png", tmp_path / "over.png"
    for path, size in ((at_limit, MAX_UPLOAD_BYTES), (over, MAX_UPLOAD_BYTES + 1)):
        with open(path, "wb") as out:  # sparse: a PNG header, then a hole
            out.write(header)
            out.truncate(size)
    assert MAX_UPLOAD_BYTES == 100_000_000
    assert check_image(at_limit).size == MAX_UPLOAD_BYTES
    with pytest.raises(ImageCheckError, match="larger than Wiro's upload limit of 100,000,000 bytes"):
        check_image(over)
    with pytest.raises(ImageCheckError, match="larger than"):
        check_image(header, max_bytes=len(header) - 1)


def test_an_unreadable_path(tmp_path: Path) -> None:
    parent = write(tmp_path / "a.png", landscape(8, 8), "PNG")
    with pytest.raises(ImageCheckError, match="cannot be read: Not a directory"):
        check_image(parent / "b.png")  # a path through a file: the OS refuses to open it
