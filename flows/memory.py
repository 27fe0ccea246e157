"""The process's memory, given back to the system once a large piece of work is done with it.

A sweep of 100,000 rows builds its manifest again every few seconds (a table and its CSV text,
150 MB), and its report once at the end. Once freed, that memory stayed with the process, out
of reach of the next piece of work: pyarrow's default pool (mimalloc) keeps what it frees for
itself, and so does glibc's malloc for Python's own objects. On x86-64 Linux, pyarrow is told to
use jemalloc and to give freed pages back at once (set before pyarrow is first imported: importing
`flows` does it), and `give_back` asks glibc to return what it holds free (`malloc_trim`, as
Dask's workers do; any Linux with glibc). Elsewhere both are left as they are: another pool name
would only earn a warning where pyarrow was built without jemalloc.

Python's cycle collector walks every live object each time it collects the oldest generation,
which it does as the objects it holds grow by a quarter: a fold of 100,000 rows' journal lines
walked its own growing states again and again, and the collections of a reopen with nothing to
submit took 2 s of its 11. `many_objects` pauses it while such long-lived objects are made; no
cycle is made there, and reference counting frees as before.
"""

from __future__ import annotations

import functools
import gc
import os
import platform
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def arrow_gives_back() -> None:
    """pyarrow's pool: jemalloc, whose freed pages go back at once (unless the environment says otherwise)."""
    if sys.platform == "linux" and platform.machine() == "x86_64":  # pyarrow's wheels with jemalloc, as tried
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
        os.environ.setdefault("JE_ARROW_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")


class _Pauses:
    """How many `many_objects` blocks are open, in any thread, and whether collection was on before the first."""

    lock = threading.Lock()
    open = 0
    was_on = False


@contextmanager
def many_objects() -> Iterator[None]:
    """No cyclic garbage collection inside (if there was outside): many long-lived objects are made.
    Blocks may overlap in threads: collection comes back on as the last one ends."""
    with _Pauses.lock:
        if _Pauses.open == 0:
            _Pauses.was_on = gc.isenabled()
            gc.disable()
        _Pauses.open += 1
    try:
        yield
    finally:
        with _Pauses.lock:
            _Pauses.open -= 1
            if _Pauses.open == 0 and _Pauses.was_on:
                gc.enable()


def give_back() -> None:
    """Return to the system the memory malloc holds free (a few ms at a sweep of 100,000 rows)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's `malloc_trim`, or None (another libc, another system)."""
    if sys.platform != "linux":
        return None
    import ctypes  # here: `wiro-sweep --help` imports flows

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl has none
        return None
