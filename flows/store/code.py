"""The digest of this version of the code: what a file made from data and code stamps, so that
an upgrade (or an edit in a checkout) makes it anew rather than trusting one made by other code.
It covers `flows` and `wiro_tasks` (which reads costs, times and ids for the journal's fold), and
the pandas and pyarrow versions (which shape the tables and the CSV text)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


@functools.cache
def code_digest() -> bytes:
    """The digest of `flows`' and `wiro_tasks`' sources and templates, read once a process."""
    import pandas
    import pyarrow

    import wiro_tasks

    digest = hashlib.sha256(f"pandas {pandas.__version__} pyarrow {pyarrow.__version__}".encode())
    for root in (Path(__file__).parent.parent, Path(wiro_tasks.__file__).parent):
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".pyc"):
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}".encode() + b"\0" + path.read_bytes())
    return digest.digest()
