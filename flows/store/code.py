"""The digest of this version of `flows`: what a file made from data and code stamps, so that
an upgrade (or an edit in a checkout) makes it anew rather than trusting one made by other code."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


@functools.cache
def code_digest() -> bytes:
    """The digest of `flows`' sources and templates, read once a process."""
    digest = hashlib.sha256()
    root = Path(__file__).parent.parent
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".pyc"):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.digest()
