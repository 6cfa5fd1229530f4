"""Retiring a contract version on evidence: GO only when nothing running still needs it.

``cdb versions retire-check --topic T --version V --window S`` reads the live states and says GO
to stop writing and reading ``V`` on ``T`` only when all of these hold:

1. no running instance writes ``V`` on ``T`` (switch its ``PRODUCE_VERSION_<T>`` first);
2. at least one consumer of ``T`` reports what it reads, and none can read **only** ``V``
   (a legacy-path consumer reads v1.0 only: it must move to the Pydantic path first);
3. every consumer of ``T`` has run for the whole window and decoded no ``V`` message in it.

Stale instances count (a hung consumer comes back reading what it read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.status import LiveState
from core.topics import ServiceName, Topic
from core.versions.live import readable_by

__all__ = ["RetireReport", "retire_check"]


@dataclass
class RetireReport:
    """The verdict and the evidence behind it."""

    topic: Topic
    version: str
    window_s: float
    reasons: list[str] = field(default_factory=list)
    """Why not (empty on GO)."""
    evidence: list[str] = field(default_factory=list)
    consumers: list[LiveState] = field(default_factory=list)
    """The live states of the topic's consumers the verdict rests on."""

    @property
    def go(self) -> bool:
        """True when nothing running needs the version any more."""
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        """The report for ``--json``."""
        return {
            "topic": self.topic.value,
            "version": self.version,
            "window_s": self.window_s,
            "verdict": "GO" if self.go else "NO-GO",
            "reasons": self.reasons,
            "evidence": self.evidence,
        }


def retire_check(
    states: list[LiveState], topic: Topic, version: str, window_s: float, now: int
) -> RetireReport:
    """GO/NO-GO to retire ``version`` of ``topic`` given the live ``states`` at ``now`` (epoch ms)."""
    report = RetireReport(topic, version, window_s)
    since = now - int(window_s * 1000)
    for s in states:
        if s.writes.get(topic.value) == version:
            report.reasons.append(f"{s.service}/{s.instance} still writes {version} on {topic.value}")
    consumers = [s for s in states if ServiceName(s.service).consumes is topic]
    report.consumers = consumers
    if not consumers:
        report.reasons.append(f"no running consumer of {topic.value} reports what it reads: no evidence")
    for s in consumers:
        name = f"{s.service}/{s.instance}"
        reads = readable_by(s, topic)
        if reads == [version]:
            report.reasons.append(f"{name} reads only {version} (path {s.path})")
        last = s.versions_seen.get(topic.value, {}).get(version)
        if last is not None and last >= since:
            report.reasons.append(f"{name} decoded a {version} message {(now - last) / 1000:.0f}s ago")
        if s.started_ms > since:
            report.reasons.append(
                f"{name} has run {s.uptime_s(now):.0f}s, less than the {window_s:.0f}s window"
            )
        seen = ", ".join(
            f"{v} {(now - ms) / 1000:.0f}s ago" for v, ms in s.versions_seen.get(topic.value, {}).items()
        )
        report.evidence.append(f"{name}: reads {', '.join(reads)}; last decoded: {seen or 'nothing'}")
    return report
