"""Publishing reaches both sides: the Pub/Sub channel and the stream, every message, in order."""

from __future__ import annotations

import json

import pytest
import redis
import redis.asyncio as aioredis

from core.codec import build_codec
from core.redis import Publisher, PubSubObserver, StreamConsumer, publish_message
from core.settings import ServiceSettings
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from tests.transport_helpers import CODECS, Collector, make_messages, poll_until

pytestmark = pytest.mark.integration

N = 10_000


@pytest.mark.parametrize("codec_name", list(CODECS))
@pytest.mark.parametrize("topic", list(Topic))
async def test_publish_many__pubsub_and_stream_consumer_see_every_message_in_order(
    redis_async: aioredis.Redis, keys: KeySpace, topic: Topic, codec_name: str
) -> None:
    codec = CODECS[codec_name]
    messages = make_messages(codec, topic, N)
    publisher = Publisher(redis_async, codec, keys=keys, service=ServiceName.WS)
    consumer = StreamConsumer(
        redis_async, topic=topic, service=ServiceName.SIGNAL, codec=codec, keys=keys, instance="c1"
    )
    await consumer.ensure_group()
    observer = PubSubObserver(redis_async, topic=topic, codec=codec, keys=keys)
    async with observer:
        ids = await publisher.publish_many(topic, messages)
        heard = []
        while len(heard) < N:
            decoded = await observer.get(timeout_s=5.0)
            assert decoded is not None, f"Pub/Sub went quiet after {len(heard)} messages"
            heard.append(decoded.message)
    handled = Collector()
    await poll_until(lambda: consumer.poll_once(handled), lambda: len(handled.messages) >= N)

    assert heard == messages
    assert handled.messages == messages
    assert handled.ids == ids
    assert consumer.metrics.snapshot()["messages_ok"] == N
    assert await consumer.lag() == 0


def test_publish_message__writes_json_body_to_channel_and_field_map_to_stream(
    redis_sync: redis.Redis, keys: KeySpace
) -> None:
    codec = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
    message = make_messages(codec, Topic.ORDER_RESULTS, 4)[3]  # a REJECTED result: nulls and a bool
    pubsub = redis_sync.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.channel(Topic.ORDER_RESULTS))

    stream_id = publish_message(redis_sync, Topic.ORDER_RESULTS, message, keys=keys)

    body = None
    for _ in range(50):
        got = pubsub.get_message(timeout=0.1)
        if got and got["type"] == "message":
            body = got["data"]
            break
    pubsub.close()
    [(entry_id, fields)] = redis_sync.xrange(keys.stream(Topic.ORDER_RESULTS))
    assert entry_id.decode() == stream_id
    assert body is not None
    assert codec.decode(Topic.ORDER_RESULTS, body).message == message
    assert fields[b"reason"] == b'"risk limit"'
    assert fields[b"average_price"] == b"null"
    assert fields[b"simulated"] == b"false"
    assert codec.from_fields(Topic.ORDER_RESULTS, fields).message == message


@pytest.mark.parametrize("path", list(CodecPath))
def test_publish_message__without_codec__encodes_each_paths_message_type(
    redis_sync: redis.Redis, keys: KeySpace, path: CodecPath
) -> None:
    codec = build_codec(path, Profile.STRICT)
    message = make_messages(codec, Topic.SIGNALS, 1)[0]

    publish_message(redis_sync, Topic.SIGNALS, message, keys=keys)

    [(_, fields)] = redis_sync.xrange(keys.stream(Topic.SIGNALS))
    assert codec.from_fields(Topic.SIGNALS, fields).message == message
    assert (b"api_version" in fields) is (path is CodecPath.PYDANTIC)


def test_publish_message__stream_is_trimmed_to_about_maxlen(redis_sync: redis.Redis, keys: KeySpace) -> None:
    codec = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
    messages = make_messages(codec, Topic.MARKET_DATA, 2_000)

    for message in messages:
        publish_message(redis_sync, Topic.MARKET_DATA, message, keys=keys, maxlen=500, codec=codec)

    length = redis_sync.xlen(keys.stream(Topic.MARKET_DATA))
    assert 500 <= length < 1_000  # approximate trimming removes whole nodes only


async def test_publisher__retention_trims_entries_older_than_the_window(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    codec = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
    stream = keys.stream(Topic.MARKET_DATA)
    # Entries from the year 2000, far outside a one-hour window.
    for i in range(1, 301):
        await redis_async.xadd(stream, {"old": "1"}, id=f"946684800000-{i}")
    publisher = Publisher(redis_async, codec, keys=keys, service=ServiceName.WS, retention_ms=3_600_000)

    await publisher.publish_many(Topic.MARKET_DATA, make_messages(codec, Topic.MARKET_DATA, 10))

    entries = await redis_async.xrange(stream)
    assert len(entries) == 10
    assert all(b"old" not in fields for _, fields in entries)


def _stream_order(entry_id: str) -> tuple[int, int]:
    # Stream ids compare as (ms, sequence) numbers: as strings "...-10" sorts before "...-9".
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


async def test_publisher__counts_published_messages(redis_async: aioredis.Redis, keys: KeySpace) -> None:
    codec = CODECS["legacy"]
    consumer_metrics = StreamConsumer(
        redis_async, topic=Topic.ORDERS, service=ServiceName.EXECUTION, codec=codec, keys=keys, instance="x"
    ).metrics
    publisher = Publisher(redis_async, codec, keys=keys, service=ServiceName.RISK, metrics=consumer_metrics)

    ids = await publisher.publish_many(Topic.ORDERS, make_messages(codec, Topic.ORDERS, 25))
    one = await publisher.publish(Topic.ORDERS, make_messages(codec, Topic.ORDERS, 1, start=25)[0])

    assert len(set(ids)) == 25
    assert _stream_order(one) > _stream_order(ids[-1])
    assert consumer_metrics.snapshot()["published"] == 26


def test_stream_entry__readable_in_redis_cli_as_one_json_value_per_field(
    redis_sync: redis.Redis, keys: KeySpace
) -> None:
    codec = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
    message = make_messages(codec, Topic.SIGNALS, 1)[0]

    publish_message(redis_sync, Topic.SIGNALS, message, keys=keys)

    [(_, fields)] = redis_sync.xrange(keys.stream(Topic.SIGNALS))
    decoded = {k.decode(): json.loads(v) for k, v in fields.items()}
    assert decoded == codec.as_dict(Topic.SIGNALS, message)


async def test_from_settings__publisher_and_consumer_follow_key_prefix_and_tuning(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    settings = ServiceSettings.load(
        ServiceName.RISK,
        environ={
            "KEY_PREFIX": keys.prefix,
            "STREAM_MAXLEN": "300",
            "CONSUMER_BATCH": "7",
            "MAX_DELIVERIES": "2",
        },
    )
    codec = CODECS["pydantic-strict"]
    publisher = Publisher.from_settings(redis_async, settings, codec=codec, service=ServiceName.RISK)
    consumer = StreamConsumer.from_settings(
        redis_async, settings, topic=Topic.ORDERS, service=ServiceName.EXECUTION, codec=codec
    )
    await consumer.ensure_group()

    await publisher.publish_many(Topic.ORDERS, make_messages(codec, Topic.ORDERS, 1_000))
    handled = await consumer.poll_once(Collector())

    assert (consumer.batch_size, consumer.max_deliveries, publisher.trim.maxlen) == (7, 2, 300)
    assert handled == 7
    assert await redis_async.xlen(keys.stream(Topic.ORDERS)) < 1_000
