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
from core.redis.wire import DEFAULT_STREAM_MAXLEN, PublishPacker, StreamTrim, send_pipelined
from core.settings import ServiceSettings
from core.topics import KeySpace, Path, Profile, ServiceName, Topic

__all__ = ["DEFAULT_CHUNK", "Publisher", "publish_message"]

DEFAULT_CHUNK = 1_000
"""Messages per round trip in :meth:`Publisher.publish_many` (bounds the write buffer)."""

_log = get_logger("core.redis.publisher")
Encoded = tuple[bytes, dict[str, str]]
"""A message as the wire carries it: the Pub/Sub body and the stream field map."""
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

    Besides :meth:`publish` / :meth:`publish_many`, a handler can :meth:`defer` its
    output and let the stream consumer :meth:`flush` it once per batch, before the
    batch is acknowledged (``StreamConsumer(..., before_ack=publisher.flush)``): one
    round trip per batch instead of one per message, and still at-least-once,
    because inputs are acked only after their outputs were confirmed.
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
        self._deferred: dict[Topic, list[Encoded]] = {}

    @classmethod
    def from_settings(
        cls,
        redis: aioredis.Redis,
        settings: ServiceSettings,
        *,
        codec: Codec,
        service: ServiceName,
        metrics: ServiceMetrics | None = None,
    ) -> Publisher:
        """A publisher with the key prefix and stream bound of ``settings`` (KEY_PREFIX, STREAM_MAXLEN)."""
        return cls(
            redis,
            codec,
            keys=KeySpace(settings.key_prefix),
            service=service,
            metrics=metrics,
            maxlen=settings.stream_maxlen,
        )

    async def publish(self, topic: Topic, message: Message) -> str:
        """Publish one message now; returns its stream id (see :meth:`publish_many`)."""
        return (await self.publish_many(topic, [message]))[0]

    async def publish_many(self, topic: Topic, messages: Sequence[Message]) -> list[str]:
        """Publish ``messages`` in order, one round trip per ``chunk``; returns their stream ids.

        Every message is encoded before anything is sent, so a
        :class:`~core.errors.ContractError` means nothing of the batch was published.
        Chunks are pipelined on one connection (the next one is packed and written
        while Redis works on the previous). After a connection error the retry
        resends from the first chunk Redis had not confirmed, so duplicates are
        limited to that chunk. :class:`~core.errors.TransportError` says how many
        messages were confirmed before Redis stayed unreachable.
        """
        return await self._send(topic, [self._encode(topic, m) for m in messages])

    def defer(self, topic: Topic, message: Message) -> None:
        """Queue ``message`` for the next :meth:`flush`; encoded now, so a
        :class:`~core.errors.ContractError` is raised here, in the handler."""
        self._deferred.setdefault(topic, []).append(self._encode(topic, message))

    @property
    def deferred(self) -> int:
        """How many messages wait for :meth:`flush`."""
        return sum(len(q) for q in self._deferred.values())

    async def flush(self) -> int:
        """Publish every deferred message (per topic, in order); returns how many.

        The queue is emptied even when this raises :class:`~core.errors.TransportError`:
        the caller then must not acknowledge the inputs, whose redelivery makes the
        outputs again (that is what the consumer's ``before_ack`` hook guarantees).
        """
        queued, self._deferred = self._deferred, {}
        sent = 0
        for topic, encoded in queued.items():
            sent += len(await self._send(topic, encoded))
        return sent

    def _encode(self, topic: Topic, message: Message) -> Encoded:
        return self.codec.encode(topic, message), self.codec.to_fields(topic, message)

    async def _send(self, topic: Topic, encoded: Sequence[Encoded]) -> list[str]:
        if not encoded:
            return []
        packer, size = self._packer(topic), self.chunk
        ids: list[str] = []

        def confirmed(replies: list[Any]) -> None:
            ids.extend(_stream_ids(topic, replies))

        async def send_unconfirmed() -> None:
            rest = encoded[len(ids) :]
            now = _wall_ms()
            chunks = (
                (packer.pack(rest[i : i + size], now), 2 * len(rest[i : i + size]))
                for i in range(0, len(rest), size)
            )
            await send_pipelined(self.redis, chunks, confirmed)

        try:
            await call_async(self.retry, f"publish {topic.value}", send_unconfirmed, on_retry=self._on_retry)
        except TransportError as exc:
            raise TransportError(f"{exc} ({len(ids)} of {len(encoded)} messages were confirmed)") from exc
        finally:
            if self.metrics is not None:
                self.metrics.count_published(topic, self.codec.path, len(ids))
        return ids

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
