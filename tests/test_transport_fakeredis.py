"""The same transport on the in-memory fakeredis (what ``cdb run`` uses without a REDIS_URL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest

from core.codec import Decoded
from core.redis import DeadLetterCause, Publisher, StreamConsumer
from core.topics import KeySpace, ServiceName, Topic
from tests.transport_helpers import CODECS, Collector, make_messages, poll_until

pytestmark = pytest.mark.strict_path  # runs in the week-4 deletion rehearsal too (test_week4_deletion)

CODEC = CODECS["pydantic-strict"]
KEYS = KeySpace("fake:")


@pytest.fixture
async def fake() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    """A fresh in-memory Redis."""
    client = fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()


def consumer(client: fakeredis.FakeAsyncRedis, instance: str, **options: int) -> StreamConsumer:
    return StreamConsumer(
        client,
        topic=Topic.ORDERS,
        service=ServiceName.EXECUTION,
        codec=CODEC,
        keys=KEYS,
        instance=instance,
        block_ms=10,
        **options,
    )


async def test_fakeredis__published_messages_consumed_in_order_and_bad_entry_dead_lettered(
    fake: fakeredis.FakeAsyncRedis,
) -> None:
    worker = consumer(fake, "w")
    await worker.ensure_group()
    messages = make_messages(CODEC, Topic.ORDERS, 2_000)
    publisher = Publisher(fake, CODEC, keys=KEYS, service=ServiceName.RISK, chunk=300)
    ids = await publisher.publish_many(Topic.ORDERS, messages[:1_000])
    await fake.xadd(KEYS.stream(Topic.ORDERS), {"order_id": "not json"})
    ids += await publisher.publish_many(Topic.ORDERS, messages[1_000:])
    handled = Collector()

    await poll_until(lambda: worker.poll_once(handled), lambda: len(handled.ids) >= 2_000)

    [letter] = await worker.dead_letters.read(Topic.ORDERS)
    assert handled.messages == messages
    assert handled.ids == ids
    assert letter.cause == DeadLetterCause.INVALID
    assert await worker.lag() == 0


async def test_fakeredis__entries_of_a_dead_consumer_reclaimed(fake: fakeredis.FakeAsyncRedis) -> None:
    doomed = consumer(fake, "doomed")
    await doomed.ensure_group()
    publisher = Publisher(fake, CODEC, keys=KEYS, service=ServiceName.RISK)
    ids = await publisher.publish_many(Topic.ORDERS, make_messages(CODEC, Topic.ORDERS, 20))

    async def dies(decoded: Decoded, entry_id: str) -> None:
        raise KeyboardInterrupt  # not an Exception: escapes the consumer, like a kill

    with pytest.raises(KeyboardInterrupt):
        await doomed.poll_once(dies)
    survivor = consumer(fake, "survivor", reclaim_idle_ms=1)
    handled = Collector()
    await poll_until(lambda: survivor.poll_once(handled), lambda: len(handled.ids) >= 20, timeout_s=5)

    assert set(handled.ids) == set(ids)
    assert len(handled.ids) == len(ids)
