"""Publishing: the JSON body on the Pub/Sub channel and the field map in ``<topic>_stream``.

One round trip per call: ``PUBLISH`` and ``XADD`` travel in one **non-transactional**
pipeline. It is deliberately not MULTI/EXEC: the channel and the stream are
different keys, and DESIGN keeps the code Redis-Cluster-safe (no MULTI/EXEC
across keys); each command is single-key and atomic on its own. So a crash
between the two can leave a message on one side only; the stream is the durable
record, Pub/Sub is best effort anyway.

Delivery is **at least once**. On a connection error the whole call is retried
with backoff (:class:`~core.redis.retry.RetryPolicy`); if the server had already
executed some commands, those messages appear twice. Consumers must tolerate
duplicates (ids are deterministic: dedupe on ``order_id``/``signal_id``). When
the retries run out, :class:`~core.errors.TransportError` reaches the caller;
a message the publisher returned an id for is in the stream.

Works with either path's messages: the codec (given, or picked from the message
type) encodes them, the transport never looks at fields.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import ResponseError

from core.codec import Codec, Message, build_codec
from core.errors import TransportError
from core.logging import get_logger
from core.metrics import ServiceMetrics
from core.redis.retry import RetryPolicy, call_async, call_sync
from core.redis.wire import DEFAULT_STREAM_MAXLEN, PublishPacker, StreamTrim, send_packed
from core.topics import KeySpace, Path, Profile, ServiceName, Topic

__all__ = ["DEFAULT_CHUNK", "Publisher", "publish_message"]

DEFAULT_CHUNK = 1_000
"""Messages per round trip in :meth:`Publisher.publish_many` (bounds the write buffer)."""

_log = get_logger("core.redis.publisher")
_CODECS: dict[Path, Codec] = {}


def _codec_of(message: Message) -> Codec:
    """The codec for a message when none is given: Pydantic for a contract, else legacy."""
    path = Path.PYDANTIC if isinstance(message, BaseModel) else Path.LEGACY
    if path not in _CODECS:
        # Encoding does not depend on the profile; strict is the plain contract.
        _CODECS[path] = build_codec(path, Profile.STRICT)
    return _CODECS[path]


def _wall_ms() -> int:
    # Stream ids are the server's wall-clock ms, so MINID trimming uses the wall clock
    # too, not the injectable (possibly frozen) clock.
    return time.time_ns() // 1_000_000


def publish_message(
    redis: redis.Redis,
    topic: Topic,
    message: Message,
    *,
    codec: Codec | None = None,
    keys: KeySpace = KeySpace(),  # noqa: B008 -- KeySpace is frozen; one shared default is safe
    maxlen: int | None = DEFAULT_STREAM_MAXLEN,
    retention_ms: int | None = None,
    retry: RetryPolicy | None = None,
) -> str:
    """Publish ``message`` to ``topic`` (channel + stream) in one round trip; returns the stream id.

    Blocking form (the seed's name). One non-transactional pipeline, not MULTI/EXEC
    (see the module docstring). The stream is trimmed with ``MAXLEN ~ maxlen``, or
    ``MINID ~ now - retention_ms`` when that is given. Raises
    :class:`~core.errors.ContractError` if the message cannot be encoded, and
    :class:`~core.errors.TransportError` if Redis stays unreachable or refuses it.
    """
    codec = codec or _codec_of(message)
    body = codec.encode(topic, message)
    fields = codec.to_fields(topic, message)
    trim = StreamTrim(maxlen, retention_ms)
    channel, stream = keys.channel(topic), keys.stream(topic)

    def send() -> Any:
        pipe = redis.pipeline(transaction=False)
        pipe.publish(channel, body)
        pipe.xadd(stream, fields, **trim.xadd_kwargs(_wall_ms()))  # type: ignore[arg-type]
        return pipe.execute(raise_on_error=False)

    replies = call_sync(retry or RetryPolicy(), f"publish {topic.value}", send)
    return _stream_ids(topic, replies)[0]


def _stream_ids(topic: Topic, replies: Sequence[Any]) -> list[str]:
    """The XADD ids from the (PUBLISH, XADD) reply pairs; TransportError on a refused command."""
    errors = [r for r in replies if isinstance(r, ResponseError)]
    if errors:
        raise TransportError(f"Redis refused a publish to {topic.value}: {errors[0]}")
    xadds = replies[1::2]
    return [i.decode("ascii") if isinstance(i, bytes) else str(i) for i in xadds]


class Publisher:
    """Publishes one service's messages (asyncio): one round trip per call or per chunk.

    ``metrics`` (optional) counts published messages and transport retries.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        codec: Codec,
        *,
        keys: KeySpace,
        service: ServiceName,
        metrics: ServiceMetrics | None = None,
        maxlen: int | None = DEFAULT_STREAM_MAXLEN,
        retry: RetryPolicy | None = None,
        retention_ms: int | None = None,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        self.redis = redis
        self.codec = codec
        self.keys = keys
        self.service = service
        self.metrics = metrics
        self.retry = retry if retry is not None else RetryPolicy()
        self.trim = StreamTrim(maxlen, retention_ms)
        self.chunk = max(1, chunk)
        self._packers: dict[Topic, PublishPacker] = {}

    async def publish(self, topic: Topic, message: Message) -> str:
        """Publish one message; returns its stream id (see :meth:`publish_many`)."""
        return (await self.publish_many(topic, [message]))[0]

    async def publish_many(self, topic: Topic, messages: Sequence[Message]) -> list[str]:
        """Publish ``messages`` in order, one round trip per ``chunk``; returns their stream ids.

        Every message is encoded before anything is sent, so a
        :class:`~core.errors.ContractError` means nothing of the batch was published.
        A :class:`~core.errors.TransportError` means the chunk that failed and all
        after it were not confirmed (earlier chunks were; see :attr:`TransportError`
        text); publishing the batch again is safe for at-least-once consumers.
        """
        if not messages:
            return []
        encode, to_fields = self.codec.encode, self.codec.to_fields
        encoded = [(encode(topic, m), to_fields(topic, m)) for m in messages]
        packer = self._packer(topic)
        ids: list[str] = []
        for start in range(0, len(encoded), self.chunk):
            part = encoded[start : start + self.chunk]
            try:
                ids.extend(await self._send(topic, packer, part))
            except TransportError as exc:
                raise TransportError(
                    f"{exc} ({len(ids)} of {len(messages)} messages were published before)"
                ) from exc
        if self.metrics is not None:
            self.metrics.count_published(topic, self.codec.path, len(ids))
        return ids

    async def _send(
        self, topic: Topic, packer: PublishPacker, part: Sequence[tuple[bytes, dict[str, str]]]
    ) -> list[str]:
        async def send() -> list[Any]:
            chunks = packer.pack(part, _wall_ms())
            return await send_packed(self.redis, chunks, 2 * len(part))

        replies = await call_async(self.retry, f"publish {topic.value}", send, on_retry=self._on_retry)
        return _stream_ids(topic, replies)

    def _packer(self, topic: Topic) -> PublishPacker:
        packer = self._packers.get(topic)
        if packer is None:
            packer = PublishPacker(self.keys.channel(topic), self.keys.stream(topic), self.trim)
            self._packers[topic] = packer
        return packer

    def _on_retry(self, attempt: int, exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.count_retry("publish")
        _log.warning(
            "publish.retry", service=self.service.value, attempt=attempt, error=f"{type(exc).__name__}: {exc}"
        )
