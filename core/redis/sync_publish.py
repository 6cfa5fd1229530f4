"""The blocking publish (:func:`publish_message`, used by ``cdb dlq replay``) in every mode,
and the helpers it shares with the asyncio :class:`~core.redis.publisher.Publisher`.

Standalone and Sentinel: one non-transactional pipeline ``PUBLISH`` + ``XADD`` (+ ``WAIT``).
Cluster: redis-py's cluster pipeline refuses ``PUBLISH``, and ``WAIT`` must run on the
connection that wrote, so the ``PUBLISH`` goes alone (any node; the cluster bus
forwards it) and ``XADD`` + ``WAIT`` go in one pipeline on the stream's own node.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import AskError, ClusterDownError, MovedError, ResponseError, TryAgainError

from core.codec import Codec, Message, build_codec
from core.errors import ConfigError, NotReplicatedError, TransportError
from core.redis.modes import SyncClient
from core.redis.retry import RetryPolicy, call_sync
from core.redis.wire import DEFAULT_STREAM_MAXLEN, SlotMovedError, StreamTrim
from core.topics import CodecPath, KeySpace, Profile, Topic

__all__ = [
    "codec_of",
    "publish_message",
    "send_sync",
    "stream_ids",
    "symbol_partition",
    "topic_named",
    "wall_ms",
]

_REDIRECTS = (MovedError, AskError, TryAgainError, ClusterDownError)

_CODECS: dict[CodecPath, Codec] = {}


def codec_of(message: Message) -> Codec:
    """The codec for a message when none is given: Pydantic for a contract, else legacy."""
    path = CodecPath.PYDANTIC if isinstance(message, BaseModel) else CodecPath.LEGACY
    if path not in _CODECS:
        # Encoding does not depend on the profile; strict is the plain contract.
        _CODECS[path] = build_codec(path, Profile.STRICT)
    return _CODECS[path]


def wall_ms() -> int:
    """Now in wall-clock ms: stream ids are the server's wall clock, so MINID trimming uses
    it too, not the injectable (possibly frozen) clock."""
    return time.time_ns() // 1_000_000


def symbol_partition(keys: KeySpace, message: Message) -> int:
    """The partition of ``message``'s symbol (0 with one partition)."""
    if keys.partitions == 1:
        return 0
    return keys.partition(str(getattr(message, "symbol", "")))


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
    :class:`~core.errors.ConfigError` listing the valid ones). One non-transactional pipeline, not MULTI/EXEC
    (see :mod:`core.redis.publisher`); on a cluster the ``PUBLISH`` is a round trip of its own
    (redis-py's cluster pipeline refuses it). The stream is trimmed with ``MAXLEN ~ maxlen``,
    or ``MINID ~ now - retention_ms`` when that is given. Raises
    :class:`~core.errors.ContractError` if the message cannot be encoded,
    :class:`~core.errors.NotReplicatedError` if ``wait_replicas`` replicas did not
    acknowledge it in ``wait_timeout_ms``, and :class:`~core.errors.TransportError` if
    Redis stays unreachable or refuses it.
    """
    topic = topic_named(topic)
    codec = codec or codec_of(message)
    body = codec.encode(topic, message)
    fields = codec.to_fields(topic, message)
    trim = StreamTrim(maxlen, retention_ms)
    channel, stream = keys.channel(topic), keys.stream(topic, symbol_partition(keys, message))

    def send() -> list[Any]:
        wait = (wait_replicas, wait_timeout_ms) if wait_replicas > 0 else None
        return send_sync(redis, channel, body, stream, fields, trim=trim.xadd_kwargs(wall_ms()), wait=wait)

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
    errors = [r for r in replies if isinstance(r, ResponseError)]
    if errors:
        raise TransportError(f"Redis refused a publish to {topic.value}: {errors[0]}")
    xadds = replies[1::2]
    return [i.decode("ascii") if isinstance(i, bytes) else str(i) for i in xadds]


def send_sync(
    client: SyncClient,
    channel: str,
    body: bytes,
    stream: str,
    fields: Mapping[str, str],
    *,
    trim: Mapping[str, Any],
    wait: tuple[int, int] | None,
) -> list[Any]:
    """Replies in the order PUBLISH, XADD[, WAIT]; error replies in place (not raised)."""
    if isinstance(client, SyncRedisCluster):
        published = client.publish(channel, body)
        node = client.get_node_from_key(stream)  # type: ignore[no-untyped-call]
        if node is None or node.redis_connection is None:
            _refresh(client)
            raise SlotMovedError(f"no cluster node serves the slot of {stream!r} right now")
        pipe = node.redis_connection.pipeline(transaction=False)
        pipe.xadd(stream, dict(fields), **trim)
        if wait is not None:
            pipe.execute_command("WAIT", *wait)
        replies = [published, *pipe.execute(raise_on_error=False)]
        if any(isinstance(r, _REDIRECTS) for r in replies):
            _refresh(client)
            raise SlotMovedError(f"cluster redirect while publishing to {stream!r}")
        return replies
    pipe = client.pipeline(transaction=False)
    pipe.publish(channel, body)
    pipe.xadd(stream, dict(fields), **trim)  # type: ignore[arg-type]  # redis-py: invariant dict
    if wait is not None:
        pipe.execute_command("WAIT", *wait)  # type: ignore[no-untyped-call]
    return list(pipe.execute(raise_on_error=False))


def _refresh(client: SyncRedisCluster) -> None:
    with contextlib.suppress(Exception):  # the retry reports what is really wrong
        client.nodes_manager.initialize()
