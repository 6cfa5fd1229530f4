"""Closed sets of the pipeline (topics, paths, profiles) and the one place key names are made.

No module outside this one builds a Redis key name: a hash tag, a partition
suffix or an isolation prefix is added here alone.

Partitions (``TOPIC_PARTITIONS=N``, docs/scaling.md): a message of symbol ``s`` goes
to partition :func:`partition_of` ``(s, N)`` = ``zlib.crc32(s.encode("utf-8")) % N``,
the same in every process, host and Python version (unlike ``hash()``, which is
salted per process). Partition ``p`` of a topic is the stream ``<topic>_stream:p<p>``;
with ``N = 1`` the names are exactly the single-server ones (``<topic>_stream``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CodecPath", "KeySpace", "Profile", "RedisMode", "ServiceName", "Topic", "partition_of"]


class Topic(StrEnum):
    """A topic of the pipeline; its value is the Pub/Sub channel name."""

    MARKET_DATA = "market_data"
    SIGNALS = "signals"
    ORDERS = "orders"
    ORDER_RESULTS = "order_results"

    @property
    def partition_key(self) -> str:
        """The message field whose value picks the partition (:func:`partition_of`): the
        symbol on every topic, since per-symbol order is what the services need."""
        return _PARTITION_KEYS[self]


_PARTITION_KEYS: dict[Topic, str] = {
    Topic.MARKET_DATA: "symbol",
    Topic.SIGNALS: "symbol",
    Topic.ORDERS: "symbol",
    Topic.ORDER_RESULTS: "symbol",
}


class CodecPath(StrEnum):
    """Which code path decodes and encodes messages."""

    LEGACY = "legacy"
    PYDANTIC = "pydantic"


class Profile(StrEnum):
    """How strict the Pydantic path is about fields added in v1.0."""

    LENIENT = "lenient"
    STRICT = "strict"


class RedisMode(StrEnum):
    """Which Redis deployment the pipeline talks to (``REDIS_MODE``)."""

    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


def partition_of(symbol: str, partitions: int) -> int:
    """The partition of ``symbol`` among ``partitions``: CRC-32 of its UTF-8 bytes, modulo.

    Stable by construction (no per-process salt), so every producer of every version
    sends a symbol to the same partition and per-symbol order holds.
    """
    if partitions <= 1:
        return 0
    return zlib.crc32(symbol.encode("utf-8")) % partitions


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
    ``partitions`` > 1 splits every topic stream into ``<topic>_stream:p<p>``;
    the channel and the dead-letter stream stay one key per topic.
    """

    prefix: str = ""
    partitions: int = 1

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, not {self.partitions}")

    def partition(self, symbol: str) -> int:
        """The partition ``symbol`` belongs to (:func:`partition_of`)."""
        return partition_of(symbol, self.partitions)

    def with_partitions(self, partitions: int) -> KeySpace:
        """The same key space split into ``partitions`` partitions."""
        return KeySpace(self.prefix, partitions)

    def channel(self, topic: Topic) -> str:
        """The Pub/Sub channel of ``topic``."""
        return f"{self.prefix}{topic.value}"

    def stream(self, topic: Topic, partition: int = 0) -> str:
        """The Redis Stream that carries ``topic`` (partition ``partition``) durably."""
        base = f"{self.prefix}{topic.value}_stream"
        if self.partitions == 1:
            return base
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is not in 0..{self.partitions - 1}")
        return f"{base}:p{partition}"

    def streams(self, topic: Topic) -> list[str]:
        """Every partition stream of ``topic``, partition 0 first."""
        return [self.stream(topic, p) for p in range(self.partitions)]

    def stream_pattern(self, topic: Topic) -> str:
        """A key pattern (ACL, SCAN) matching every partition stream of ``topic``, whatever the count."""
        return f"{self.prefix}{topic.value}_stream*"

    def published_marker(self, topic: Topic, message_id: str, partition: int = 0) -> str:
        """The key recording that message ``message_id`` of ``topic`` reached partition
        ``partition``'s stream (its value: the stream id). It hashes to the stream's cluster
        slot (the stream's own hash tag, or the stream's name as one), so a single script may
        check it and append to the stream atomically on a cluster too."""
        return f"{self._slot_tag(self.stream(topic, partition))}:published:{message_id}"

    def published_pattern(self, topic: Topic, partition: int = 0) -> str:
        """A key pattern (ACL, SCAN) matching every :meth:`published_marker` of one partition stream."""
        return f"{self._slot_tag(self.stream(topic, partition))}:published:*"

    def _slot_tag(self, key: str) -> str:
        # Redis hashes only the part between the first "{" and the next "}" when both exist.
        # A key without braces is wrapped whole, after the prefix (so the prefix still leads
        # and scopes the name): "<prefix>{<key>}:..." shares the slot of "<key>". A key with
        # braces keeps its own tag (prefix "{cdb}:" puts the whole pipeline in one slot).
        if "{" not in key and "}" not in key:
            return f"{self.prefix}{{{key}}}"
        return key

    def dlq(self, topic: Topic) -> str:
        """The dead-letter stream for messages of ``topic`` that could not be handled."""
        return f"{self.prefix}{topic.value}_dlq"

    def dlq_replayed(self, topic: Topic) -> str:
        """A hash of the dead letters of ``topic`` replayed but kept (dead-letter id -> stream id)."""
        return f"{self.prefix}{topic.value}_dlq_replayed"

    def dlq_replay_lock(self, topic: Topic) -> str:
        """Held (SET NX PX, renewed while it runs) by the one replay or catch-up of the dead
        letters of ``topic`` under way; its value names who runs it and since when."""
        return f"{self.prefix}{topic.value}_dlq_replay_lock"

    def group(self, service: ServiceName) -> str:
        """The consumer group a service reads its input stream with."""
        return f"{self.prefix}cdb-{service.value}"

    def status(self, service: ServiceName, instance: str) -> str:
        """The key where a running instance reports its live state."""
        return f"{self.prefix}cdb:status:{service.value}:{instance}"

    def lease(self, service: ServiceName, partition: int) -> str:
        """The lease naming the instance of ``service`` that owns ``partition`` now (SET NX PX).

        It shares the cluster slot of the partition's input stream (the stream's hash tag, as
        :meth:`published_marker`), so one script can check the lease and read or acknowledge
        the stream atomically (:mod:`core.redis.fence`)."""
        topic = service.consumes
        if topic is None:
            raise ValueError(f"{service.value} reads no stream, so it has no partition leases")
        return f"{self._slot_tag(self.stream(topic, partition))}:lease:{service.value}"

    def leases(self, service: ServiceName) -> list[str]:
        """Every partition lease of ``service`` (ACL rules name them one by one)."""
        return [self.lease(service, p) for p in range(self.partitions)]

    def lease_pattern(self, service: ServiceName) -> str:
        """A key pattern (SCAN) matching every partition lease of ``service``."""
        return f"{self.prefix}*:lease:{service.value}"

    def lease_setting(self, service: ServiceName) -> str:
        """The lease TTL every instance of ``service`` must use, recorded by the first (SETNX)."""
        return f"{self.prefix}cdb:topology:{service.value}"

    def instance_claim(self, service: ServiceName, instance: str) -> str:
        """Held (SET NX PX, refreshed while it runs) by the one live process named ``instance``
        of ``service``: a second process with that name is refused at start."""
        return f"{self.prefix}cdb:instance:{service.value}:{instance}"

    def members(self, service: ServiceName) -> str:
        """A sorted set of the live instances of ``service`` (score: when each one expires)."""
        return f"{self.prefix}cdb:members:{service.value}"

    def source_positions(self) -> str:
        """The hash where ws keeps how far each source got (field: the source's identity)."""
        return f"{self.prefix}cdb:ws:positions"

    def topology(self) -> str:
        """The pipeline's partition count, written by the first instance that starts."""
        return f"{self.prefix}cdb:topology"

    def status_pattern(self) -> str:
        """A SCAN pattern that matches every live-state key of this key space."""
        return f"{self.prefix}cdb:status:*"

    def all_keys_pattern(self) -> str:
        """A SCAN pattern for every key of this key space (only meaningful with a prefix)."""
        return f"{self.prefix}*"
