"""What ``cdb cutover check --window N`` shows while it waits: time left and what it has seen.

The check compares two snapshots ``N`` seconds apart; for ten minutes it would otherwise
print nothing. This waits in one-second steps, redraws a progress bar on stderr and,
every few seconds, reads the live states again to say how many instances are live and
how many defaults were filled and shadow mismatches counted since the window began.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from core.redis.modes import AsyncClient
from core.status import LiveState, read_live_states
from core.topics import KeySpace

__all__ = ["seen_text", "window_progress"]

_LOOK_EVERY_S = 5.0


def _total(states: list[LiveState], name: str) -> dict[str, int]:
    out = {}
    for s in states:
        value = s.counts.get(name, 0)
        out[f"{s.service}/{s.instance}/{s.started_ms}"] = int(value) if isinstance(value, int | float) else 0
    return out


def seen_text(first: list[LiveState], now: list[LiveState]) -> str:
    """One line: live instances, and defaults filled / shadow mismatches since ``first``."""
    grown: dict[str, int] = {}
    for name in ("defaults_filled", "shadow_mismatches", "shadow_later_version"):
        before, after = _total(first, name), _total(now, name)
        grown[name] = sum(max(0, n - before.get(k, 0)) for k, n in after.items())
    live = [s for s in now if s.is_live()]  # a stopped or stale instance still counted above
    services = sorted({s.service for s in live})
    later = grown["shadow_later_version"]  # apart: a version the legacy path cannot read is no mismatch
    return (
        f"{len(live)} live instance(s) ({', '.join(services) or 'none'}); since the window began: "
        f"defaults filled +{grown['defaults_filled']}, shadow mismatches +{grown['shadow_mismatches']}"
        + (f" (later contract versions, not compared: +{later})" if later else "")
    )


def window_progress(
    redis: AsyncClient, keys: KeySpace, console: Console
) -> Callable[[float], Awaitable[None]]:
    """A ``sleep`` for :func:`migration.cutover.check_cutover` that shows its progress on ``console``."""

    async def sleep(seconds: float) -> None:
        first = await read_live_states(redis, keys)
        columns: list[Any] = [
            TextColumn("window"),
            BarColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[seen]}"),
        ]
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("window", total=seconds, seen=seen_text(first, first))
            start = time.monotonic()
            next_look = start + _LOOK_EVERY_S
            while (left := seconds - (time.monotonic() - start)) > 0:
                await asyncio.sleep(min(1.0, left))
                bar.update(task, completed=min(seconds, time.monotonic() - start))
                if time.monotonic() >= next_look:
                    next_look += _LOOK_EVERY_S
                    try:
                        bar.update(task, seen=seen_text(first, await read_live_states(redis, keys)))
                    except Exception as exc:  # a blip while waiting: say so, the check reads again
                        bar.update(task, seen=f"could not read live states: {type(exc).__name__}")

    return sleep
