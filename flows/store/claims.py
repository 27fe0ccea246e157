"""Which sweep a Wiro task belongs to, on this machine: no task is ever taken by two.

Two sweeps into different OUTs may submit the same combination. When both lose their Run
answers, each finds both new tasks in Task/List, and without a referee both would adopt the
same one, leaving the other paid task in no manifest. So every task a sweep takes, from a Run
answer or by adoption, is first claimed here with an exclusive create: the second sweep then
takes the other task. A Run answer naming a task that another row already holds (a server that
answered two Runs with one id) is treated as lost, and the row looks for its real task.

The registry is a directory with one small file per task, per account:

    $WIRO_SWEEP_STATE/claims/<account>/<task id>      {"out": ..., "row_id": ..., "at": ..., "task": ...}

Claims never expire, and an id is assumed to name one task for good. A server that starts its
ids again (an emulator restarted on the same port was one) would leave every old claim blocking
the new task that has its id: each row would pay twice. So a claim made from a Run answer
records which task it was for (`task`: its socket token, hashed; the token itself is never
written), and a claim whose task is shown by Wiro no longer to have that id is taken over
(`take_over`) instead of blocking.

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
from flows.store.locks import directory_lock
from flows.store.rowstate import utcnow

ENV_STATE = "WIRO_SWEEP_STATE"
TAKE_OVER_WAIT_SECONDS = 5.0  # how long a take-over waits for another's (they are instants)


def state_root() -> Path:
    """Where this machine's wiro-sweep state lives (see the module docstring)."""
    if os.environ.get(ENV_STATE):
        return Path(os.environ[ENV_STATE])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "wiro-sweep"


def task_mark(socket_token: str) -> str:
    """What a claim records of the task it is for: its socket token (unique to one task), hashed;
    "" when the token is not known."""
    return hashlib.sha256(f"task\n{socket_token}".encode()).hexdigest()[:16] if socket_token else ""


def account_key(base_url: str, api_key: str) -> str:
    """A stable name for one Wiro account at one API, from which the key cannot be read back."""
    return hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:16]


class Claims:
    """The claims of one OUT on one account."""

    def __init__(self, out: Path, account: str, root: Path | None = None) -> None:
        self.out = str(Path(out).resolve())
        self.directory = (root or state_root()) / "claims" / account
        self.directory.mkdir(parents=True, exist_ok=True)

    def claim(self, task_id: str, row_id: str, task: str = "") -> bool:
        """Take `task_id` for this OUT's `row_id`: True when it is (now, or already) theirs, False when
        another OUT or another row holds it. An unreadable claim file counts as no claim. `task`
        (`task_mark`) is recorded, to tell this task from another that may have its id later."""
        path = self._path(task_id)
        mine = {"out": self.out, "row_id": row_id}
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        temporary.write_text(json.dumps({**mine, "at": utcnow(), **({"task": task} if task else {})}))
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
        record = self._record(task_id)
        return (str(record["out"]), str(record.get("row_id", ""))) if record else None

    def recorded_task(self, task_id: str) -> str:
        """The `task_mark` the claim on `task_id` recorded: "" when none is known (or no claim)."""
        record = self._record(task_id)
        mark = record.get("task") if record else None
        return mark if isinstance(mark, str) else ""

    def take_over(self, task_id: str, row_id: str, task: str) -> bool:
        """Claim `task_id` for `row_id` over a claim made for another task that had that id before:
        `task` is the mark of the task Wiro shows under the id now, and the holder's recorded mark
        differs from it. A claim with no mark, or with this one, is not taken over (False)."""
        with directory_lock(self.directory, wait=TAKE_OVER_WAIT_SECONDS) as held:
            recorded = self.recorded_task(task_id)
            if not held or not task or not recorded or recorded == task:
                return False
            self._path(task_id).unlink(missing_ok=True)
            return self.claim(task_id, row_id, task)

    def release(self, task_id: str, row_id: str) -> None:
        """Give up this OUT's `row_id`'s claim on `task_id` (a task taken for a late Run answer that
        turned out to be another's): a claim that is anyone else's stays."""
        with directory_lock(self.directory, wait=TAKE_OVER_WAIT_SECONDS) as held:
            if held and self.holder(task_id) == (self.out, row_id):
                self._path(task_id).unlink(missing_ok=True)

    def _record(self, task_id: str) -> dict[str, object] | None:
        with contextlib.suppress(OSError, ValueError, UnreadableFileError):  # a claim that is no file is nobody's
            record = read_json(self._path(task_id), MAX_SMALL_JSON_BYTES, "claim")
            if isinstance(record, dict) and isinstance(record.get("out"), str):
                return record
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
