"""Memory a sweep is done with goes back to the system (flows/memory.py), measured in a process of
its own: pyarrow's pool is chosen when pyarrow is first imported."""

from __future__ import annotations

import asyncio
import gc
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROWS = 8000


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) * 1024


def kept_per_row_after_rewrites(rows: int, rewrites: int = 2) -> float:
    """Bytes a row that the process holds more after the ledger wrote a finished OUT's manifest,
    then rewrote it `rewrites` times (its background loop, as a sweep runs it), than before."""
    import flows  # first, as the command and a deployment's flow run import it
    import flows.engine.ledger
    from bench.scale_plan import finished_out, write_grid
    from flows.engine.ledger import Halt, Ledger
    from flows.grid import load_grid
    from flows.memory import give_back
    from flows.store.journal import Journal

    given: list[None] = []

    def giving_back() -> None:
        give_back()
        given.append(None)

    async def rewrite(ledger: Ledger) -> None:
        loop = asyncio.create_task(ledger.keep_manifest_fresh(0.0))
        for done in range(1, rewrites + 1):
            ledger._version += 1
            ledger._dirty.set()
            while len(given) < done:  # the loop wrote, let the table go and gave back: now it pauses
                await asyncio.sleep(0.01)
        loop.cancel()

    with tempfile.TemporaryDirectory() as scratch, pytest.MonkeyPatch.context() as patch:
        grid, out = write_grid(Path(scratch) / "g.csv", rows), Path(scratch) / "out"
        finished_out(grid, out)
        frame = load_grid([grid])
        journal = Journal(out)
        ledger = Ledger(frame, frame["row_id"].tolist(), out, journal, Halt())
        patch.setattr(flows.engine.ledger, "give_back", giving_back)  # counted: the test waits for each
        gc.collect()
        give_back()  # from as little as the process can hold
        before = resident_bytes()
        ledger.write()  # the run's first write, then its loop's
        asyncio.run(rewrite(ledger))
        gc.collect()
        kept = resident_bytes() - before
        journal.close()
    return kept / rows


@pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64", reason="given back on x86-64 Linux (flows/memory.py)"
)
def test_a_manifest_rewrite_gives_its_memory_back() -> None:
    """A sweep rewrites its manifest every few seconds. The tables and CSV texts of three writes
    left the process 1.4 KiB a row larger once freed (140 MiB at 100,000 rows, out of Python's
    reach: pyarrow's pool kept its part, glibc's malloc the rest); 0.12 KiB now."""
    code = f"from tests.test_memory import kept_per_row_after_rewrites as k; print(k({ROWS}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.split()[-1]) < 1000, done.stdout


def test_a_resumed_sweeps_states_are_made_without_a_cycle_collection(tmp_path: Path) -> None:
    """Each collection of the oldest generation walks every live object, and one came each time the
    rows' states grew by a quarter: 2 s of a 100,000-row reopen (34 collections in this fold of
    4,000 rows, 23 in the runner's start). None while the journal is folded and the runner's rows
    and ledger are made; collection is back on after, even past an error."""
    from bench.scale_plan import finished_out, write_grid
    from flows.engine.runner import SweepRunner
    from flows.engine.settings import Settings
    from flows.grid import load_grid
    from flows.store.journal import _FOLDED, Journal, JournalError, folded

    grid, out = write_grid(tmp_path / "g.csv", 4000), tmp_path / "out"
    finished_out(grid, out)
    collections: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    frame = load_grid([str(grid)])
    _FOLDED.clear()
    journal = Journal(out)
    gc.collect()
    gc.callbacks.append(seen)
    try:
        states = folded(out / "journal.jsonl")
        made = len(collections)
        runner = SweepRunner(frame, out, journal, Settings())
        runner_made = len(collections) - made
    finally:
        gc.callbacks.remove(seen)
        journal.close()
    assert len(states) == len(runner.ledger.states) == 4000
    assert max(made, runner_made) <= 1, collections  # the young objects' one pass as each ends, none per row
    (tmp_path / "bad.jsonl").write_text('{"event": "intent"}\n')
    with pytest.raises(JournalError):
        folded(tmp_path / "bad.jsonl")
    assert gc.isenabled(), "collection is back on, even past an error"


@pytest.mark.parametrize("first_out", ["first in", "last in"])
def test_pauses_that_overlap_in_threads_leave_collection_on(first_out: str) -> None:
    """Two blocks in two threads, the second opened while the first is open: collection stays off
    until the last one ends, then is on (a read then a disable, unlocked, could leave it off)."""
    import threading

    from flows.memory import many_objects

    inside, second_in, first_done, second_done = (threading.Event() for _ in range(4))
    seen: list[bool] = []

    def first() -> None:
        with many_objects():
            inside.set()
            second_in.wait(5)
            if first_out == "last in":
                second_done.wait(5)
        seen.append(gc.isenabled())
        first_done.set()

    def second() -> None:
        inside.wait(5)
        with many_objects():
            second_in.set()
            if first_out == "first in":
                first_done.wait(5)
        seen.append(gc.isenabled())
        second_done.set()

    assert gc.isenabled()
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == [False, True], "off while the other block is open, on after the last"
    assert gc.isenabled()
