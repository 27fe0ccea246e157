"""What a written page was made from, so an unchanged OUT is not rendered again.

A reopened OUT with nothing to submit used to rewrite its report: 15 s of a 28 s reopen at
100,000 rows. A page carries, in its last line, a stamp of everything it shows: the manifest's
content (not its bytes, which a writer's dtypes can change), the options, the posters and
thumbnails on disk, and the code and templates that render it (all of `flows`). The same stamp means the same
page, so writing it again is skipped; anything else (a row, a poster, an upgrade) renders anew.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection
from pathlib import Path

import pandas as pd

from flows.store.code import code_digest
from flows.store.manifest import atomic_write_text
from flows.store.posters import listed_posters
from wiro_tasks.local_files import FileRuleError, open_regular

_LINE = re.compile(rb"<!-- wiro-sweep page (\w{64})(?: (\w{64}))? -->\s*$")
_TAIL = 200  # bytes read from a page's end to find its stamp


def stamp(manifest: pd.DataFrame, *parts: object) -> str:
    """A hash of `manifest`'s cells and columns, `parts` (options, posters...) and the page's code."""
    return stamper(manifest)(*parts)


def stamper(manifest: pd.DataFrame) -> Callable[..., str]:
    """`stamp` of `manifest` with parts still to give: the manifest is hashed once, whatever is tried."""
    digest = hashlib.sha256(code_digest())
    digest.update(repr(list(manifest.columns)).encode())
    digest.update(pd.util.hash_pandas_object(manifest, index=False).to_numpy().tobytes())

    def made_of(*parts: object) -> str:
        mine = digest.copy()
        for part in parts:
            mine.update(b"\x1f" + repr(part).encode())
        return mine.hexdigest()

    return made_of


def stamped(text: str, made_of: str, mark: str = "") -> str:
    """`text` with its stamp as its last line (an HTML comment), and `mark`, if any: what the page's
    posters were found in (`flows.store.posters.listed_posters`)."""
    return f"{text.rstrip()}\n<!-- wiro-sweep page {made_of}{f' {mark}' if mark else ''} -->\n"


def unstamped(page: Path) -> str:
    """A stamped page's text without its stamp."""
    with open_regular(page, None, "page") as handle:
        text = handle.read().decode()
    return text[: text.rfind("<!-- wiro-sweep page ")]


def page_stamp(page: Path) -> tuple[str, str] | None:
    """The stamp and mark `page` carries (mark "" if none); None if it is not a regular file that has one."""
    try:
        with open_regular(page, None, "page") as handle:  # a FIFO in its place would block an open()
            size = handle.seek(0, 2)
            handle.seek(max(0, size - _TAIL))
            found = _LINE.search(handle.read())
    except (OSError, FileRuleError):
        return None
    return None if found is None else (found.group(1).decode(), (found.group(2) or b"").decode())


def unchanged(page: Path, videos: Collection[str], made_of: Callable[[set[str]], str]) -> bool:
    """Whether `page` is current without a look at any video: its stamp is `made_of` the posters
    found by name, its mark that of their folders as they are, and every video has its poster
    (one missing is tried again, by `ensure_posters`)."""
    on_page = page_stamp(page)
    if on_page is None or not on_page[1]:
        return False
    shown, mark = listed_posters(videos)
    return len(shown) == len(videos) and on_page == (made_of(shown), mark)


def write_stamped(page: Path, made_of: str, mark: str, render: Callable[[], str]) -> None:
    """`page` rendered and stamped, unless it already has that stamp: then only marked again, if
    its folders moved (a poster made since), for the next reopen's quick look."""
    on_page = page_stamp(page)
    if on_page is None or on_page[0] != made_of:
        atomic_write_text(page, stamped(render(), made_of, mark))
    elif on_page[1] != mark:
        atomic_write_text(page, stamped(unstamped(page), made_of, mark))
