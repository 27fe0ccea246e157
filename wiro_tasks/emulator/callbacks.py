"""Wiro's callbacks: each finished task with a `callbackUrl` is POSTed to it, once."""

from __future__ import annotations

import asyncio
import logging

import httpx

from .context import Emulator

logger = logging.getLogger("wiro_tasks.emulator")


async def deliver_callbacks(emulator: Emulator) -> None:
    """POSTs each finished task with a `callbackUrl` to it, once (unsigned, like Wiro)."""
    account = emulator.account
    async with httpx.AsyncClient(timeout=5.0) as http:
        while True:
            await asyncio.sleep(0.05)
            now = account.clock()
            with account.lock:
                due = [account.tasks[i] for i in account.callbacks if account.tasks[i].terminal_at(now)]
                account.callbacks.difference_update(t.id for t in due)
            for task in due:
                described = await emulator.describe(task, emulator.renderer.public_base, now)
                body = {"errors": [], "tasklist": [described], "result": True}
                try:
                    await http.post(task.callback_url, json=body)
                    account.count("callbacks_sent")
                except httpx.HTTPError as exc:
                    account.count("callbacks_failed")
                    logger.warning("callback to %s failed: %s", task.callback_url, type(exc).__name__)
