"""Operator metrics of one service instance: wire shapes, business events, sources, identity.

What an operator watches during the migration besides the decode counters of
:mod:`core.metrics`:

- ``cdb_wire_shape_total{service,topic,direction,shape}``: messages by wire shape, received
  (a stream entry without an ``api_version`` field is ``legacy``-shaped) and published (the
  legacy path writes legacy-shaped messages, the Pydantic path v1.0 ones);
- ``cdb_events_total{service,event}``: the business counters of live status (signals,
  orders, fills, duplicate orders skipped, ...), one closed set of event names;
- ``cdb_source_*{service,source}``: the ws source's bad frames (by reason), reconnects and
  refused symbols, read from the source's own statistics when scraped;
- ``cdb_instance_info`` / ``cdb_desired_path_info``: the path, profile, shadow mode and
  partitions the instance runs with, and the path its env file asks for (an alert fires when
  they differ: a flag was edited but the container not recreated);
- ``cdb_instance_start_time_seconds``, ``cdb_heartbeat_timestamp_seconds`` (old: the
  instance hangs) and ``cdb_build_info``.

The instance's own name is the label ``instance_name``: Prometheus sets ``instance`` to the
scraped address, which the alert rules join on.

Every label value comes from a closed set (or is the instance's own name, one per process).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.metric_families import Families, samples
from core.topics import Topic

__all__ = [
    "KNOWN_EVENTS",
    "KNOWN_SOURCE_REASONS",
    "OTHER_EVENT",
    "Direction",
    "OperatorMetrics",
    "Shape",
    "SourceStats",
    "bounded_event",
    "shape_of_fields",
    "shape_of_path",
]

_OTHER = "other"
OTHER_EVENT = _OTHER
"""The label value of a business event (or source reason) outside the closed set."""


class Shape(StrEnum):
    """The wire shape of a message: what a cutover to strict must see no more of, and the rest."""

    LEGACY = "legacy"
    """No ``api_version`` field: written by a legacy producer (or an old one)."""
    V1 = "v1.0"
    """Carries ``api_version`` (the v1.0 contracts)."""


class Direction(StrEnum):
    """Whether a message was received from a stream or published to it."""

    RECEIVED = "received"
    PUBLISHED = "published"


KNOWN_EVENTS: frozenset[str] = frozenset(
    {
        "signals",  # signal: signals fired
        "orders",  # risk: orders approved
        "rejections",  # risk: signals rejected by a limit
        "fills",  # execution: fills
        "rejected_orders",  # execution: orders the venue rejected
        "duplicate_orders",  # execution: orders already executed, skipped (exactly once)
        "trades_published",  # ws: trades published
        "trades_resent",  # ws: trades re-sent because the replicas did not confirm them
        "bad_frames",  # ws: trades or frames dead-lettered
        "replay_skipped",  # a partition's state rebuild skipped an entry it could not apply
        "partition_worker_failures",  # a partition worker ended with an error and was restarted
    }
)
"""Business counter names that are label values as they are; any other becomes ``other``."""

KNOWN_SOURCE_REASONS: frozenset[str] = frozenset(
    {
        "protobuf_invalid",
        "body_unexpected",
        "control_invalid",
        "control_unexpected",
        "symbol_invalid",
        "symbol_unknown",
        "side_invalid",
        "time_invalid",
        "venue_invalid",
        "price_invalid",
        "quantity_invalid",
        "volume_invalid",
        "trade_type_unknown",
        "symbol_unexpected",
        "frame_too_big",
        "text_invalid",
    }
)
"""Source bad-frame reasons kept as label values; any other becomes ``other``."""


def bounded_event(name: str) -> str:
    """``name`` if it is a known business event, else ``other``."""
    return name if name in KNOWN_EVENTS else _OTHER


def shape_of_fields(fields: Mapping[bytes, Any]) -> Shape:
    """The wire shape of one stream entry's field map (rule: no ``api_version`` = legacy)."""
    return Shape.V1 if b"api_version" in fields else Shape.LEGACY


def shape_of_path(path: str) -> Shape:
    """The wire shape a producer on ``path`` writes."""
    return Shape.LEGACY if path == "legacy" else Shape.V1


SourceStats = Callable[[], Mapping[str, Any]]
"""Returns a source's statistics: ``reconnects`` (int), ``refused_symbols`` (int) and
``bad_frames_by_reason`` (reason -> int); read at every scrape and status report."""


class _SourceCollector(Collector):
    """Turns the statistics of the sources an instance reads into metric families at scrape time."""

    def __init__(self, service: str, namespace: str) -> None:
        self.service = service
        self.ns = namespace
        self.sources: dict[str, SourceStats] = {}

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on which sources are watched; collected lazily

    def collect(self) -> Iterator[Metric]:
        frames = CounterMetricFamily(
            f"{self.ns}_source_bad_frames",
            "Frames from the exchange (or rows of a replay) that did not decode, by reason.",
            labels=["service", "source", "reason"],
        )
        reconnects = CounterMetricFamily(
            f"{self.ns}_source_reconnects", "Reconnections to the source.", labels=["service", "source"]
        )
        refused = GaugeMetricFamily(
            f"{self.ns}_source_refused_symbols",
            "Symbols the source refused to stream (never retried).",
            labels=["service", "source"],
        )
        for source, stats in sorted(self.sources.items()):
            s = _read(stats)
            reconnects.add_metric([self.service, source], s["reconnects"])
            refused.add_metric([self.service, source], s["refused_symbols"])
            for reason, n in sorted(s["bad_frames_by_reason"].items()):
                frames.add_metric([self.service, source, reason], n)
        yield from (frames, reconnects, refused)


def _read(stats: SourceStats) -> dict[str, Any]:
    """A source's statistics now, as whole numbers, its bad-frame reasons bounded."""
    now = stats()
    return {
        "reconnects": int(now.get("reconnects", 0)),
        "refused_symbols": int(now.get("refused_symbols", 0)),
        "bad_frames_by_reason": _bounded_reasons(now.get("bad_frames_by_reason", {})),
    }


def _bounded_reasons(by_reason: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for reason, n in by_reason.items():
        label = reason if reason in KNOWN_SOURCE_REASONS else _OTHER
        out[label] = out.get(label, 0) + int(n)
    return out


class OperatorMetrics:
    """The operator metrics of one instance, on the same registry as its :class:`ServiceMetrics`."""

    def __init__(self, service: str, registry: CollectorRegistry, namespace: str = "cdb") -> None:
        self.service = service
        f = Families(registry, namespace)
        self.wire_shape = f.counter(
            "wire_shape",
            "Messages by wire shape (legacy: no api_version field; v1.0), received or published.",
            ["service", "topic", "direction", "shape"],
        )
        self.events = f.counter(
            "events",
            "Business events (signals, orders, fills, duplicates skipped, ...).",
            ["service", "event"],
        )
        self.instance = f.info(
            "instance",
            "What this instance runs with: path, profile, shadow mode, partitions.",
            ["service", "instance_name"],
        )
        self.desired = f.info(
            "desired_path",
            "The path and profile this instance's env file (FLAGS_FILE) asks for now.",
            ["service", "instance_name"],
        )
        self.started = f.gauge(
            "instance_start_time_seconds",
            "When this instance started (Unix time).",
            ["service", "instance_name"],
        )
        self.heartbeat = f.gauge(
            "heartbeat_timestamp_seconds",
            "When the instance's event loop last beat (every 2 s): a hung instance stops beating "
            "while its metrics thread still answers.",
            ["service"],
        )
        self.build = f.info("build", "The cdb-contracts build this process runs.")
        self._sources = _SourceCollector(service, namespace)
        registry.register(self._sources)
        self._instance = ""
        self.desired_path: str | None = None
        """The path the env file asks for (None: no FLAGS_FILE); also in live status."""

    def expect_input(self, topic: Topic) -> None:
        """Export the received wire-shape series of ``topic`` (both shapes) at 0 now, so that the
        first legacy-shaped entry is an increase (``CdbLegacyTrafficAfterCutover``)."""
        for shape in Shape:
            self.wire_shape.labels(self.service, topic.value, Direction.RECEIVED.value, shape.value)

    def count_received(self, topic: Topic, entries: Sequence[tuple[bytes, Mapping[bytes, Any]]]) -> None:
        """Count a batch of stream entries by wire shape (deleted entries, with no fields, are not)."""
        legacy = v1 = 0
        for _, fields in entries:
            if fields:
                if b"api_version" in fields:
                    v1 += 1
                else:
                    legacy += 1
        for shape, n in ((Shape.LEGACY, legacy), (Shape.V1, v1)):
            if n:
                self.wire_shape.labels(self.service, topic.value, Direction.RECEIVED.value, shape.value).inc(
                    n
                )

    def count_published(self, topic: Topic, path: str, n: int) -> None:
        """Count ``n`` messages published on ``path`` by the shape that path writes."""
        if n:
            shape = shape_of_path(path).value
            self.wire_shape.labels(self.service, topic.value, Direction.PUBLISHED.value, shape).inc(n)

    def count_event(self, name: str, by: int = 1) -> None:
        """Add to a business counter (``name`` bounded to :data:`KNOWN_EVENTS`)."""
        if by:
            self.events.labels(self.service, bounded_event(name)).inc(by)

    def watch_source(self, source: str, stats: SourceStats) -> None:
        """Report ``source``'s statistics (``replay`` or ``mexc``) at every scrape."""
        self._sources.sources[source] = stats

    def describe_instance(
        self,
        instance: str,
        *,
        path: str,
        profile: str | None,
        shadow: bool,
        partitions: int,
        started_ms: int,
        version: str,
    ) -> None:
        """Set the instance, start time and build info (once, at start)."""
        self._instance = instance
        self.instance.labels(self.service, instance).info(
            {
                "path": path,
                "profile": profile or "none",
                "shadow": "true" if shadow else "false",
                "partitions": str(partitions),
            }
        )
        self.started.labels(self.service, instance).set(started_ms / 1000.0)
        self.build.info({"version": version, "python": platform.python_version()})

    def beat(self, at_s: float) -> None:
        """Record a heartbeat of the event loop at Unix time ``at_s``."""
        self.heartbeat.labels(self.service).set(at_s)

    def set_desired(self, path: str, profile: str | None) -> None:
        """Record the path its env file asks for now (``unknown`` when the file cannot be read)."""
        self.desired_path = path
        self.desired.labels(self.service, self._instance).info({"path": path, "profile": profile or "none"})

    def snapshot(self) -> dict[str, Any]:
        """The counts for live status: ``wire_shape`` (``"<direction>.<topic>.<shape>"`` -> int, not 0),
        ``events`` (event -> int) and ``sources`` (source -> its statistics)."""
        shapes: dict[str, int] = {}
        for labels, value in samples(self.wire_shape):
            if not value:
                continue  # a series exported at 0 from the start (expect_input): nothing seen yet
            key = f"{labels['direction']}.{labels['topic']}.{labels['shape']}"
            shapes[key] = shapes.get(key, 0) + value
        sources = {name: _read(stats) for name, stats in self._sources.sources.items()}
        out: dict[str, Any] = {"wire_shape": shapes, "sources": sources}
        if self.desired_path is not None:
            out["desired_path"] = self.desired_path
        return out
