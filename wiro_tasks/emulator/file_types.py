"""The files `File/Upload` takes besides images, as Wiro-Docs `files.md` lists them: video (mp4,
webm, mov), audio (mp3, wav, m4a), documents (pdf, csv, docx, xlsx, pptx, txt, md, epub) and ZIP
archives (Wiro extracts those; the emulator keeps them whole).

A file is judged by its name's extension and its first bytes together, so a renamed file of
another kind is refused: containers by their signature, text by decoding as UTF-8.
"""

from __future__ import annotations

from pathlib import PurePath

_ZIP = b"PK\x03\x04"
_OFFICE = "application/vnd.openxmlformats-officedocument."
# extension -> (content type, what its first bytes must be)
DOCUMENTED_TYPES: dict[str, tuple[str, str]] = {
    ".mp4": ("video/mp4", "ftyp"),
    ".mov": ("video/quicktime", "ftyp"),
    ".m4a": ("audio/mp4", "ftyp"),
    ".webm": ("video/webm", "ebml"),
    ".mp3": ("audio/mpeg", "mp3"),
    ".wav": ("audio/wav", "wave"),
    ".pdf": ("application/pdf", "pdf"),
    ".zip": ("application/zip", "zip"),
    ".docx": (_OFFICE + "wordprocessingml.document", "zip"),
    ".xlsx": (_OFFICE + "spreadsheetml.sheet", "zip"),
    ".pptx": (_OFFICE + "presentationml.presentation", "zip"),
    ".epub": ("application/epub+zip", "zip"),
    ".csv": ("text/csv", "text"),
    ".txt": ("text/plain", "text"),
    ".md": ("text/markdown", "text"),
}
ACCEPTED_FILES = "images, mp4, webm, mov, mp3, wav, m4a, pdf, csv, docx, xlsx, pptx, txt, md, epub or zip"


def documented_type(name: str, head: bytes) -> str | None:
    """The content type of a non-image file `files.md` lists, from its name and first bytes; None
    when it is not one of them (or its bytes are not what its name says)."""
    known = DOCUMENTED_TYPES.get(PurePath(name).suffix.lower())
    if known is None or not head:
        return None
    content_type, signature = known
    return content_type if _looks_like(signature, head) else None


def _looks_like(signature: str, head: bytes) -> bool:
    if signature == "ftyp":
        return head[4:8] == b"ftyp"
    if signature == "ebml":
        return head.startswith(b"\x1a\x45\xdf\xa3")
    if signature == "mp3":  # an ID3 tag, or an MPEG audio frame's sync bits
        return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
    if signature == "wave":
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    if signature == "pdf":
        return head.startswith(b"%PDF-")
    if signature == "zip":
        return head.startswith(_ZIP)
    return _is_text(head)


def _is_text(head: bytes) -> bool:
    """UTF-8 without NULs (the head may end inside a character)."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True
