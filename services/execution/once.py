"""Publishing an order result at most once per order, whatever fails around it.

Execution stores a result, publishes it, then marks it published in the database
(:mod:`services.execution.store`). The database step can fail after the publish
went through; the order is then redelivered and would be published again. So the
publish itself is made idempotent in Redis: one script checks a per-order marker
(:meth:`KeySpace.published_marker`, holding the stream id) and, only when it is
absent, appends the result to the stream, sets the marker and publishes on the
channel -- atomically, because a script runs as one command. A retry after a lost
reply, a redelivery after a database failure, or a second instance racing for the
same order all get the first stream id back and add nothing.

The marker lives next to the stream (same cluster slot: one script may touch both)
and expires after ``marker_ttl_s`` (7 days by default): the database's
``published_stream_id`` is the lasting record; the marker only has to outlive the
time it takes the database to come back and take the mark.

With replica acknowledgement (``REDIS_WAIT_REPLICAS``) the script is followed by
``WAIT`` on the same connection; too few acknowledgements raise
:class:`~core.errors.NotReplicatedError`, the order is retried, and the script finds
the marker (still on the primary) or, after a fail-over that lost both, publishes anew.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.codec import FieldMap, Message
from core.errors import NotReplicatedError, TransportError
from core.redis.publisher import Publisher
from core.redis.retry import call_async
from core.redis.scripts import LuaScript
from core.redis.sync_publish import message_partition, wall_ms
from core.topics import Topic

__all__ = ["DEFAULT_MARKER_TTL_S", "OncePublisher", "Published"]

DEFAULT_MARKER_TTL_S = 7 * 24 * 3600
"""How long a published-marker outlives its publish (longer than any database outage we ride out)."""

# KEYS[1] stream, KEYS[2] marker; ARGV: channel, body, marker ttl s, n trim args, trim args..., fields...
# A marker whose entry is gone from the stream's tail (ids newer than the first entry still
# there) was lost with it (the server restarted from an older snapshot, a fail-over to a
# replica behind): append again. One older than the first entry was trimmed: published.
_ONCE = """
local function key(s)
  local ms, seq = string.match(s, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local id = redis.call('GET', KEYS[2])
if id then
  if #redis.call('XRANGE', KEYS[1], id, id) > 0 then
    return {id, 0}
  end
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if first then
    local ms, seq = key(id)
    local fms, fseq = key(first[1])
    if ms < fms or (ms == fms and seq < fseq) then
      return {id, 0}
    end
  end
end
local n = tonumber(ARGV[4])
local args = {KEYS[1]}
for i = 5, 4 + n do args[#args + 1] = ARGV[i] end
args[#args + 1] = '*'
for i = 5 + n, #ARGV do args[#args + 1] = ARGV[i] end
id = redis.call('XADD', unpack(args))
redis.call('SET', KEYS[2], id, 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return {id, 1}
"""
_ONCE_SCRIPT = LuaScript(_ONCE)


@dataclass(frozen=True, slots=True)
class Published:
    """Where a result is on the stream, and whether this call put it there (``False``: an
    earlier call had, and nothing was added)."""

    stream_id: str
    new: bool


class OncePublisher:
    """Publishes messages of one topic at most once per id, with the publisher's codec,
    keys, trimming, retry policy and replica acknowledgement."""

    def __init__(
        self, publisher: Publisher, topic: Topic, *, marker_ttl_s: int = DEFAULT_MARKER_TTL_S
    ) -> None:
        if marker_ttl_s <= 0:
            raise ValueError(f"marker_ttl_s must be > 0, got {marker_ttl_s}")
        self.publisher = publisher
        self.topic = topic
        self.marker_ttl_s = marker_ttl_s

    async def publish(self, message_id: str, message: Message) -> Published:
        """Publish ``message`` unless ``message_id`` was published before; either way return
        its stream id. Safe to call again after any failure (connection lost mid-call,
        :class:`~core.errors.TransportError`, a crash before the caller recorded the id).
        """
        pub, topic = self.publisher, self.topic
        body, fields = pub.codec.encode(topic, message), pub.codec.to_fields(topic, message)
        partition = message_partition(pub.keys, topic, message)
        stream = pub.keys.stream(topic, partition)
        marker = pub.keys.published_marker(topic, message_id, partition)
        wait = pub.wait_replicas
        replies: list[Any] = []

        async def send() -> None:
            replies.clear()
            trim = pub.trim.args(wall_ms())
            args: list[str | bytes] = [pub.keys.channel(topic), body, str(self.marker_ttl_s)]
            args += [str(len(trim)), *trim]
            for name, value in fields.items():
                args += (name, value)
            then = [["WAIT", str(wait), str(pub.wait_timeout_ms)]] if wait else []
            replies.extend(await _ONCE_SCRIPT.send(pub.redis, 2, stream, marker, *args, then=then))

        if _in_process(pub.redis):
            replies.append(await self._without_scripts(stream, marker, body, fields))
        else:
            await call_async(pub.retry, f"publish {topic.value} {message_id}", send)
        outcome = replies[0]
        if isinstance(outcome, Exception):
            raise TransportError(f"Redis refused the publish of {topic.value} {message_id}: {outcome}")
        raw_id, added = outcome
        stream_id = raw_id.decode("ascii") if isinstance(raw_id, bytes) else str(raw_id)
        if wait:
            acked = replies[1]
            if isinstance(acked, Exception):
                raise TransportError(f"Redis refused WAIT after a publish to {topic.value}: {acked}")
            if int(acked) < wait:
                raise NotReplicatedError(topic.value, [0], wait, int(acked))
        if added and pub.metrics is not None:
            pub.metrics.count_published(topic, pub.codec.path, 1)
        return Published(stream_id, bool(added))

    async def _without_scripts(self, stream: str, marker: str, body: bytes, fields: FieldMap) -> list[Any]:
        # Embedded fakeredis (``cdb run`` without REDIS_URL) has no Lua. It lives in this very
        # process, so nothing can fail between the steps: the same check-append-mark in order.
        pub = self.publisher
        existing = await pub.redis.get(marker)
        if existing is not None:
            return [existing, 0]
        stream_id = await pub.redis.xadd(stream, fields, **pub.trim.xadd_kwargs(wall_ms()))  # type: ignore[arg-type]
        await pub.redis.set(marker, stream_id, ex=self.marker_ttl_s)
        await pub.redis.publish(pub.keys.channel(self.topic), body)
        return [stream_id, 1]


def _in_process(redis: object) -> bool:
    return type(redis).__module__.startswith("fakeredis")
