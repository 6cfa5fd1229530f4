"""The blocking publish (:func:`publish_message`, used by ``cdb dlq replay``) in every mode,
and the helpers it shares with the asyncio :class:`~core.redis.publisher.Publisher`.

One publish implementation for both sides: the commands are packed by
:class:`~core.redis.wire.PublishPacker` (as the asyncio publisher packs them) and written
as one non-transactional pipeline ``PUBLISH`` + ``XADD`` (+ ``WAIT``) on one connection:
on a cluster, the stream's node (``PUBLISH`` works on any node; the cluster bus forwards
it, and ``WAIT`` must run on the connection that wrote). A cluster redirect is recognised
by the same rule (:func:`~core.redis.wire.redirect_in`), refreshes the slot map and raises
:class:`~core.redis.wire.SlotMovedError`, which the retry policy retries.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.codec import Codec, Message, build_codec
from core.errors import ConfigError, NotReplicatedError, TransportError
from core.redis.modes import SyncClient
from core.redis.retry import RetryPolicy, call_sync
from core.redis.wire import (
    DEFAULT_STREAM_MAXLEN,
    PublishPacker,
    SlotMovedError,
    StreamTrim,
    pack_command,
    plain_replies,
    redirect_in,
)
from core.topics import CodecPath, KeySpace, Profile, Topic

__all__ = [
    "default_codec",
    "message_partition",
    "publish_message",
    "send_packed_sync",
    "stream_ids",
    "topic_named",
    "wall_ms",
]

_DEFAULT: list[Codec] = []


def default_codec() -> Codec:
    """The codec :func:`publish_message` encodes with when none is given: the Pydantic path
    (encoding does not depend on the profile). The transport never picks a path from a
    message's type: a producer on another path passes its own codec."""
    if not _DEFAULT:
        _DEFAULT.append(build_codec(CodecPath.PYDANTIC, Profile.STRICT))
    return _DEFAULT[0]


def wall_ms() -> int:
    """Now in wall-clock ms: stream ids are the server's wall clock, so MINID trimming uses
    it too, not the injectable (possibly frozen) clock."""
    return time.time_ns() // 1_000_000


def message_partition(keys: KeySpace, topic: Topic, message: Message) -> int:
    """The partition of ``message`` by the partition key ``topic`` declares (0 with one partition)."""
    if keys.partitions == 1:
        return 0
    return keys.partition(str(getattr(message, topic.partition_key, "")))


def topic_named(topic: Topic | str) -> Topic:
    """``topic`` as a :class:`Topic`: the enum itself or its name as the seed writes it
    (``"signals"``); anything else is a :class:`~core.errors.ConfigError` listing the names."""
    if isinstance(topic, Topic):
        return topic
    try:
        return Topic(topic)
    except ValueError:
        raise ConfigError(
            "topic", topic, [t.value for t in Topic], hint="pass a Topic or one of these names"
        ) from None


def publish_message(
    redis: SyncClient,
    topic: Topic | str,
    message: Message,
    *,
    codec: Codec | None = None,
    keys: KeySpace = KeySpace(),  # noqa: B008 -- KeySpace is frozen; one shared default is safe
    maxlen: int | None = DEFAULT_STREAM_MAXLEN,
    retention_ms: int | None = None,
    retry: RetryPolicy | None = None,
    wait_replicas: int = 0,
    wait_timeout_ms: int = 1_000,
) -> str:
    """Publish ``message`` to ``topic`` (channel + stream) in one round trip; returns the stream id.

    Blocking form (the seed's name and call: ``publish_message(redis_client, "signals", signal)``;
    ``topic`` is a :class:`Topic` or its name, an unknown name is a
    :class:`~core.errors.ConfigError` listing the valid ones). One non-transactional pipeline, not
    MULTI/EXEC (see :mod:`core.redis.publisher`), packed as the asyncio Publisher packs and written
    on one connection (on a cluster, the stream's node). The stream is trimmed with ``MAXLEN ~ maxlen``,
    or ``MINID ~ now - retention_ms`` when that is given. Raises
    :class:`~core.errors.ContractError` if the message cannot be encoded,
    :class:`~core.errors.NotReplicatedError` if ``wait_replicas`` replicas did not
    acknowledge it in ``wait_timeout_ms``, and :class:`~core.errors.TransportError` if
    Redis stays unreachable or refuses it.
    """
    topic = topic_named(topic)
    codec = codec or default_codec()
    body = codec.encode(topic, message)
    fields = codec.to_fields(topic, message)
    trim = StreamTrim(maxlen, retention_ms)
    channel, stream = keys.channel(topic), keys.stream(topic, message_partition(keys, topic, message))

    def send() -> list[Any]:
        data = PublishPacker(channel, stream, trim).pack([(body, fields)], wall_ms())
        if wait_replicas > 0:
            data.append(pack_command(["WAIT", str(wait_replicas), str(wait_timeout_ms)]))
        return send_packed_sync(redis, data, 3 if wait_replicas > 0 else 2, key=stream)

    replies = call_sync(retry or RetryPolicy(), f"publish {topic.value}", send)
    if wait_replicas > 0:
        acked = replies.pop()
        if isinstance(acked, ResponseError):
            raise TransportError(f"Redis refused WAIT after a publish to {topic.value}: {acked}")
        if int(acked) < wait_replicas:
            raise NotReplicatedError(topic.value, [0], wait_replicas, int(acked))
    return stream_ids(topic, replies)[0]


def stream_ids(topic: Topic, replies: Sequence[Any]) -> list[str]:
    """The XADD ids from the (PUBLISH, XADD) reply pairs; TransportError on a refused command."""
    xadds = replies[1::2]
    if plain_replies(replies) and set(map(type, xadds)) == {bytes}:
        return [i.decode("ascii") for i in xadds]  # the common chunk: no error, every id bytes
    errors = [r for r in replies if isinstance(r, ResponseError)]
    if errors:
        raise TransportError(f"Redis refused a publish to {topic.value}: {errors[0]}")
    return [i.decode("ascii") if isinstance(i, bytes) else str(i) for i in xadds]


def send_packed_sync(client: SyncClient, data: list[bytes], replies: int, *, key: str) -> list[Any]:
    """Write packed commands on one connection (on a cluster: ``key``'s node) and read their
    ``replies`` in order, error replies in place (not raised); the blocking twin of
    :func:`~core.redis.wire.send_pipelined`. A connection used for a failed exchange is dropped."""
    if isinstance(client, SyncRedisCluster):
        node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        if node is None or node.redis_connection is None:
            _refresh(client)
            raise SlotMovedError(f"no cluster node serves the slot of {key!r} right now")
        pool = node.redis_connection.connection_pool
    else:
        pool = client.connection_pool
    conn = pool.get_connection()
    out: list[Any] = []
    try:
        conn.send_packed_command(data)
        for _ in range(replies):
            try:
                out.append(conn.read_response())
            except ResponseError as exc:
                out.append(exc)
    except BaseException as exc:
        conn.disconnect()  # unread replies would be taken for the next command's
        if isinstance(client, SyncRedisCluster) and isinstance(
            exc, RedisConnectionError | RedisTimeoutError | OSError
        ):
            _refresh(client)
        raise
    finally:
        pool.release(conn)
    moved = redirect_in(out)
    if moved is not None and isinstance(client, SyncRedisCluster):
        _refresh(client)
        raise SlotMovedError(f"cluster redirect while publishing to {key!r}: {moved}")
    return out


def _refresh(client: SyncRedisCluster) -> None:
    with contextlib.suppress(Exception):  # the retry reports what is really wrong
        client.nodes_manager.initialize()
