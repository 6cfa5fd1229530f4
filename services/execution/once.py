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

Under a partition lease (:class:`~core.redis.guarded.LeaseGuard`, execution's batch step) each
script first checks that the lease still holds its owner and writes nothing otherwise: a stale
owner publishes no result, with no round trip of its own for the check and no window between
check and write. A Redis Cluster keeps the lease in another slot than the results, so there the
lease is read first (one ``GET``), as :mod:`core.redis.guarded` does for outputs.

A batch goes out in one round trip (:meth:`OncePublisher.publish_many`): every script of a
partition stream pipelined by hash (``EVALSHA``; the calls a server without the script refuses
are sent again with the source, :meth:`core.redis.scripts.LuaScript.send_many`), each message's
outcome its own: one that cannot be encoded, or whose script Redis refuses, fails alone.

With replica acknowledgement (``REDIS_WAIT_REPLICAS``) the scripts are followed by one
``WAIT`` on the same connection; too few acknowledgements raise
:class:`~core.errors.NotReplicatedError` (for the whole batch), the orders are retried, and the
script finds the marker (still on the primary) or, after a fail-over that lost both, publishes anew.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.codec import FieldMap, Message
from core.errors import NotReplicatedError, TransportError
from core.redis.guarded import LeaseGuard, script_guard
from core.redis.modes import reply_text
from core.redis.outbox import utf8_checked
from core.redis.publisher import Publisher
from core.redis.retry import call_async
from core.redis.scripts import LuaScript
from core.redis.sync_publish import message_partition, wall_ms
from core.topics import Topic

__all__ = ["DEFAULT_MARKER_TTL_S", "OncePublisher", "Published"]

DEFAULT_MARKER_TTL_S = 7 * 24 * 3600
"""How long a published-marker outlives its publish (longer than any database outage we ride out)."""

# KEYS[1] stream, KEYS[2] marker[, KEYS[3] lease]; ARGV: channel, body, marker ttl s, n trim args,
# trim args..., fields...[, lease owner]. With a lease, nothing is read or written unless it holds
# the owner ({holder, -1}). A marker whose entry is gone from the stream's tail (ids newer than
# the first entry still there) was lost with it (the server restarted from an older snapshot, a
# fail-over to a replica behind): append again. One older than the first entry was trimmed:
# published.
_ONCE = """
if #KEYS > 2 then
  local holder = redis.call('GET', KEYS[3])
  if holder ~= ARGV[#ARGV] then
    return {holder or '', -1}
  end
end
local last = #ARGV - (#KEYS - 2)
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
for i = 5 + n, last do args[#args + 1] = ARGV[i] end
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
        Raises what :meth:`publish_many` reports for it.
        """
        outcome = (await self.publish_many([(message_id, message)]))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def publish_many(
        self, items: Sequence[tuple[str, Message]], guard: LeaseGuard | None = None
    ) -> list[Published | Exception]:
        """:meth:`publish` for each ``(message_id, message)``, the scripts of all of them in one
        round trip (one per partition stream; ``WAIT`` after them on the same connection).
        ``guard``: only while this lease is held; otherwise :class:`~core.errors.LeaseLostError`
        (for the whole call) and nothing is written.

        Returns one outcome per item, in order: its :class:`Published`, or the error that is its
        own (a :class:`~core.errors.ContractError` when it cannot be encoded or written, a
        :class:`~core.errors.TransportError` when Redis refused its script), which affects no
        other item. Raises :class:`~core.errors.TransportError` (nothing is known of any item)
        when Redis stays unreachable, and :class:`~core.errors.NotReplicatedError` when too few
        replicas acknowledged the batch; calling again is safe either way (the scripts are
        idempotent per id: what went through is found, not published twice).
        """
        pub, topic = self.publisher, self.topic
        if items:
            guard = await script_guard(guard, pub.redis, scripts=not _in_process(pub.redis))
        outcomes: list[Published | Exception | None] = [None] * len(items)
        groups: dict[int, list[_Pending]] = {}
        for position, (message_id, message) in enumerate(items):
            try:
                body, fields = pub.codec.encode(topic, message), pub.codec.to_fields(topic, message)
                # A value the wire cannot write would fail the packing of the whole pipeline.
                utf8_checked(pub.codec, topic, body, fields)
                partition = message_partition(pub.keys, topic, message)
            except Exception as exc:
                outcomes[position] = exc
                continue
            marker = pub.keys.published_marker(topic, message_id, partition)
            groups.setdefault(partition, []).append(_Pending(position, message_id, marker, body, fields))
        sends = [self._send(partition, group, outcomes, guard) for partition, group in groups.items()]
        if len(sends) == 1:
            await sends[0]
        elif sends:  # several partition streams (maybe several cluster nodes): side by side
            await asyncio.gather(*sends)
        added = sum(1 for o in outcomes if isinstance(o, Published) and o.new)
        if added and pub.metrics is not None:
            pub.metrics.count_published(topic, pub.codec.path, added)
        return [o if o is not None else TransportError("no reply") for o in outcomes]

    async def _send(
        self,
        partition: int,
        group: Sequence[_Pending],
        outcomes: list[Published | Exception | None],
        guard: LeaseGuard | None,
    ) -> None:
        """One partition's scripts in one round trip (all keys share the stream's slot); fills
        ``outcomes`` at the group's positions."""
        pub, topic = self.publisher, self.topic
        stream = pub.keys.stream(topic, partition)
        if _in_process(pub.redis):
            for item in group:
                raw_id, added = await self._without_scripts(stream, item.marker, item.body, item.fields)
                outcomes[item.position] = Published(reply_text(raw_id), bool(added))
            return
        wait = pub.wait_replicas
        replies: list[Any] = []

        async def send() -> None:
            replies.clear()
            trim = pub.trim.args(wall_ms())
            channel = pub.keys.channel(topic)
            calls: list[tuple[int, Sequence[Any]]] = []
            for item in group:
                args: list[str | bytes] = [stream, item.marker]
                if guard is not None:
                    args.append(guard.lease)
                args += [channel, item.body, str(self.marker_ttl_s), str(len(trim)), *trim]
                for name, value in item.fields.items():
                    args += (name, value)
                if guard is not None:
                    args.append(guard.owner)
                calls.append((2 if guard is None else 3, args))
            then = [["WAIT", str(wait), str(pub.wait_timeout_ms)]] if wait else []
            replies.extend(await _ONCE_SCRIPT.send_many(pub.redis, calls, then=then))

        ids = group[0].message_id if len(group) == 1 else f"{len(group)} ids"
        await call_async(pub.retry, f"publish {topic.value} {ids}", send)
        if guard is not None:
            for outcome in replies[: len(group)]:
                if not isinstance(outcome, Exception) and int(outcome[1]) < 0:
                    raise guard.lost(reply_text(outcome[0]) or "nobody")
        if wait:
            acked = replies[len(group)]
            if isinstance(acked, Exception):
                raise TransportError(f"Redis refused WAIT after a publish to {topic.value}: {acked}")
            if int(acked) < wait:
                raise NotReplicatedError(topic.value, [item.position for item in group], wait, int(acked))
        for item, outcome in zip(group, replies, strict=False):
            if isinstance(outcome, Exception):
                outcomes[item.position] = TransportError(
                    f"Redis refused the publish of {topic.value} {item.message_id}: {outcome}"
                )
            else:
                raw_id, added = outcome
                outcomes[item.position] = Published(reply_text(raw_id), bool(added))

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


@dataclass(frozen=True, slots=True)
class _Pending:
    """One message of a :meth:`OncePublisher.publish_many` call, encoded, with its marker key."""

    position: int
    message_id: str
    marker: str
    body: bytes
    fields: FieldMap


def _in_process(redis: object) -> bool:
    return type(redis).__module__.startswith("fakeredis")
