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

Works with either path's messages: the codec (given; by default the Pydantic path's,
never picked from the message type) encodes them, the transport never looks at fields --
except the topic's declared partition key (``Topic.partition_key``, the symbol) when the
key space has several partitions: a message goes to the stream of
``KeySpace.partition(key)``, so each symbol's messages stay in order.

Replica acknowledgement (``wait_replicas`` > 0, settings ``REDIS_WAIT_REPLICAS`` /
``REDIS_WAIT_TIMEOUT_MS``): each chunk ends with ``WAIT n timeout`` on the same
connection, so on a cluster it goes to the node that took the writes. Fewer
acknowledgements than ``n`` raise :class:`~core.errors.NotReplicatedError` naming every
message of the call not confirmed; the caller re-sends them (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from core.codec import Codec, Message
from core.errors import CdbError, LeaseLostError, NotReplicatedError, TransportError
from core.logging import get_logger
from core.metrics import ServiceMetrics
from core.redis import outbox
from core.redis.guarded import GUARDED_PUBLISH, LeaseGuard, guarded_args, guarded_ids, script_guard
from core.redis.modes import AsyncClient
from core.redis.outbox import Deferred, Outbox
from core.redis.retry import RetryPolicy, call_async
from core.redis.sync_publish import message_partition, publish_message, stream_ids, wall_ms
from core.redis.wire import DEFAULT_STREAM_MAXLEN, PublishPacker, StreamTrim, pack_command, send_pipelined
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic

__all__ = ["DEFAULT_CHUNK", "Publisher", "publish_message"]

DEFAULT_CHUNK = 1_000
"""Messages per round trip in :meth:`Publisher.publish_many` (bounds the write buffer)."""

_log = get_logger("core.redis.publisher")
Encoded = tuple[bytes, dict[str, str], int]
"""A message as the wire carries it: the Pub/Sub body, the stream field map, its partition."""


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
        redis: AsyncClient,
        codec: Codec,
        *,
        keys: KeySpace,
        service: ServiceName,
        metrics: ServiceMetrics | None = None,
        maxlen: int | None = DEFAULT_STREAM_MAXLEN,
        retry: RetryPolicy | None = None,
        retention_ms: int | None = None,
        chunk: int = DEFAULT_CHUNK,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1_000,
    ) -> None:
        self.redis = redis
        self.codec = codec
        self.keys = keys
        self.service = service
        self.metrics = metrics
        self.retry = retry if retry is not None else RetryPolicy()
        self.trim = StreamTrim(maxlen, retention_ms)
        self.chunk = max(1, chunk)
        self.wait_replicas = max(0, wait_replicas)
        self.wait_timeout_ms = wait_timeout_ms
        self._wait = pack_command(["WAIT", str(self.wait_replicas), str(wait_timeout_ms)])
        self._packers: dict[tuple[Topic, int], PublishPacker] = {}
        self._outbox = Outbox()
        self.written: dict[str, str] = {}
        """The newest stream id this publisher wrote, per stream (the lost-writes check)."""

    @classmethod
    def from_settings(
        cls,
        redis: AsyncClient,
        settings: ServiceSettings,
        *,
        codec: Codec,
        service: ServiceName,
        metrics: ServiceMetrics | None = None,
    ) -> Publisher:
        """A publisher as ``settings`` say: KEY_PREFIX, TOPIC_PARTITIONS, STREAM_MAXLEN,
        REDIS_WAIT_REPLICAS, REDIS_WAIT_TIMEOUT_MS."""
        return cls(
            redis,
            codec,
            keys=KeySpace(settings.key_prefix, settings.topic_partitions),
            service=service,
            metrics=metrics,
            maxlen=settings.stream_maxlen,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
        )

    def sibling(self) -> Publisher:
        """A publisher like this one with its own :meth:`defer` queue (one per partition
        consumer, so a batch's flush sends that batch's outputs and no one else's)."""
        twin = Publisher(
            self.redis,
            self.codec,
            keys=self.keys,
            service=self.service,
            metrics=self.metrics,
            retry=self.retry,
            chunk=self.chunk,
            wait_replicas=self.wait_replicas,
            wait_timeout_ms=self.wait_timeout_ms,
        )
        twin.trim = self.trim
        twin._packers = self._packers  # packed constants only; safe to share
        return twin

    async def publish(self, topic: Topic, message: Message) -> str:
        """Publish one message now; returns its stream id (see :meth:`publish_many`)."""
        return (await self.publish_many(topic, [message]))[0]

    async def publish_many(self, topic: Topic, messages: Sequence[Message]) -> list[str]:
        """Publish ``messages`` in order, one round trip per ``chunk``; returns their stream ids.

        Every message is encoded before anything is sent, so a
        :class:`~core.errors.ContractError` means nothing of the batch was published.
        Chunks are pipelined on one connection per partition (the next one is packed
        and written while Redis works on the previous; partitions go out concurrently).
        After a connection error the retry resends from the first chunk Redis had not
        confirmed, so duplicates are limited to that chunk.
        :class:`~core.errors.TransportError` says how many messages were confirmed
        before Redis stayed unreachable; :class:`~core.errors.NotReplicatedError`
        (with replica acknowledgement on) lists the positions in ``messages`` to re-send.
        """
        return await self._send(topic, [self._encode(topic, m) for m in messages])

    def defer(self, topic: Topic, message: Message) -> None:
        """Queue ``message`` for the next :meth:`flush`; encoded now, down to the wire's UTF-8,
        so a message that cannot be written raises :class:`~core.errors.ContractError` here, in
        the handler that made it (and only its input is dead-lettered), never in the flush."""
        self._outbox.add(topic, *self._encode(topic, message))

    def begin(self, source: str | None) -> None:
        """Outputs deferred from now on were caused by input ``source`` (a stream entry id; the
        consumer calls this before each handler), so :meth:`discard` can take them back."""
        self._outbox.begin(source)

    def discard(self, source: str) -> int:
        """Drop the outputs ``source`` deferred (its handler failed: a retry makes them again, a
        dead letter must not leave half of them behind); returns how many."""
        return self._outbox.discard(source)

    @property
    def deferred(self) -> int:
        """How many messages wait for :meth:`flush`."""
        return len(self._outbox)

    async def flush(self) -> int:
        """Publish every deferred message (per topic, in order); returns how many.

        The queue is emptied even when this raises :class:`~core.errors.TransportError`:
        the caller then must not acknowledge the inputs, whose redelivery makes the
        outputs again (that is what the consumer's ``before_ack`` hook guarantees).
        Raises if any message could not be sent; :meth:`flush_outputs` says which inputs.
        """
        sent, failed = await self._flush()
        if failed:
            raise next(iter(failed.values()))
        return sent

    async def flush_outputs(self, guard: LeaseGuard | None = None) -> dict[str, BaseException]:
        """Publish every deferred message like :meth:`flush`, containing a failure to the input
        whose output caused it: returns ``{source: error}`` for inputs whose outputs could not
        be sent (the rest were sent), and still raises :class:`~core.errors.TransportError`
        when Redis is away (then nothing may be acknowledged).

        ``guard``: only while this lease is held. On one server every output stream's messages
        go in a script that checks the lease first (:mod:`core.redis.guarded`: no round trip of
        its own); on a cluster the lease is read first. Either way a lost lease raises
        :class:`~core.errors.LeaseLostError` (the outputs taken, none sent after it was lost)."""
        if self._outbox:
            guard = await script_guard(guard, self.redis)
        return (await self._flush(guard))[1]

    async def _flush(self, guard: LeaseGuard | None = None) -> tuple[int, dict[str, BaseException]]:
        queued = self._outbox.take()
        sent = 0
        failed: dict[str, BaseException] = {}
        for topic, items in queued.items():
            try:
                sent += len(await self._send(topic, items, guard))
            except CdbError:
                raise  # the transport's (or a re-raised contract) error: the whole batch waits
            except Exception as exc:
                good, failures = await self._contain(topic, items, exc, guard)
                sent += good
                failed.update(failures)
        return sent, failed

    async def _contain(
        self, topic: Topic, items: Sequence[Deferred], exc: Exception, guard: LeaseGuard | None
    ) -> tuple[int, dict[str, BaseException]]:
        # A bug-class failure while packing (defer already checked every value): find the outputs
        # that cannot be packed alone, send the others again (a duplicate at worst: at least
        # once) and hand the culprits' inputs back to the consumer, which dead-letters them.
        def pack(item: Deferred) -> object:
            return self._packer(topic, item[2]).pack([item], 0)

        bad = outbox.unpackable(items, pack)
        if not bad:
            raise exc
        _log.error("publish.output_failed", topic=topic.value, outputs=len(bad), error=repr(exc))
        failed: dict[str, BaseException] = {}
        for i, error in bad.items():
            failed.setdefault(items[i][3] or "", error)
        sent = await self._send(topic, [item for i, item in enumerate(items) if i not in bad], guard)
        return len(sent), failed

    def _encode(self, topic: Topic, message: Message) -> Encoded:
        codec = self.codec
        body, fields = codec.encode(topic, message), codec.to_fields(topic, message)
        outbox.utf8_checked(codec, topic, body, fields)
        return body, fields, 0 if self.keys.partitions == 1 else message_partition(self.keys, topic, message)

    async def _send(
        self, topic: Topic, encoded: Sequence[Encoded | Deferred], guard: LeaseGuard | None = None
    ) -> list[str]:
        if not encoded:
            return []
        if self.keys.partitions == 1:
            return await self._send_partition(topic, 0, encoded, guard)
        positions: dict[int, list[int]] = {}
        for i, item in enumerate(encoded):
            positions.setdefault(item[2], []).append(i)
        outcomes = await asyncio.gather(
            *(self._send_partition(topic, p, [encoded[i] for i in at], guard) for p, at in positions.items()),
            return_exceptions=True,
        )
        ids = [""] * len(encoded)
        short: list[int] = []
        failures: list[BaseException] = []
        for at, outcome in zip(positions.values(), outcomes, strict=True):
            if isinstance(outcome, NotReplicatedError):
                short += [at[j] for j in outcome.unacknowledged]
                failures.append(outcome)
            elif isinstance(outcome, BaseException):
                failures.append(outcome)
            else:
                for j, stream_id in zip(at, outcome, strict=True):
                    ids[j] = stream_id
        if failures:
            raise _combined(topic, failures, sorted(short), sum(1 for i in ids if i), len(encoded))
        return ids

    async def _send_partition(
        self, topic: Topic, partition: int, encoded: Sequence[Encoded | Deferred], guard: LeaseGuard | None
    ) -> list[str]:
        packer = self._packer(topic, partition)
        if guard is not None:
            return await self._send_guarded(topic, packer.stream, encoded, guard)
        size, wait = self.chunk, self.wait_replicas
        ids: list[str] = []

        def confirmed(replies: list[Any]) -> None:
            if not wait:
                ids.extend(stream_ids(topic, replies))
                return
            acked = replies.pop()
            written = stream_ids(topic, replies)
            self._check_replicas(topic, acked)
            ids.extend(written)

        async def send_unconfirmed() -> None:
            rest = encoded[len(ids) :]
            now = wall_ms()
            tail = [self._wait] if wait else []
            chunks = (
                (packer.pack(rest[i : i + size], now) + tail, 2 * len(rest[i : i + size]) + len(tail))
                for i in range(0, len(rest), size)
            )
            await send_pipelined(self.redis, chunks, confirmed, key=packer.stream)

        try:
            await call_async(self.retry, f"publish {topic.value}", send_unconfirmed, on_retry=self._on_retry)
        except _ShortError as short:
            # The short chunk and every one after it, even one whose own WAIT was answered: a
            # suffix of this partition's messages, so re-sending it keeps each symbol's order.
            missing = list(range(len(ids), len(encoded)))
            raise NotReplicatedError(topic.value, missing, wait, short.acknowledged) from None
        except TransportError as exc:
            raise TransportError(f"{exc} ({len(ids)} of {len(encoded)} messages were confirmed)") from exc
        finally:
            self._confirmed(topic, packer.stream, ids)
        return ids

    async def _send_guarded(
        self, topic: Topic, stream: str, encoded: Sequence[Encoded | Deferred], guard: LeaseGuard
    ) -> list[str]:
        """:meth:`_send_partition` under ``guard`` (one server): one guarded script per chunk,
        every chunk in one round trip, sent again whole after a connection error."""
        size, wait, channel = self.chunk, self.wait_replicas, self.keys.channel(topic)
        ids: list[str] = []

        async def send() -> None:
            trim = self.trim.args(wall_ms())
            calls = [
                (2, guarded_args(guard, stream, channel, trim, encoded[i : i + size]))
                for i in range(0, len(encoded), size)
            ]
            then = [["WAIT", str(wait), str(self.wait_timeout_ms)]] if wait else []
            replies = await GUARDED_PUBLISH.send_many(self.redis, calls, then=then)
            if wait:
                self._check_replicas(topic, replies.pop())
            ids[:] = guarded_ids(guard, topic.value, replies)

        try:
            await call_async(self.retry, f"publish {topic.value}", send, on_retry=self._on_retry)
        except _ShortError as short:
            unconfirmed = list(range(len(encoded)))
            raise NotReplicatedError(topic.value, unconfirmed, wait, short.acknowledged) from None
        finally:
            self._confirmed(topic, stream, ids)
        return ids

    def _check_replicas(self, topic: Topic, acked: Any) -> None:
        """Raise unless the ``WAIT`` after a publish (its reply ``acked``) reached enough replicas."""
        if isinstance(acked, Exception):
            raise TransportError(f"Redis refused WAIT after a publish to {topic.value}: {acked}")
        if int(acked) < self.wait_replicas:
            raise _ShortError(int(acked))

    def _confirmed(self, topic: Topic, stream: str, ids: Sequence[str]) -> None:
        """Count the messages Redis confirmed on ``stream`` and remember the newest."""
        if self.metrics is not None:
            self.metrics.count_published(topic, self.codec.path, len(ids))
        if ids:
            # The newest entry this publisher wrote per stream: a stream whose tail is older
            # later lost it (core.redis.consumer checks, issue 16).
            self.written[stream] = ids[-1]

    def _packer(self, topic: Topic, partition: int) -> PublishPacker:
        packer = self._packers.get((topic, partition))
        if packer is None:
            stream = self.keys.stream(topic, partition)
            packer = PublishPacker(self.keys.channel(topic), stream, self.trim)
            self._packers[(topic, partition)] = packer
        return packer

    def _on_retry(self, attempt: int, exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.count_retry("publish")
        _log.warning(
            "publish.retry", service=self.service.value, attempt=attempt, error=f"{type(exc).__name__}: {exc}"
        )


class _ShortError(Exception):
    """Internal: a chunk's WAIT came back with fewer replicas than asked for."""

    def __init__(self, acknowledged: int) -> None:
        super().__init__(acknowledged)
        self.acknowledged = acknowledged


def _combined(
    topic: Topic, failures: Sequence[BaseException], short: list[int], confirmed: int, total: int
) -> BaseException:
    """One error for a call whose partitions failed: NotReplicatedError when every failure was
    one (the positions to re-send), else the first TransportError with the confirmed count."""
    if all(isinstance(f, NotReplicatedError) for f in failures):
        first = failures[0]
        assert isinstance(first, NotReplicatedError)
        acked = min(f.acknowledged for f in failures if isinstance(f, NotReplicatedError))
        return NotReplicatedError(topic.value, short, first.wanted, acked)
    cause = next(f for f in failures if not isinstance(f, NotReplicatedError))
    lost = next((f for f in failures if isinstance(f, LeaseLostError)), None)
    if lost is not None:
        return lost  # a lost lease stops the batch whatever else failed: the caller must see it
    if not isinstance(cause, TransportError):
        return cause  # a bug or a ContractError: not the transport's to rename
    error = TransportError(f"{cause} ({confirmed} of {total} messages were confirmed in all partitions)")
    error.__cause__ = cause
    return error
