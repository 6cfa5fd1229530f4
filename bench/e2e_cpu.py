"""CPU time per market_data message, per process of the pipeline (from the processes' own
utime + stime in /proc), so the figure compares across machines beside msg/s."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping

from bench.machine import _process_ticks

__all__ = ["CpuMeter", "WindowCpu", "per_message_us"]

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds each named process used since :meth:`start` (all its threads)."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._start: dict[str, int] = {}

    def start(self) -> None:
        """Take the starting snapshot."""
        self._start = {name: _process_ticks(pid) for name, pid in self.pids.items()}

    def seconds(self) -> dict[str, float]:
        """CPU seconds per process since :meth:`start`."""
        return {name: (_process_ticks(pid) - self._start[name]) * _TICK_S for name, pid in self.pids.items()}


def per_message_us(
    cpu_s: Mapping[str, float], messages: int, *, excluded: tuple[str, ...] = ("redis",)
) -> dict[str, float]:
    """CPU microseconds per message for each process, plus ``pipeline``: the sum over every
    process but ``excluded`` (Redis is a shared server, not part of the pipeline's code)."""
    if messages <= 0:
        return {}
    out = {name: s * 1e6 / messages for name, s in cpu_s.items()}
    out["pipeline"] = sum(v for k, v in out.items() if k not in excluded)
    return out


class WindowCpu:
    """CPU microseconds per message over one window (:func:`per_message_us`): each process's CPU
    since :meth:`start`, divided by the messages ``done()`` counted in between."""

    def __init__(self, pids: Mapping[str, int], done: Callable[[], Awaitable[int]]) -> None:
        self._cpu = CpuMeter(pids)
        self._done = done
        self._before = 0

    async def start(self) -> WindowCpu:
        """Open the window (the count first, then the CPU snapshot); returns this meter."""
        self._before = await self._done()
        self._cpu.start()
        return self

    async def per_message_us(self) -> dict[str, float]:
        """Per process and ``pipeline``, since :meth:`start`."""
        return per_message_us(self._cpu.seconds(), await self._done() - self._before)
