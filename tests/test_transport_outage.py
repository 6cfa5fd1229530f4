"""Redis going away: publisher and consumer ride out a restart, and give up loudly when it stays down."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from core.codec import Decoded
from core.errors import TransportError
from core.logging import configure_logging
from core.metrics import ServiceMetrics
from core.redis import Publisher, RetryPolicy, StreamConsumer, connect_async, connect_sync, publish_message
from core.topics import KeySpace, ServiceName, Topic
from tests.support.servers import ThrowawayRedis
from tests.transport_helpers import CODECS, make_messages, poll_until

pytestmark = pytest.mark.integration

CODEC = CODECS["pydantic-lenient"]
TOPIC = Topic.SIGNALS
KEYS = KeySpace("outage:")
QUICK_GIVE_UP = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05, jitter_s=0.01, deadline_s=2.0)


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """The JSON log lines written during the test."""
    buffer = io.StringIO()
    configure_logging("DEBUG", stream=buffer)
    yield buffer
    configure_logging()


async def test_redis_restart_mid_stream__every_accepted_message_is_processed(
    throwaway_redis: ThrowawayRedis,
) -> None:
    client = connect_async(throwaway_redis.url)
    publisher_metrics = ServiceMetrics(ServiceName.SIGNAL)
    publisher = Publisher(client, CODEC, keys=KEYS, service=ServiceName.SIGNAL, metrics=publisher_metrics)
    consumer = StreamConsumer(
        client,
        topic=TOPIC,
        service=ServiceName.RISK,
        codec=CODEC,
        keys=KEYS,
        instance="risk-1",
        batch_size=50,
        block_ms=20,
        reclaim_idle_ms=300,
    )
    await consumer.ensure_group()
    processed: set[str] = set()

    async def handler(decoded: Decoded, entry_id: str) -> None:
        processed.add(decoded.message.signal_id)

    stop = asyncio.Event()
    consuming = asyncio.create_task(consumer.run(handler, stop))
    messages = make_messages(CODEC, TOPIC, 3_000)
    accepted: set[str] = set()
    refused = 0
    restart: asyncio.Task[None] | None = None
    for start in range(0, len(messages), 50):
        batch = messages[start : start + 50]
        if start == 1_000:
            restart = asyncio.create_task(asyncio.to_thread(throwaway_redis.restart, 0.5))
        try:
            await publisher.publish_many(TOPIC, batch)
        except TransportError:
            refused += len(batch)
            continue
        accepted.update(m.signal_id for m in batch)
        await asyncio.sleep(0.002)  # a steady producer, so the restart lands mid-stream
    assert restart is not None
    await restart

    await poll_until(lambda: asyncio.sleep(0.05), lambda: processed >= accepted, timeout_s=30)
    stop.set()
    await asyncio.wait_for(consuming, timeout=5)
    await client.aclose()

    assert refused == 0  # the default policy outlasts a half-second outage
    assert processed >= accepted
    assert len(accepted) == len(messages)
    assert publisher_metrics.snapshot()["transport_retries"] > 0  # the outage hit the publisher
    assert consumer.metrics.snapshot()["transport_retries"] > 0  # ... and the consumer


async def test_publisher__server_stays_down__raises_transport_error(throwaway_redis: ThrowawayRedis) -> None:
    client = connect_async(throwaway_redis.url)
    publisher = Publisher(client, CODEC, keys=KEYS, service=ServiceName.SIGNAL, retry=QUICK_GIVE_UP)
    message = make_messages(CODEC, TOPIC, 1)[0]
    throwaway_redis.stop()

    with pytest.raises(TransportError, match="unreachable after 3 attempt"):
        await publisher.publish(TOPIC, message)
    await client.aclose()


def test_publish_message__server_stays_down__raises_transport_error(throwaway_redis: ThrowawayRedis) -> None:
    client = connect_sync(throwaway_redis.url)
    message = make_messages(CODEC, TOPIC, 1)[0]
    throwaway_redis.stop()

    with pytest.raises(TransportError):
        publish_message(client, TOPIC, message, keys=KEYS, retry=QUICK_GIVE_UP)
    client.close()


async def test_consumer_poll__server_stays_down__raises_transport_error(
    throwaway_redis: ThrowawayRedis,
) -> None:
    client = connect_async(throwaway_redis.url)
    consumer = StreamConsumer(
        client,
        topic=TOPIC,
        service=ServiceName.RISK,
        codec=CODEC,
        keys=KEYS,
        instance="r",
        retry=QUICK_GIVE_UP,
    )
    await consumer.ensure_group()
    throwaway_redis.stop()

    with pytest.raises(TransportError):
        await consumer.poll_once(lambda decoded, entry_id: asyncio.sleep(0))
    await client.aclose()


async def test_logs__redis_password_never_appears(
    throwaway_redis: ThrowawayRedis, log_buffer: io.StringIO
) -> None:
    url = f"redis://cdb:s3cret-pa55@127.0.0.1:{throwaway_redis.port}/0"
    client: aioredis.Redis = connect_async(url)
    publisher = Publisher(client, CODEC, keys=KEYS, service=ServiceName.SIGNAL, retry=QUICK_GIVE_UP)
    throwaway_redis.stop()

    with pytest.raises(TransportError) as raised:
        await publisher.publish(TOPIC, make_messages(CODEC, TOPIC, 1)[0])
    await client.aclose()

    logs = log_buffer.getvalue()
    assert "publish.retry" in logs
    assert "s3cret-pa55" not in logs
    assert "s3cret-pa55" not in str(raised.value)
