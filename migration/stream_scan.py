"""Evidence from the streams themselves: does any entry a strict consumer could still read,
or any entry the current producers wrote, lack ``api_version`` or ``timestamp``?

Which entries are scanned (``since="auto"``): from the oldest of

- the first entry the topic's **current producer instances** could have written
  (the earliest ``started_ms`` among them): evidence about what producers send now;
- the first entry the consuming service's group has **not finished** (undelivered,
  i.e. after its ``last-delivered-id``, or still pending): what a consumer switched
  to strict would still have to decode;

capped at the newest ``limit`` entries. Older entries were written by earlier
producer instances and are already consumed: they cannot reach a strict consumer.
``since="all"`` scans the newest ``limit`` entries regardless. A field whose value
is JSON ``null`` counts as missing (strict refuses it too).

Stream ids are the Redis server's wall-clock ms and ``started_ms`` the service's:
on one host (docker compose) they agree; across hosts, clock skew shifts the start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from core.topics import KeySpace, ServiceName, Topic

if TYPE_CHECKING:  # core.redis imports the codec, whose registry imports migration
    from core.redis.modes import AsyncClient

__all__ = ["REQUIRED_FIELDS", "MissingFields", "StreamScan", "consumer_of", "producer_of", "scan_topic"]

REQUIRED_FIELDS = ("api_version", "timestamp")
"""What the strict profile requires that legacy producers omit."""

MAX_EXAMPLES = 5


def producer_of(topic: Topic) -> ServiceName:
    """The service that writes ``topic``."""
    return next(s for s in ServiceName if s.produces is topic)


def consumer_of(topic: Topic) -> ServiceName | None:
    """The pipeline service that reads ``topic`` (none for ``order_results``)."""
    return next((s for s in ServiceName if s.consumes is topic), None)


@dataclass(frozen=True, slots=True)
class MissingFields:
    """One stream entry that lacks some of :data:`REQUIRED_FIELDS`."""

    stream_id: str
    missing: tuple[str, ...]


@dataclass
class StreamScan:
    """What the scan of one topic stream found."""

    topic: Topic
    producer: ServiceName
    start: str
    start_reason: str
    scanned: int = 0
    offenders: int = 0
    examples: list[MissingFields] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no scanned entry lacks a required field."""
        return self.offenders == 0

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        return {
            "topic": self.topic.value,
            "stream_producer": self.producer.value,
            "start": self.start,
            "start_reason": self.start_reason,
            "scanned": self.scanned,
            "lacking": self.offenders,
            "examples": [{"stream_id": e.stream_id, "missing": list(e.missing)} for e in self.examples],
        }


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def missing_fields(fields: Mapping[Any, Any]) -> tuple[str, ...]:
    """The required fields ``fields`` (a stream entry) lacks or holds as ``null``."""
    present = {_text(k): _text(v).strip() for k, v in fields.items()}
    return tuple(name for name in REQUIRED_FIELDS if present.get(name, "null") == "null")


async def _group_start(redis: AsyncClient, stream: str, group: str) -> tuple[str, str] | None:
    """(XRANGE start, reason) of the first entry ``group`` has not finished; None if all finished."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None  # no stream: nothing to read
    info = next((g for g in groups if _text(g["name"]) == group), None)
    if info is None:
        return "-", f"group {group} does not exist yet: every entry is still to be read"
    summary = await redis.xpending(stream, group)
    if summary and int(summary.get("pending", 0)) > 0 and summary.get("min"):
        return _text(summary["min"]), f"oldest entry pending in {group}"
    return "(" + _text(info["last-delivered-id"]), f"entries not yet delivered to {group}"


async def _start(
    redis: AsyncClient,
    keys: KeySpace,
    topic: Topic,
    stream: str,
    *,
    producer_started_ms: int | None,
    since_all: bool,
) -> tuple[str, str]:
    if since_all:
        return "-", "--since all"
    candidates: list[tuple[str, str]] = []
    if producer_started_ms is None:
        candidates.append(("-", f"no live {producer_of(topic).value} instance"))
    else:
        candidates.append(
            (f"{producer_started_ms}-0", f"start of the current {producer_of(topic).value} instances")
        )
    consumer = consumer_of(topic)
    if consumer is not None:
        group = await _group_start(redis, stream, keys.group(consumer))
        if group is not None:
            candidates.append(group)
    return min(candidates, key=_start_order)


def _start_order(item: tuple[str, str]) -> tuple[int, int]:
    start = item[0].lstrip("(")
    return (-1, -1) if start == "-" else _id_key(start)


async def scan_topic(
    redis: AsyncClient,
    keys: KeySpace,
    topic: Topic,
    *,
    limit: int,
    producer_started_ms: int | None,
    since_all: bool = False,
) -> StreamScan:
    """Scan ``topic``'s stream (see the module docstring for which entries); with several
    partitions each partition stream is scanned the same way (``limit`` newest each) and the
    results add up; ``start`` is then the earliest start of any partition."""
    starts = [
        await _start(redis, keys, topic, stream, producer_started_ms=producer_started_ms, since_all=since_all)
        for stream in keys.streams(topic)
    ]
    first = min(range(len(starts)), key=lambda p: _start_order(starts[p]))
    reason = starts[first][1] + (f" (partition {first})" if keys.partitions > 1 else "")
    result = StreamScan(topic, producer_of(topic), starts[first][0], reason)
    if limit > 0:
        for stream, (start, _) in zip(keys.streams(topic), starts, strict=True):
            await _scan_stream(redis, stream, start, limit, result)
    return result


async def _scan_stream(redis: AsyncClient, stream: str, start: str, limit: int, result: StreamScan) -> None:
    entries: Any = await redis.xrevrange(stream, max="+", min=start, count=limit)
    for raw_id, fields in entries:  # newest first: the examples show what still happens
        result.scanned += 1
        missing = missing_fields(fields)
        if missing:
            result.offenders += 1
            if len(result.examples) < MAX_EXAMPLES:
                result.examples.append(MissingFields(_text(raw_id), missing))
