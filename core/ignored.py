"""Counting and logging the valid messages a service drops on purpose (stale, duplicate, gone).

Nothing is ignored silently: every such message adds one to
``cdb_messages_ignored_total{service,topic,reason}`` (:meth:`ServiceMetrics.count_ignored`)
and is logged as ``service.ignored``. A redelivery storm can make thousands a second,
so the log is rate-limited per (topic, reason): the first one is logged at once with
its details, then at most one line every ``every_s`` seconds, saying how many were
ignored since the previous line. The counter is never rate-limited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.logging import get_logger
from core.metrics import IgnoreReason, ServiceMetrics
from core.topics import Topic

__all__ = ["IgnoredLog"]

_log = get_logger("core.ignored")


@dataclass
class IgnoredLog:
    """Counts every ignored message in ``metrics`` and logs them, rate-limited per (topic, reason)."""

    metrics: ServiceMetrics
    every_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _next: dict[tuple[str, str], float] = field(default_factory=dict)
    _held: dict[tuple[str, str], int] = field(default_factory=dict)

    def note(self, topic: Topic, reason: IgnoreReason, n: int = 1, **details: Any) -> None:
        """Count ``n`` messages of ``topic`` ignored for ``reason``; log unless a line for the
        same (topic, reason) went out less than ``every_s`` ago (then it is summed into the next)."""
        if n <= 0:
            return
        self.metrics.count_ignored(topic, reason, n)
        key = (topic.value, reason.value)
        now = self.clock()
        held = self._held.get(key, 0) + n
        if now < self._next.get(key, 0.0):
            self._held[key] = held
            return
        self._held[key] = 0
        self._next[key] = now + self.every_s
        _log.info(
            "service.ignored",
            service=self.metrics.service,
            topic=topic.value,
            reason=reason.value,
            count=held,
            **details,
        )
