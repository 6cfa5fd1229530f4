"""What the migration dashboard shows, read from the same Redis state ``cdb status`` reads.

:func:`read_snapshot` takes one look: every live instance (its reported live state),
the dead-letter streams (length and the error types of the newest entries), the
pipeline's partition count and the partitions no live instance owns. :class:`History`
keeps a bounded series of snapshots in memory and derives what needs time: each topic's
message rate and its share of legacy-shaped messages, and the timeline of flag flips (an
instance that started on another path or profile than the previous start of its service).
No HTTP here: the application serves it (``cdb dashboard``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from core.redis.dead_letters import DeadLetters
from core.redis.modes import AsyncClient
from core.redis.ownership import Unowned, unowned_partitions
from core.redis.topology import read_partitions
from core.status import LiveState, read_live_states
from core.topics import KeySpace, ServiceName, Topic
from core.utils.clock import now_ms

__all__ = ["History", "Snapshot", "read_snapshot"]

_DLQ_SAMPLE = 200  # newest dead letters per topic whose error types are tallied
_CONSUMER_OF = {s.consumes: s.value for s in ServiceName if s.consumes is not None}


@dataclass
class Snapshot:
    """One look at the pipeline."""

    at_ms: int
    states: list[LiveState]
    partitions: int | None
    dead_letters: dict[str, dict[str, Any]]
    """Per topic: ``entries`` (stream length) and ``by_type`` (error type -> count, newest entries)."""
    unowned: list[Unowned] = field(default_factory=list)
    """Partitions no live instance owns, with what waits there (in no instance's lag)."""


async def read_snapshot(redis: AsyncClient, keys: KeySpace) -> Snapshot:
    """Read every live state, the dead-letter streams, the partition count and the partitions
    no live instance owns (a few round trips)."""
    states = await read_live_states(redis, keys)
    partitions = await read_partitions(redis, keys)
    at = now_ms()
    unowned = await unowned_partitions(redis, keys.with_partitions(partitions or 1), states, at)
    letters = DeadLetters(redis, keys)
    dlq: dict[str, dict[str, Any]] = {}
    for topic in Topic:
        entries = await letters.count(topic)
        by_type: dict[str, int] = {}
        if entries:
            for letter in await letters.read(topic, count=_DLQ_SAMPLE):
                by_type[letter.reason or "other"] = by_type.get(letter.reason or "other", 0) + 1
        dlq[topic.value] = {"entries": entries, "by_type": by_type, "sampled": min(entries, _DLQ_SAMPLE)}
    return Snapshot(at, states, partitions, dlq, unowned)


def _shape_totals(states: list[LiveState]) -> dict[tuple[str, str, str, str], int]:
    """(service/instance/start key, topic, direction, shape) -> count, over every instance."""
    out: dict[tuple[str, str, str, str], int] = {}
    for s in states:
        shapes = s.counts.get("wire_shape") or {}
        who = f"{s.service}/{s.instance}/{s.started_ms}"
        for key, n in shapes.items():
            parts = str(key).split(".", 2)  # "<direction>.<topic>.<shape>"; the shape "v1.0" has a dot
            if len(parts) == 3:
                direction, topic, shape = parts
                out[(who, topic, direction, shape)] = int(n)
    return out


@dataclass
class _Point:
    t_ms: int
    shapes: dict[tuple[str, str, str, str], int]


@dataclass
class History:
    """A bounded history of snapshots (``keep`` points) and the flips seen since it began."""

    keep: int = 600
    window_ms: int = 6000
    """Each rate is taken over at least this long (live states are reported every 2 s)."""
    points: deque[_Point] = field(default_factory=deque)
    starts: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)

    def add(self, snap: Snapshot) -> None:
        """Record ``snap`` (its wire-shape counters and any instance start not seen before)."""
        self.points.append(_Point(snap.at_ms, _shape_totals(snap.states)))
        while len(self.points) > self.keep:
            self.points.popleft()
        for s in snap.states:
            key = (s.service, s.instance, s.started_ms)
            if key not in self.starts:
                self.starts[key] = {
                    "service": s.service,
                    "instance": s.instance,
                    "started_ms": s.started_ms,
                    "path": s.path,
                    "profile": s.profile,
                    "shadow": s.shadow,
                }

    def timeline(self) -> list[dict[str, Any]]:
        """Every instance start seen, oldest first; ``flip`` says how its path/profile changed
        from the previous start of the same service (``None`` for the first one seen)."""
        out: list[dict[str, Any]] = []
        last: dict[str, dict[str, Any]] = {}
        for start in sorted(self.starts.values(), key=lambda s: s["started_ms"]):
            before = last.get(start["service"])
            flip = None
            if before is not None and (before["path"], before["profile"]) != (
                start["path"],
                start["profile"],
            ):
                flip = f"{_mode(before)} -> {_mode(start)}"
            out.append({**start, "flip": flip})
            last[start["service"]] = start
        return out

    def topic_series(self) -> dict[str, list[dict[str, float]]]:
        """Per topic, one point per interval: ``t_ms``, ``rate`` (messages/s) and ``legacy_share``
        (0..1, or -1 when no message came in that interval).

        A topic is measured where its consumer receives it; a topic nobody consumes
        (order_results) where it is published. An instance that restarted counts from 0 again
        (its start time is part of the key), so a restart never shows as a negative rate.
        """
        out: dict[str, list[dict[str, float]]] = {t.value: [] for t in Topic}
        pts = list(self.points)
        j = 0
        for cur in pts[1:]:
            # Compare with the newest point at least ``window_ms`` older: instances report
            # every 2 s, so a shorter window would show their reports, not the traffic.
            while j + 1 < len(pts) and pts[j + 1].t_ms <= cur.t_ms - self.window_ms:
                j += 1
            prev = pts[j]
            if prev is cur:
                continue
            dt = max((cur.t_ms - prev.t_ms) / 1000.0, 1e-3)
            delta: dict[tuple[str, str, str], int] = {}
            for (who, topic, direction, shape), n in cur.shapes.items():
                d = n - prev.shapes.get((who, topic, direction, shape), 0)
                if d > 0:
                    k = (topic, direction, shape)
                    delta[k] = delta.get(k, 0) + d
            for topic in Topic:
                direction = "received" if topic in _CONSUMER_OF else "published"
                legacy = delta.get((topic.value, direction, "legacy"), 0)
                total = legacy + delta.get((topic.value, direction, "v1.0"), 0)
                out[topic.value].append(
                    {"t_ms": cur.t_ms, "rate": total / dt, "legacy_share": legacy / total if total else -1.0}
                )
        return out


def _mode(start: dict[str, Any]) -> str:
    return f"{start['path']}/{start['profile']}" if start["profile"] else str(start["path"])
