"""Start images: each local image is uploaded once per OUT and account, and journaled (durably)
before any Run request uses its URL, so a resumed sweep never uploads it again."""

from __future__ import annotations

import asyncio
from typing import Any

from flows.engine.ledger import Ledger
from flows.engine.rows import given, run_inputs
from flows.grid import IMAGE, IMAGE_PATH, IMAGE_SHA, IMAGE_URL
from flows.store.journal import Upload
from wiro_tasks import AuthenticationError, ImageCheckError, WiroError
from wiro_tasks.inputs import Value
from wiro_tasks.prefect_tasks import upload


class ImageUploads:
    """The uploads of one run: rows of one image share its upload, and its failure."""

    def __init__(self, ledger: Ledger, account: str) -> None:
        self.ledger = ledger
        self.account = account
        self._locks: dict[str, asyncio.Lock] = {}  # image sha256 -> held while it is being uploaded
        self._failed: dict[str, str] = {}  # image sha256 -> why its upload failed in this run

    async def inputs(self, row: dict[str, Any], label: str) -> dict[str, Value] | None:
        """The row's Run inputs, its local start image uploaded first; None, with the row
        recorded, when that failed.

        A journaled URL is not used for another API or key (`--emulator` starts a new one each
        time; an OUT may be resumed on another account), nor by a row retried after its task
        failed from that very URL (the file may be gone from Wiro's storage): those upload anew.
        """
        sha = given(row.get(IMAGE_SHA))
        if sha is None:
            return run_inputs(row)
        async with self._locks.setdefault(sha, asyncio.Lock()):
            if sha in self._failed:  # tried in this run already: one failure per image, not per row
                self.ledger.record("finished", row["row_id"], status="failed", task_id="", error=self._failed[sha])
                return None
            known = self.ledger.journal.uploads.get(sha)
            tried = self.ledger.state(row["row_id"])
            stale = tried.status in ("failed", "timed_out") and (tried.inputs or {}).get(IMAGE_URL)
            if known is None or known.account != self.account or (stale and stale == known.url):
                url = await self._upload(row, sha, label)
            else:
                url = known.url
        return None if url is None else run_inputs(row, url)

    async def _upload(self, row: dict[str, Any], sha: str, label: str) -> str | None:
        row_id, path = row["row_id"], str(row[IMAGE_PATH])
        ledger = self.ledger
        try:
            url: str = await upload(path, sha, label)
        except (ImageCheckError, WiroError) as exc:  # nothing usable was stored: no Run may use it
            if isinstance(exc, ImageCheckError):  # changed or gone since the grid was read
                error = f"start image {row[IMAGE]}: {exc.rule}; no Run request was sent"
            else:
                error = f"upload of {row[IMAGE]} failed: {exc}; no Run request was sent"
            if isinstance(exc, AuthenticationError):
                ledger.halt.reason = f"not submitted: {exc}"
            self._failed[sha] = error
            ledger.record("finished", row_id, status="failed", task_id="", error=error)
            return None
        ledger.record("uploaded", row_id, sha256=sha, url=url, image=str(row[IMAGE]), account=self.account)
        if not await ledger.commit(durable=True):  # a resume after a crash never uploads it again
            ledger.record("skipped", row_id, reason=ledger.halt.reason)
            return None
        ledger.journal.uploads[sha] = Upload(url, self.account)
        return url
