"""Which sweep a Wiro task belongs to, on this machine: no task is ever taken by two.

Two sweeps into different OUTs may submit the same combination. When both lose their Run
answers, each finds both new tasks in Task/List, and without a referee both would adopt the
same one, leaving the other paid task in no manifest. So every task a sweep takes, from a Run
answer or by adoption, is first claimed here with an exclusive create: the second sweep then
takes the other task. A Run answer naming a task that another row already holds (a server that
answered two Runs with one id) is treated as lost, and the row looks for its real task.

The registry is a directory with one small file per task, per account:

    $WIRO_SWEEP_STATE/claims/<account>/<task id>      {"out": ..., "row_id": ..., "at": ...}

(`WIRO_SWEEP_STATE` defaults to `$XDG_STATE_HOME/wiro-sweep`, else `~/.local/state/wiro-sweep`;
`<account>` is a hash of the base URL and the API key, never the key itself.) It covers the
sweeps of one machine and one user; sweeps on several machines must share OUT, not claims.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path

from flows.store.files import MAX_SMALL_JSON_BYTES, UnreadableFileError, read_json
from flows.store.journal import utcnow

ENV_STATE = "WIRO_SWEEP_STATE"


def state_root() -> Path:
    """Where this machine's wiro-sweep state lives (see the module docstring)."""
    if os.environ.get(ENV_STATE):
        return Path(os.environ[ENV_STATE])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "wiro-sweep"


def account_key(base_url: str, api_key: str) -> str:
    """A stable name for one Wiro account at one API, from which the key cannot be read back."""
    return hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:16]


class Claims:
    """The claims of one OUT on one account."""

    def __init__(self, out: Path, account: str, root: Path | None = None) -> None:
        self.out = str(Path(out).resolve())
        self.directory = (root or state_root()) / "claims" / account
        self.directory.mkdir(parents=True, exist_ok=True)

    def claim(self, task_id: str, row_id: str) -> bool:
        """Take `task_id` for this OUT's `row_id`: True when it is (now, or already) theirs, False when
        another OUT or another row holds it. An unreadable claim file counts as no claim."""
        path = self._path(task_id)
        mine = {"out": self.out, "row_id": row_id}
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        temporary.write_text(json.dumps({**mine, "at": utcnow()}))
        try:
            for _ in range(2):
                try:
                    os.link(temporary, path)  # creates `path` whole, or fails if it exists
                    return True
                except FileExistsError:
                    holder = self.holder(task_id)
                    if holder is not None:
                        return holder == (self.out, row_id)
                    path.unlink(missing_ok=True)  # a torn claim: nobody's
            return False
        finally:
            temporary.unlink(missing_ok=True)

    def holder(self, task_id: str) -> tuple[str, str] | None:
        """(OUT, row id) holding `task_id`, or None when nobody does."""
        path = self._path(task_id)
        with contextlib.suppress(OSError, ValueError, UnreadableFileError):  # a claim that is no file is nobody's
            record = read_json(path, MAX_SMALL_JSON_BYTES, "claim")
            if isinstance(record, dict) and isinstance(record.get("out"), str):
                return str(record["out"]), str(record.get("row_id", ""))
        return None

    def held_elsewhere(self, task_id: str) -> bool:
        """Whether another OUT holds `task_id` (this OUT's own claims do not count)."""
        holder = self.holder(task_id)
        return holder is not None and holder[0] != self.out

    def _path(self, task_id: str) -> Path:
        name = str(task_id)
        if name.isdigit() and len(name) < 64:  # Wiro's ids: readable file names
            return self.directory / name
        return self.directory / ("h" + hashlib.sha256(name.encode()).hexdigest()[:32])  # anything else, safely
