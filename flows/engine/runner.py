"""One sweep, row by row: submit, wait, download, journal, within the concurrency and budget.

Every row runs the same small state machine, driven by its journal state so a resumed sweep
picks up where the last one stopped:

    new --intent--> submit --submitted--> wait --finished--> (downloaded)
                      |  \\--unknown--> find the task --adopted--> wait
                      |                        \\--no_task--> new (submit again)
                      \\--refused / no balance / over budget--> failed / skipped

A row holds a concurrency slot from before its Run request until its task is final, so the
Wiro tasks in flight never exceed `max_concurrency`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pyarrow as pa
from prefect.client.schemas.objects import State
from prefect.concurrency.asyncio import concurrency

from flows.engine.budget import Budget, work_units
from flows.engine.progress import Progress, publish
from flows.engine.settings import Settings
from flows.engine.stopping import stop_in_flight, stop_tasks
from flows.grid import IMAGE, IMAGE_PATH, IMAGE_SHA, IMAGE_URL, MODEL, PLACEHOLDER_URL, is_missing
from flows.store.claims import Claims, account_key, state_root
from flows.store.journal import Journal, JournalWriteError, RowState, Upload
from flows.store.manifest import MANIFEST_PARQUET, ManifestBuilder, manifest_frame, row_status, write_manifest
from flows.store.posters import save_poster
from wiro_tasks import AuthenticationError, ImageCheckError, Quote, ToolPrice, WiroError
from wiro_tasks.inputs import Value, model_spec
from wiro_tasks.prefect_tasks import (
    FindOutcome,
    Saved,
    SubmitOutcome,
    WaitOutcome,
    fetch,
    find_task,
    outcome_of,
    seen_rates,
    stop_task,
    submit,
    upload,
    wait,
    wiro_client,
)

VIDEOS = "videos"
MAX_SUBMIT_ATTEMPTS = 5
LOST_ANSWER_SETTLE_SECONDS = 1.0
FIND_RETRY_DELAYS = (5.0, 15.0)  # seconds between the Task/List scans that look for a lost answer's task
SLOT_WAIT_SECONDS = 6 * 3600.0  # how long code 96 (account full) is waited out before a row gives up
CANCEL_POLL_SECONDS = 2.0
JOURNAL_FLUSH_SECONDS = 0.1

logger = logging.getLogger("flows.orchestrate.flow")


@dataclass(frozen=True)
class SweepResult:
    """How a run of the engine over one OUT ended: what the flow reports, shows and returns."""

    manifest: pd.DataFrame
    out_error: JournalWriteError | None = None  # OUT stopped taking writes: nothing more was submitted
    not_succeeded: frozenset[str] = frozenset()  # rows whose `wait` task run ended other than Completed
    strays: tuple[str, ...] = ()  # paid tasks that no sweep on this machine claimed (`unclaimed_strays`)
    cancelled: str | None = None  # why the run was cancelled by its user, if it was


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as dicts keyed by column name."""
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def video_name(row: Mapping[str, Any]) -> str:
    """The file name of a row's video: from its prompt, seed and id only, never the server's."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(row["prompt"]).lower()).strip("-")[:40].strip("-") or "video"
    return f"{slug}-seed{row['seed']}-{row['row_id']}.mp4"


def row_label(row: Mapping[str, Any]) -> str:
    """How a row is named in the Prefect UI: short id, start image, prompt start, seed."""
    prompt = " ".join(str(row["prompt"]).split())
    prompt = prompt if len(prompt) <= 32 else prompt[:31] + "…"
    image = _given(row.get(IMAGE)) or _given(row.get(IMAGE_URL))
    shown = f" · {image.rstrip('/').rsplit('/', 1)[-1][-24:]}" if image else ""
    return f"{row['row_id'][:8]}{shown} · {prompt} · seed {row['seed']}"


def run_inputs(row: Mapping[str, Any], image_url: str | None = None) -> dict[str, Value]:
    """What a row's Run request sends: the inputs of its model that the row has, with a local
    image's uploaded URL as `inputImageUrl`."""
    inputs: dict[str, Value] = {}
    for name in model_spec(row[MODEL]).names:
        value = _given(image_url if name == IMAGE_URL and image_url else row.get(name))
        if value is not None:
            inputs[name] = value.item() if hasattr(value, "item") else value  # numpy scalars as Python's
    return inputs


def quote_inputs(row: Mapping[str, Any]) -> dict[str, Value]:
    """The inputs a row is priced by: its Run inputs, a local image standing in for its URL (a
    price tier may charge per input image; the URL is known only after the upload)."""
    return run_inputs(row, PLACEHOLDER_URL if _given(row.get(IMAGE_SHA)) is not None else None)


def _given(value: Any) -> Any:
    """The value, or None for an empty cell (`grid.is_missing`)."""
    return None if is_missing(value) else value


def needs_work(state: RowState | None, retry_failed: bool) -> bool:
    """Whether a row has anything left to do in this run."""
    if state is None or state.phase != "finished":
        return True
    if state.status == "succeeded":
        return not state.downloaded
    if state.status == "cancelled":
        return True
    return retry_failed and state.status in ("failed", "timed_out")


class SweepRunner:
    """Runs the rows of one grid into one OUT directory."""

    def __init__(self, grid: pd.DataFrame, out: Path, journal: Journal, settings: Settings) -> None:
        self.grid = grid
        self.rows = records(grid)
        self.out = out
        self.journal = journal
        self.settings = settings
        self.states: dict[str, RowState] = journal.load()
        self.manifest = ManifestBuilder(grid)
        self.status = {r["row_id"]: row_status(self.states.get(r["row_id"]))[0] for r in self.rows}
        self.counts = Counter(self.status.values())
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        self.stop_reason = ""
        self.out_error: JournalWriteError | None = None  # OUT stopped taking writes: nothing more is submitted
        self.strays: dict[str, list[str]] = {}  # row id -> matching tasks that nobody claimed when it adopted one
        self.quotes: dict[str, Quote | None] = {}  # row id -> its price, once Tool/Detail has been asked
        self.budget_stopped: dict[str, str] = {}  # row id -> why the budget stopped its running task
        self._stopping: set[asyncio.Task[None]] = set()
        self._uploading: dict[str, asyncio.Lock] = {}  # image sha256 -> held while it is being uploaded
        self._upload_failed: dict[str, str] = {}  # image sha256 -> why its upload failed in this run
        self.account = ""  # the Wiro account swept (`claims.account_key`), once the run starts
        self.waited_not_succeeded: set[str] = set()  # rows whose `wait` task run in this flow run ended so
        self.cancelled_by_user: str | None = None
        self.stopped = 0  # Wiro tasks killed or cancelled because the run was
        self.billed = asyncio.Condition()
        self._dirty = asyncio.Event()
        self._version = 0
        self._written = -1
        self._write_lock = threading.Lock()
        self._work = {r["row_id"]: work_units(r) for r in self.rows}
        rates = [
            s.cost / self._work[k]
            for k, s in self.states.items()
            if k in self._work and s.cost > 0 and s.phase == "finished"
        ]
        spent = sum((s.cost for s in self.states.values()), Decimal(0))
        self.budget = Budget(settings.budget, spent=spent, estimate_usd=settings.estimate_usd, observed_rates=rates)
        (out / VIDEOS).mkdir(parents=True, exist_ok=True)
        for stale in [*out.glob(".manifest.*.tmp"), *(out / VIDEOS).glob("*.part")]:
            stale.unlink(missing_ok=True)  # left by a process killed mid-write

    # Journal and bookkeeping.

    def record(self, event: str, row_id: str, **fields: Any) -> None:
        """Append to the journal first, then update the in-memory state from the same record."""
        entry = self.journal.append(event, row_id, **fields)
        state = self.states.setdefault(row_id, RowState(row_id))
        state.apply(entry)
        self.manifest.forget(row_id)
        if row_id in self.status:
            self.counts[self.status[row_id]] -= 1
            self.status[row_id] = row_status(state)[0]
            self.counts[self.status[row_id]] += 1
        self._version += 1
        self._dirty.set()

    def state(self, row_id: str) -> RowState:
        return self.states.setdefault(row_id, RowState(row_id))

    def progress(self, row_id: str = "", status: str = "") -> Progress:
        counts = {k: v for k, v in self.counts.items() if v}
        return Progress(
            total=len(self.rows),
            done=sum(v for k, v in counts.items() if k not in ("pending", "running")),
            by_status=counts,
            cost=self.budget.spent,
            last_row=row_id,
            last_status=status,
        )

    def write(self, final: bool = False) -> pd.DataFrame:
        """Write the manifest as the journal stands now."""
        table = self.manifest.table(self.states, final=final)
        self._write(table, self._version)
        return manifest_frame(table)

    def _write(self, manifest: pd.DataFrame | pa.Table, version: int) -> None:
        # A slow background write must never land after a newer one.
        with self._write_lock:
            if version >= self._written:
                write_manifest(self.out, manifest)
                self._written = version

    async def keep_manifest_fresh(self) -> None:
        """Rewrite the manifest at most every `manifest_interval` seconds while rows change."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            started = time.perf_counter()
            manifest = self.manifest.table(self.states)
            try:
                await asyncio.to_thread(self._write, manifest, self._version)
            except OSError as exc:  # the next change tries again; the journal is the record
                logger.warning("could not write the manifest in %s: %s", self.out, exc.strerror or exc)
            except Exception:
                logger.exception("could not write the manifest")
            # Big grids take longer to rebuild: never spend more than ~5% of the time on it.
            spent = time.perf_counter() - started
            await asyncio.sleep(max(self.settings.manifest_interval, 20 * spent))

    # The run.

    def _open_claims(self) -> Claims:
        """This machine's referee for tasks on the account (OUT's own, where the state dir is unwritable)."""
        client = wiro_client()
        account = self.account = account_key(client.base_url, client.credentials.api_key)
        try:
            return Claims(self.out, account)
        except OSError as exc:
            logger.warning("no claims under %s (%s): only this OUT's own tasks are told apart", state_root(), exc)
            return Claims(self.out, account, root=self.out / ".claims")

    async def _price(self, model: str) -> ToolPrice | None:
        """A model's price from Tool/Detail; None (with a warning) when the API gives none."""
        price: ToolPrice | None = None
        try:
            price = (await wiro_client().tool(model)).price
        except WiroError as exc:
            reason = f"Tool/Detail failed: {exc}"
        else:
            reason = "Tool/Detail gives no price"
            for anomaly in price.anomalies:
                logger.warning("Tool/Detail: %s", anomaly)
        if price is None or not price.known:
            if self.settings.budget is not None:
                logger.warning("%s: the budget is kept on estimates (--estimate-usd, then the dearest rate "
                               "billed), which a dearer task can pass", reason)  # fmt: skip
            return None
        return price

    async def run(self) -> SweepResult:
        """Drive every row that has work left to its end; how the run ended."""
        manifest = await self._run()
        return SweepResult(
            manifest=manifest,
            out_error=self.out_error,
            not_succeeded=frozenset(self.waited_not_succeeded),
            strays=self.unclaimed_strays(),
            cancelled=self.cancelled_by_user,
        )

    async def _run(self) -> pd.DataFrame:
        self.claims = self._open_claims()
        prices = {model: await self._price(model) for model in dict.fromkeys(r[MODEL] for r in self.rows)}
        self.quotes = {}
        for r in self.rows:
            price = prices[r[MODEL]]
            self.quotes[r["row_id"]] = price.quote(quote_inputs(r)) if price else None
        for state in self.states.values():
            if state.has_live_task:  # claims of this OUT's tasks, should the registry have lost them
                self.claims.claim(state.task_id, state.row_id)
        for state in self.states.values():
            if state.downloaded and not self._saved_intact(state):
                self.record(
                    "file_missing", state.row_id, error=f"{state.output_path} is missing or changed: fetching again"
                )
        todo = [r for r in self.rows if needs_work(self.states.get(r["row_id"]), self.settings.retry_failed)]
        # Rows whose task may already exist go first: they hold slots before any new submission,
        # and their estimates count against the budget from the start.
        todo.sort(key=lambda r: not self._maybe_live(r["row_id"]))
        for row in todo:
            row_id = row["row_id"]
            if self._maybe_live(row_id):  # billed, if per second, since its intent at the latest
                age = (datetime.now(UTC) - datetime.fromisoformat(self.state(row_id).intent_at)).total_seconds()
                self.budget.hold(row_id, self._work[row_id], self.quotes.get(row_id), age)
        self.write()
        publish(self.progress())
        writer = asyncio.create_task(self.keep_manifest_fresh())
        flusher = asyncio.create_task(self._flush_journal())
        rows = {row["row_id"]: asyncio.create_task(self.process(row)) for row in todo}
        watcher = asyncio.create_task(self._watch_cancellation(rows))
        guard = asyncio.create_task(self._guard_budget())
        try:
            await asyncio.gather(*rows.values())
        except asyncio.CancelledError:
            if not self.cancelled_by_user:
                raise
        finally:
            if self.cancelled_by_user and not watcher.done():
                await asyncio.wait({watcher})  # it stops the live tasks, then the rows that wait on them
            for helper in (writer, watcher, flusher, guard):
                helper.cancel()
            await asyncio.gather(writer, watcher, flusher, guard, *self._stopping, return_exceptions=True)
            self._flush_or_stop()
        if self.cancelled_by_user:
            await asyncio.gather(*rows.values(), return_exceptions=True)
            # What is left: tasks that could not be stopped yet, and those of unanswered Runs.
            self.stopped += await stop_in_flight(wiro_client(), self.states.values(), self.record, self.claims)
            logger.warning("flow run cancelled: stopped %d Wiro task(s)", self.stopped)
            self._flush_or_stop()
        try:
            return self.write(final=True)
        except OSError as exc:  # the old manifest stays whole; the journal (if it could be written) is the record
            self._out_failed(JournalWriteError(self.out / MANIFEST_PARQUET, exc))
            return manifest_frame(self.manifest.table(self.states, final=True))

    def unclaimed_strays(self) -> tuple[str, ...]:
        """Tasks that matched a row's lost answer beside the one it adopted, and that no sweep on this
        machine has claimed since: paid, in no manifest. Named in the log and the summary."""
        named = []
        for row_id, task_ids in self.strays.items():
            inputs = self.state(row_id).inputs or {}
            shown = ", ".join(f"{k}={v!r}" for k, v in inputs.items() if k in ("prompt", "seed", "size", "numFrames"))
            named += [f"task {t} ({shown})" for t in task_ids if self.claims.holder(t) is None]
        for line in named:
            logger.warning("a paid task that no sweep here claimed: %s", line)
        return tuple(named)

    def _flush_or_stop(self) -> None:
        try:
            self.journal.flush()
        except JournalWriteError as exc:
            self._out_failed(exc)

    def _out_failed(self, error: JournalWriteError) -> None:
        """OUT cannot be written: submit nothing more; the tasks in flight are still waited for."""
        if self.out_error is None:
            self.out_error = error
            self.stop_reason = f"not submitted: {error}"
            logger.warning("%s: nothing more is submitted; tasks in flight are waited for", error)

    async def _flush_journal(self) -> None:
        """Events other than intents reach the file in batches, a tenth of a second apart."""
        while True:
            await asyncio.sleep(JOURNAL_FLUSH_SECONDS)
            try:
                await self.journal.commit()
            except JournalWriteError as exc:  # kept pending: tried again, in case space comes back
                self._out_failed(exc)
                await asyncio.sleep(1.0)

    async def _watch_cancellation(self, rows: dict[str, asyncio.Task[None]]) -> None:
        """Cancel in the Prefect UI reaches a run started outside a worker only if it looks.

        Then nothing is submitted any more (rows without a live task stop at once, a Run being
        sent included), the live tasks are stopped while their rows still hold their slots (freed
        first, the account's slots would go to other runs while these tasks still bill), and
        only then do those rows stop."""
        from prefect.client.orchestration import get_client
        from prefect.runtime import flow_run

        from flows.orchestrate.children import cancel_requested

        run_id = flow_run.id
        if not run_id:
            return
        async with get_client() as client:
            while True:
                await asyncio.sleep(CANCEL_POLL_SECONDS)
                reason = await cancel_requested(client, run_id)
                if reason:
                    self.cancelled_by_user = reason
                    live = {k: s.task_id for k, s in self.states.items() if s.has_live_task and k in rows}
                    for row_id, row in rows.items():
                        if row_id not in live:
                            row.cancel()
                    self.stopped += await stop_tasks(wiro_client(), live, self.record)
                    for row in rows.values():
                        row.cancel()
                    return

    async def _guard_budget(self) -> None:
        """Stops running per-second tasks, youngest first, before the bill could pass the budget
        (see `Budget.to_stop`); their rows are recorded `skipped` with what they cost."""
        if self.budget.limit is None:
            return
        while True:
            await asyncio.sleep(self.budget.period)
            for row_id in self.budget.flights:
                rate = seen_rates.get(self.state(row_id).task_id)
                if rate is not None:
                    self.budget.observe(row_id, rate)
            for row_id in self.budget.to_stop(lambda r: self.state(r).has_live_task):
                task_id = self.state(row_id).task_id
                self.budget_stopped[row_id] = (f"budget: stopped while running, at ${self.budget.committed:.4f} "
                                               f"billed and held of ${self.budget.limit}")  # fmt: skip
                self.record("note", row_id, error=f"budget: stopping task {task_id}")
                stopping = asyncio.create_task(self._stop_for_budget(row_id, task_id))
                self._stopping.add(stopping)
                stopping.add_done_callback(self._stopping.discard)

    async def _stop_for_budget(self, row_id: str, task_id: str) -> None:
        """Cancel (queued) or kill (running) one task, unless it has ended already (a resumed task
        counted from its intent may well have); its row's wait records how it ended. If Wiro could
        not be told, the budget counts the task as running again and the guard tries once more."""
        client = wiro_client()
        try:
            current = await client.detail(task_id)
            if not current.is_terminal:
                await stop_task(client, current)
        except WiroError as exc:
            logger.warning("budget: could not stop task %s: %s", task_id, exc)
            self.budget.unstop(row_id)

    def _saved_intact(self, state: RowState) -> bool:
        path = self.out / state.output_path
        return path.is_file() and path.stat().st_size == state.output_bytes

    def _maybe_live(self, row_id: str) -> bool:
        state = self.states.get(row_id)
        return state is not None and state.phase in ("submitted", "intent", "unknown")

    async def process(self, row: dict[str, Any]) -> None:
        row_id = row["row_id"]
        try:
            if not self._paid_not_saved(row_id):
                async with self.slots, self._account_slot():
                    await self._drive(row)
            if self._paid_not_saved(row_id):  # the download needs no Wiro slot: the next task starts
                await self._download(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a row's failure must not stop the others
            logger.exception("row %s: %s", row_id, exc)
            self.record("download_failed" if self.state(row_id).phase == "finished" else "note", row_id,
                        error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        finally:
            if self._maybe_live(row_id):  # a Run may have made a task that runs and bills; nobody here waits for it
                self.budget.orphan(row_id)
            else:
                self.budget.release(row_id)
            async with self.billed:  # a reservation ended: rows waiting on the budget look again
                self.billed.notify_all()
            publish(self.progress(row_id, self.status.get(row_id, "")))

    def _account_slot(self) -> AbstractAsyncContextManager[object]:
        """A slot of the global concurrency limit shared by every run on this Wiro account."""
        name = self.settings.concurrency_limit_name
        if not name:
            return nullcontext()
        return concurrency(name, occupy=1, strict=True)

    async def _drive(self, row: dict[str, Any]) -> None:
        row_id = row["row_id"]
        label = row_label(row)
        submissions = 0
        while True:
            state = self.state(row_id)
            if state.phase == "submitted":
                await self._wait(row, state)
                return
            if state.phase in ("intent", "unknown"):  # looked for by what its Run request sent
                await self._find(row, state.inputs or run_inputs(row), label, state)
                continue
            if submissions >= MAX_SUBMIT_ATTEMPTS:
                self.record("finished", row_id, status="failed", error=f"no task after {submissions} tries")
                return
            submissions += 1
            if not await self._admit(row):
                return
            inputs = await self._inputs(row, label)
            if inputs is None:  # its hold is released as the row ends (`process`)
                return
            await self._submit(row, inputs, label)
            if self.state(row_id).phase in ("finished", "skipped"):
                return

    async def _inputs(self, row: dict[str, Any], label: str) -> dict[str, Value] | None:
        """The row's Run inputs, its local start image uploaded first (once per image, OUT and
        account, and journaled before any Run uses it); None, with the row recorded, when that failed.

        A journaled URL is not used for another API or key (`--emulator` starts a new one each
        time; an OUT may be resumed on another account), nor by a row retried after its task
        failed from that very URL (the file may be gone from Wiro's storage): those upload anew.
        """
        sha = _given(row.get(IMAGE_SHA))
        if sha is None:
            return run_inputs(row)
        async with self._uploading.setdefault(sha, asyncio.Lock()):  # rows of one image share its upload
            if sha in self._upload_failed:  # tried in this run already: one failure per image, not per row
                self.record("finished", row["row_id"], status="failed", task_id="", error=self._upload_failed[sha])
                return None
            known = self.journal.uploads.get(sha)
            tried = self.state(row["row_id"])
            stale = tried.status in ("failed", "timed_out") and (tried.inputs or {}).get(IMAGE_URL)
            if known is None or known.account != self.account or (stale and stale == known.url):
                url = await self._upload(row, sha, label)
            else:
                url = known.url
        return None if url is None else run_inputs(row, url)

    async def _upload(self, row: dict[str, Any], sha: str, label: str) -> str | None:
        row_id, path = row["row_id"], str(row[IMAGE_PATH])
        try:
            url: str = await upload(path, sha, label)
        except (ImageCheckError, WiroError) as exc:  # nothing usable was stored: no Run may use it
            if isinstance(exc, ImageCheckError):  # changed or gone since the grid was read
                error = f"start image {row[IMAGE]}: {exc.rule}; no Run request was sent"
            else:
                error = f"upload of {row[IMAGE]} failed: {exc}; no Run request was sent"
            if isinstance(exc, AuthenticationError):
                self.stop_reason = f"not submitted: {exc}"
            self._upload_failed[sha] = error
            self.record("finished", row_id, status="failed", task_id="", error=error)
            return None
        self.record("uploaded", row_id, sha256=sha, url=url, image=str(row[IMAGE]), account=self.account)
        try:
            await self.journal.commit(durable=True)  # a resume after a crash never uploads it again
        except JournalWriteError as exc:
            self._out_failed(exc)
            self.record("skipped", row_id, reason=self.stop_reason)
            return None
        self.journal.uploads[sha] = Upload(url, self.account)
        return url

    async def _admit(self, row: dict[str, Any]) -> bool:
        """Whether this row may be submitted now: no stop, and within the budget."""
        row_id = row["row_id"]
        while True:
            if self.cancelled_by_user:
                return False
            if self.stop_reason:
                self.record("skipped", row_id, reason=self.stop_reason)
                return False
            quote = self.quotes.get(row_id)
            verdict = self.budget.reserve(row_id, self._work[row_id], quote)
            if verdict == "ok":
                return True
            if verdict == "over":
                plan = self.budget.plan(quote, self._work[row_id])
                self.record("skipped", row_id, reason=f"budget: ${self.budget.spent:.4f} spent, this task "
                            f"${plan:.4f}, budget ${self.settings.budget}")  # fmt: skip
                return False
            async with self.billed:
                await self.billed.wait()

    async def _submit(self, row: dict[str, Any], inputs: dict[str, Value], label: str) -> None:
        row_id = row["row_id"]
        offset = wiro_client().server_clock.offset
        server_at = _iso(time.time() + offset.low) if offset else ""  # the moment on Wiro's clock, at the earliest
        model = row[MODEL]
        self.record("intent", row_id, inputs=inputs, server_at=server_at, model=model, account=self.account)
        try:
            await self.journal.commit(durable=True)  # whole and on disk before the request that may cost money
        except JournalWriteError as exc:
            self._out_failed(exc)
            self.record("no_task", row_id, reason="its intent could not be written: no Run request was sent")
            self.record("skipped", row_id, reason=self.stop_reason)
            return
        if self.cancelled_by_user:
            self.record("no_task", row_id, reason="the sweep was cancelled before its Run request")
            return
        self.budget.launch(row_id)  # a per-second task may be billed from here on
        outcome: SubmitOutcome = await submit(model, inputs, label, limit_wait=SLOT_WAIT_SECONDS)
        if outcome.kind == "submitted" and not self._take(outcome.task_id, row_id):
            # Another row holds the task this answer names (a server that gave one id to two Runs):
            # this row's own task, if its Run made one, is looked for like a lost answer's.
            self.record("unknown", row_id, error=f"the Run answer named task {outcome.task_id}, which another row "
                        "holds: looking for this row's own task")  # fmt: skip
            await asyncio.sleep(LOST_ANSWER_SETTLE_SECONDS)
        elif outcome.kind == "submitted":
            self.record("submitted", row_id, task_id=outcome.task_id)
        elif outcome.kind == "unknown":
            self.record("unknown", row_id, error=outcome.message)
            await asyncio.sleep(LOST_ANSWER_SETTLE_SECONDS)
        else:
            self.record("no_task", row_id, reason=outcome.message)  # the row ends: `process` releases its hold
            if outcome.kind in ("balance", "auth", "unreachable"):
                self.stop_reason = f"not submitted: {outcome.message}"
                self.record("skipped", row_id, reason=self.stop_reason)
            else:
                self.record("finished", row_id, status="failed", error=outcome.message, task_id="")

    def _ours(self, state: RowState) -> bool:
        """Whether a row's tasks are on the account swept now: task ids of another API (an OUT swept
        before on another key, or on an earlier `--emulator`) may repeat and say nothing here."""
        return not state.account or state.account == self.account

    def _take(self, task_id: str, row_id: str) -> bool:
        """Claim a task for a row: not another row's here, and not another OUT's on this machine."""
        if any(task_id in s.task_ids for k, s in self.states.items() if k != row_id and self._ours(s)):
            return False
        return self.claims.claim(task_id, row_id)

    async def _find(self, row: dict[str, Any], inputs: dict[str, Value], label: str, state: RowState) -> None:
        """A Run answer was lost (or the process died around one): adopt its task if it exists.

        Only several complete Task/List scans, spread over a while, count as proof that no task
        was created; until then the row is never submitted again. Times are judged on Wiro's
        clock (`find_task`), and a match that another row or another OUT on this machine has
        claimed is never adopted: it is theirs, and theirs is this row's if both lost answers.
        """
        row_id = row["row_id"]
        since = datetime.fromisoformat(state.intent_at)
        since_server = datetime.fromisoformat(state.intent_server_at) if state.intent_server_at else None
        for delay in (0.0, *FIND_RETRY_DELAYS):
            await asyncio.sleep(delay)
            claimed = [t for s in self.states.values() if self._ours(s) for t in s.task_ids]
            model = state.model or row[MODEL]
            found: FindOutcome = await find_task(model, inputs, label, since, claimed, since_server)
            for task_id in found.task_ids:
                if self._take(task_id, row_id):
                    self.record("adopted", row_id, task_id=task_id)
                    others = [t for t in found.task_ids if t != task_id and self.claims.holder(t) is None]
                    if others:  # nobody has claimed them yet: another OUT's lost answers, or paid strays
                        self.record("note", row_id, error=f"unclaimed tasks with these inputs: {' '.join(others)}")
                        self.strays[row_id] = others
                    return
            if not found.complete:
                self.record("note", row_id, error="Task/List too long to prove no task exists; not resubmitted")
                raise LookupError(f"could not scan back to {state.intent_at}")
        self.record("no_task", row_id, reason="the lost Run answer created no task")

    async def _wait(self, row: dict[str, Any], state: RowState) -> None:
        row_id = row["row_id"]
        started = datetime.fromisoformat(state.submitted_at) if state.submitted_at else None
        deadline = (started or datetime.now(UTC)) + timedelta(seconds=self.settings.timeout)
        ended: State[Any] = await wait(  # type: ignore[misc]  # Prefect types return_state=True as sync
            state.task_id,
            row_label(row),
            deadline,
            poll_interval=self.settings.poll_interval,
            poll_cap=self.settings.poll_cap,
            error_grace=self.settings.error_grace,
            return_state=True,  # a row that did not succeed ends its task run Failed: still an outcome
        )
        outcome: WaitOutcome = await outcome_of(ended)
        if outcome.status != "succeeded":
            self.waited_not_succeeded.add(row_id)  # its `wait` task run shows it in the UI
        already = state.costs.get(outcome.task_id, Decimal(0))  # billed in an earlier run, counted already
        cost, error = outcome.cost, outcome.error
        if cost is None:  # Wiro's figure was garbage: count what the task could have cost, never nothing
            cost = self._substitute_cost(row_id, outcome)
            error = f"{error}; counted as ${cost:.6f} (an estimate)"
        stopped = outcome.status == "cancelled" and row_id in self.budget_stopped
        self.record(
            "finished",
            row_id,
            task_id=outcome.task_id,
            status=outcome.status,
            error=error,
            cost=str(cost),
            elapsed=str(outcome.elapsed) if outcome.elapsed is not None else "",
            output_url=outcome.output_url,
            output_bytes=outcome.output_bytes,
            at=_iso(outcome.noticed_at),
        )
        if stopped:  # skipped, as rows the budget never let start: a rerun with more budget submits it again
            self.record("skipped", row_id, reason=f"{self.budget_stopped[row_id]}; ${cost:.6f} billed for it")
        self.budget.settle(row_id, cost - already, self._work[row_id])
        async with self.billed:
            self.billed.notify_all()

    def _substitute_cost(self, row_id: str, outcome: WaitOutcome) -> Decimal:
        """What a task whose bill could not be read may have cost: its fixed price, its seconds at
        its rate, or what the budget planned for it."""
        quote, work = self.quotes.get(row_id), self._work[row_id]
        if quote is not None and quote.fixed is not None:
            return quote.fixed
        if quote is not None and quote.cps is not None and outcome.elapsed:
            return outcome.elapsed * max(quote.cps, outcome.cps)
        return self.budget.plan(quote, work)

    def _paid_not_saved(self, row_id: str) -> bool:
        state = self.state(row_id)
        return state.phase == "finished" and state.status == "succeeded" and not state.downloaded

    async def _download(self, row: dict[str, Any]) -> None:
        """Save a succeeded task's output under OUT/videos, by a name from the row."""
        row_id = row["row_id"]
        state = self.state(row_id)
        dest = self.out / VIDEOS / video_name(row)
        saved: Saved = await fetch(state.task_id, state.output_url, state.output_bytes_expected, str(dest))
        if saved.path:
            relative = Path(saved.path).resolve().relative_to(self.out)
            self.record("downloaded", row_id, path=str(relative), sha256=saved.sha256, bytes=saved.size)
            await asyncio.to_thread(save_poster, Path(saved.path))  # the report shows its first frame
        else:
            self.record("download_failed", row_id, error=saved.error)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
