"""Cancelling a task so that it really ends, even on Python 3.11."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancel_firmly"]


async def cancel_firmly(task: asyncio.Future[Any], *, every_s: float = 0.5) -> None:
    """Cancel ``task`` and wait until it is done, cancelling again every ``every_s`` seconds.

    On Python 3.11 ``asyncio.wait_for`` (which redis-py and websockets use inside their I/O)
    loses a cancellation that arrives just as its inner operation completes; the task then
    runs on, e.g. into a blocking ``XREADGROUP``. Repeating the cancel ends it. The pause
    between cancels lets the task's own cleanup run (redis-py disconnects a connection whose
    read was cancelled; cancelling that cleanup too makes it reconnect and read again).
    Whatever the task raised (its cancellation included) is swallowed: the caller gave up on it.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait((task,), timeout=every_s)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
