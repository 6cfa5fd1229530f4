"""Closed sets of the pipeline (topics, paths, profiles) and the one place key names are made.

No module outside this one builds a Redis key name: a hash tag, a partition
suffix or an isolation prefix is added here alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["KeySpace", "Path", "Profile", "ServiceName", "Topic"]


class Topic(StrEnum):
    """A topic of the pipeline; its value is the Pub/Sub channel name."""

    MARKET_DATA = "market_data"
    SIGNALS = "signals"
    ORDERS = "orders"
    ORDER_RESULTS = "order_results"


class Path(StrEnum):
    """Which code path decodes and encodes messages."""

    LEGACY = "legacy"
    PYDANTIC = "pydantic"


class Profile(StrEnum):
    """How strict the Pydantic path is about fields added in v1.0."""

    LENIENT = "lenient"
    STRICT = "strict"


class ServiceName(StrEnum):
    """The four services, in pipeline order."""

    WS = "ws"
    SIGNAL = "signal"
    RISK = "risk"
    EXECUTION = "execution"

    @property
    def consumes(self) -> Topic | None:
        """The topic this service reads (ws reads the exchange, not Redis)."""
        return _CONSUMES[self]

    @property
    def produces(self) -> Topic:
        """The topic this service publishes."""
        return _PRODUCES[self]

    @property
    def dead_letters(self) -> Topic:
        """The topic whose dead-letter stream this service writes: its input's, or for ws
        (which reads the exchange, not Redis) its output's, where bad exchange frames go."""
        return _CONSUMES[self] or _PRODUCES[self]


_CONSUMES: dict[ServiceName, Topic | None] = {
    ServiceName.WS: None,
    ServiceName.SIGNAL: Topic.MARKET_DATA,
    ServiceName.RISK: Topic.SIGNALS,
    ServiceName.EXECUTION: Topic.ORDERS,
}
_PRODUCES: dict[ServiceName, Topic] = {
    ServiceName.WS: Topic.MARKET_DATA,
    ServiceName.SIGNAL: Topic.SIGNALS,
    ServiceName.RISK: Topic.ORDERS,
    ServiceName.EXECUTION: Topic.ORDER_RESULTS,
}


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Builds every Redis key name; ``prefix`` isolates one pipeline from another.

    With the empty prefix the names are the ones the legacy pipeline used:
    ``market_data`` (channel), ``market_data_stream``, ``market_data_dlq``.
    """

    prefix: str = ""

    def channel(self, topic: Topic) -> str:
        """The Pub/Sub channel of ``topic``."""
        return f"{self.prefix}{topic.value}"

    def stream(self, topic: Topic) -> str:
        """The Redis Stream that carries ``topic`` durably."""
        return f"{self.prefix}{topic.value}_stream"

    def dlq(self, topic: Topic) -> str:
        """The dead-letter stream for messages of ``topic`` that could not be handled."""
        return f"{self.prefix}{topic.value}_dlq"

    def dlq_replayed(self, topic: Topic) -> str:
        """A hash of the dead letters of ``topic`` replayed but kept (dead-letter id -> stream id)."""
        return f"{self.prefix}{topic.value}_dlq_replayed"

    def group(self, service: ServiceName) -> str:
        """The consumer group a service reads its input stream with."""
        return f"{self.prefix}cdb-{service.value}"

    def status(self, service: ServiceName, instance: str) -> str:
        """The key where a running instance reports its live state."""
        return f"{self.prefix}cdb:status:{service.value}:{instance}"

    def status_pattern(self) -> str:
        """A SCAN pattern that matches every live-state key of this key space."""
        return f"{self.prefix}cdb:status:*"

    def all_keys_pattern(self) -> str:
        """A SCAN pattern for every key of this key space (only meaningful with a prefix)."""
        return f"{self.prefix}*"
