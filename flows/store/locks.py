"""One sweep at a time per directory: the flock `<directory>/.lock`, held while a sweep writes there.

An unsharded sweep holds `OUT/.lock`, each child run of a sharded one `OUT/shards/<k>/.lock`
(`flows.store.shards`). The lock alone keeps two runs of one directory apart, so a sharded OUT
must be on storage whose flock every worker sees. A cancellation hook, or a sharded parent
probing whether a child is alive, takes the lock for an instant to learn whether a sweep holds it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.errors import InputError

LOCK = ".lock"
LOCK_WAIT_SECONDS = 2.0  # how long `out_lock` waits: a parent's probe holds the lock an instant


class OutBusyError(InputError):
    """Another sweep holds OUT's lock; the command exits with 2 (nothing was submitted)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        super().__init__(f"{out}: another sweep is running with this --out; wait for it")


@contextmanager
def directory_lock(directory: Path, wait: float = 0.0) -> Iterator[bool]:
    """Hold `directory/.lock` if no sweep does (waiting up to `wait` s); yields whether it is held.

    A directory that does not exist yields True without a lock: nobody sweeps there.
    """
    if not directory.is_dir():
        yield True
        return
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        held = False
        while not held:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
        yield held
    finally:
        os.close(fd)


def lock_is_held(directory: Path) -> bool:
    """Whether a sweep holds `directory/.lock` now (taking it for an instant to find out)."""
    with directory_lock(directory) as free:
        return not free


@contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """One sweep at a time per OUT (a second one would submit the same rows again), or `OutBusyError`.
    It waits a moment for the lock: a sharded parent probing whether a child is alive holds it an instant."""
    out.mkdir(parents=True, exist_ok=True)
    with directory_lock(out, wait=LOCK_WAIT_SECONDS) as held:
        if not held:
            raise OutBusyError(out)
        yield
