"""The pieces behind 'nothing ignored silently' and 'one bad message never harms another'."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from cdb.cli.status import instance_row
from core.codec import Decoded
from core.errors import ContractError
from core.ignored import IgnoredLog
from core.logging import configure_logging
from core.metrics import IgnoreReason, ServiceMetrics
from core.redis import Publisher, StreamConsumer
from core.status import LiveState
from core.topics import KeySpace, ServiceName, Topic
from tests.transport_helpers import CODECS, make_messages

CODEC = CODECS["legacy"]


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The JSON log lines written during the test."""
    buffer = io.StringIO()
    configure_logging("INFO", stream=buffer)
    yield buffer
    configure_logging()


def _ignored_logs(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if '"service.ignored"' in line]


def test_ignored_log__counts_every_message_and_logs_at_most_once_per_interval_with_the_sum(
    log_lines: io.StringIO,
) -> None:
    now = [100.0]
    metrics = ServiceMetrics(ServiceName.SIGNAL)
    log = IgnoredLog(metrics, every_s=10.0, clock=lambda: now[0])
    for _ in range(5):
        log.note(Topic.MARKET_DATA, IgnoreReason.STALE, symbol="X")
    log.note(Topic.MARKET_DATA, IgnoreReason.DUPLICATE)
    now[0] += 10.0
    log.note(Topic.MARKET_DATA, IgnoreReason.STALE)

    want = {"stale": 6, "duplicate": 1, "time_filled": 0, "gone": 0}
    assert metrics.snapshot()["ignored_by_reason"] == want
    lines = [(line["reason"], line["count"]) for line in _ignored_logs(log_lines)]
    assert lines == [("stale", 1), ("duplicate", 1), ("stale", 5)]  # 4 held back + the new one


def test_status_row__shows_ignored_by_reason_from_the_live_state() -> None:
    metrics = ServiceMetrics(ServiceName.RISK)
    metrics.count_ignored(Topic.SIGNALS, IgnoreReason.DUPLICATE, 3)
    state = LiveState("risk", "r1", "legacy", None, False, "1", 0, counts=metrics.snapshot())
    row = instance_row(state, at_ms=1)
    assert (row["ignored"], row["ignored_by_reason"]) == (3, {"duplicate": 3})


async def test_publisher_defer__an_unwritable_string_raises_contract_error_and_queues_nothing(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    publisher = Publisher(redis_async, CODEC, keys=keys, service=ServiceName.RISK)
    (order,) = make_messages(CODEC, Topic.ORDERS, 1)
    order.symbol = "X\ud800"
    with pytest.raises(ContractError) as caught:
        publisher.defer(Topic.ORDERS, order)
    assert caught.value.reason == "serialization"
    assert caught.value.errors[0]["loc"] == ("symbol",)
    assert publisher.deferred == 0


async def test_publisher_discard__takes_back_only_the_outputs_of_that_input(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    publisher = Publisher(redis_async, CODEC, keys=keys, service=ServiceName.RISK)
    orders = make_messages(CODEC, Topic.ORDERS, 4)
    for source, order in zip(["1-0", "2-0", "1-0", "3-0"], orders, strict=True):
        publisher.begin(source)
        publisher.defer(Topic.ORDERS, order)
    assert publisher.discard("1-0") == 2
    assert await publisher.flush_outputs() == {}
    written = [json.loads(f[b"order_id"]) for _, f in await redis_async.xrange(keys.stream(Topic.ORDERS))]
    assert written == [orders[1].order_id, orders[3].order_id]


async def test_consumer__an_entry_deleted_while_pending_is_acked_and_counted_gone(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    publisher = Publisher(redis_async, CODEC, keys=keys, service=ServiceName.RISK)
    ids = await publisher.publish_many(Topic.ORDERS, make_messages(CODEC, Topic.ORDERS, 3))

    def consumer() -> StreamConsumer:
        return StreamConsumer(
            redis_async,
            topic=Topic.ORDERS,
            service=ServiceName.EXECUTION,
            codec=CODEC,
            keys=keys,
            instance="e1",
            block_ms=0,
        )

    first = consumer()
    await first.ensure_group()
    assert len(await first.io.read_new(10, None)) == 3  # read, then the process dies: all pending
    await redis_async.xdel(keys.stream(Topic.ORDERS), ids[1])
    handled: list[str] = []

    async def handler(decoded: Decoded, entry_id: str) -> None:
        handled.append(entry_id)

    restarted = consumer()  # same name: re-reads its own pending entries first
    await restarted.poll_once(handler)

    assert handled == [ids[0], ids[2]]
    assert restarted.metrics.snapshot()["ignored_by_reason"]["gone"] == 1
    assert await restarted.lag() == 0


def test_newest_acked__the_last_entry_of_the_batch_that_was_acknowledged_whatever_the_ledger_order() -> None:
    from core.redis.consumer import _newest
    from core.redis.consumer_io import id_key

    ids = [b"9-5", b"10-0", b"10-2", b"10-11", b"11-0"]  # a batch: one reply, in id order
    entries = [(raw_id, {b"f": b"1"}) for raw_id in ids]
    # 11-0 left pending (its handler failed); 10-2 moved to the ledger's end (its output failed).
    done = [b"9-5", b"10-0", b"10-11", b"10-2"]
    assert _newest(entries, done) == b"10-11"
    assert id_key(_newest(entries, done)) == max(map(id_key, done))  # what it replaces
    assert _newest(entries, [b"9-5"]) == b"9-5"
    assert _newest(entries, [b"13-0", b"12-0"]) == b"13-0"  # none of the batch: the general way
