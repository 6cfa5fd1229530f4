"""CPU time per market_data message, per process of the pipeline (from the processes' own
utime + stime in /proc), so the figure compares across machines beside msg/s."""

from __future__ import annotations

import os
from collections.abc import Mapping

from bench.machine import _process_ticks

__all__ = ["CpuMeter", "per_message_us"]

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
