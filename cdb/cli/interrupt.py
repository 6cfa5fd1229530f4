"""SIGTERM as a clean stop for the long ``cdb`` commands (``cdb run``, ``cdb matrix``).

A container stop or a cancelled CI job sends SIGTERM, whose default action kills the process
at once: no ``finally`` block runs, so servers, keys, schemas and temporary directories stay
behind. :func:`interruptible` turns it into the same cancellation Ctrl-C gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["SIGTERM_EXIT", "StoppedBySigtermError", "interruptible"]

SIGTERM_EXIT = 143
"""The exit status of a command stopped by SIGTERM (128 + 15, as a shell reports it)."""


class StoppedBySigtermError(Exception):
    """SIGTERM arrived while the job ran; its cleanup has run."""


async def interruptible(make_job: Callable[[asyncio.Event], Awaitable[Any]]) -> Any:
    """Run ``make_job(term)``; on SIGTERM set ``term`` and cancel it (its ``finally`` blocks stop
    what it started and remove what it made), then raise :class:`StoppedBySigtermError` instead
    of dying with the default action. A cancel can be lost on Python 3.11 (``asyncio.wait_for``
    inside redis-py swallows one that lands as its socket write completes), so a job may also
    check ``term`` at its own safe points."""
    term = asyncio.Event()
    task = asyncio.ensure_future(make_job(term))
    loop = asyncio.get_running_loop()

    def on_term() -> None:
        term.set()
        task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
        loop.add_signal_handler(signal.SIGTERM, on_term)
    try:
        result = await task
    except asyncio.CancelledError:
        if term.is_set():
            raise StoppedBySigtermError from None
        raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
    if term.is_set():
        raise StoppedBySigtermError  # it ran to the end although asked to stop: say so
    return result
