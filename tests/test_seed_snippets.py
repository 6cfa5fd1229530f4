"""The seed report's target code, run against the project on a real Redis (issue 14, Build 9).

Each test is one "ZIEL" (target) snippet of /work/shared/seed/000_209fb5141a32dad5.txt as an
engineer would paste it into a service. Adapted only where the contracts add fields the
snippet elides (``...``: signal_id, price, strength, reason, quantity, fee, simulated) and
where the snippet's own timestamp is in seconds (``utcnow().timestamp()``): that one is run
as written first, and must be refused with a message that says "seconds" and names the
millisecond helper. The server is a redis-server of this module's own, so the snippets keep
their literal channel and stream names (``"signals"``, ``"orders_stream"``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from core.codec import build_codec
from core.domain.contracts import MarketDataV1, OrderResultV1, OrderV1, SignalV1
from core.errors import ConfigError
from core.redis.publisher import publish_message
from core.topics import CodecPath, Profile, Topic
from core.utils.clock import FrozenClock, now_ms, to_ms, utcnow
from migration.legacy import MarketData
from tests.support.servers import ThrowawayRedis

pytestmark = pytest.mark.integration

STRICT = build_codec(CodecPath.PYDANTIC, Profile.STRICT)


@pytest.fixture(scope="module")
def seed_redis() -> Iterator[redis.Redis]:
    """A redis-server of this module's own: the seed's unprefixed names touch nobody else."""
    server = ThrowawayRedis().start()
    client = redis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        client.close()
        server.close()


@pytest.fixture
def redis_client(seed_redis: redis.Redis) -> redis.Redis:
    seed_redis.flushdb()  # the module's own server, emptied between snippets
    return seed_redis


def _subscribe(client: redis.Redis, channel: str) -> Any:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    return pubsub


def _get_message(pubsub: Any) -> dict[str, Any]:
    # The seed calls pubsub.get_message() once; a real subscriber polls until data arrives.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            return dict(message)
    raise AssertionError("no message arrived on the channel")


@dataclass
class _Deal:
    """A MEXC aggregated deal, as the ws snippet reads it (prices already numbers)."""

    price: float
    volume: float
    isBuyer: bool  # noqa: N815 -- the protobuf field name the seed uses


@dataclass
class _Msg:
    timestamp: int


# --- 1.2 market_data: ws publishes, signal subscribes -------------------------------------------


def test_seed_market_data__ws_snippet_publishes_what_the_signal_snippet_validates(
    redis_client: redis.Redis,
) -> None:
    base_currency, quote_currency = "BTC", "USDT"
    deal, msg = _Deal(price=87_250.5, volume=0.25, isBuyer=True), _Msg(timestamp=1_767_225_600_123)
    pubsub = _subscribe(redis_client, "market_data")

    # ws (ZIEL), verbatim: no api_version spelled out, the contract defaults it.
    market_data = MarketDataV1(
        symbol=f"{base_currency}/{quote_currency}",
        price=deal.price,
        volume=deal.volume,
        timestamp=msg.timestamp,
        side="BUY" if deal.isBuyer else "SELL",
        venue="mexc",
    )
    redis_client.publish("market_data", market_data.model_dump_json())

    # signal (ZIEL), verbatim apart from polling for the message.
    message = _get_message(pubsub)
    try:
        received = MarketDataV1.model_validate_json(message["data"])
    except ValidationError as e:
        pytest.fail(f"Invalid market_data schema: {e}")
    assert received == market_data
    assert (received.api_version, received.symbol, received.timestamp) == ("v1.0", "BTC/USDT", msg.timestamp)
    # And a legacy subscriber (Phase 1's else-branch) reads the same body.
    legacy = MarketData.from_dict(json.loads(message["data"]))
    assert (legacy.price, legacy.volume, legacy.timestamp) == (deal.price, deal.volume, msg.timestamp)


def test_seed_ws__section_5_1_snippet_with_seconds_is_refused_naming_the_ms_helper(
    frozen_clock: FrozenClock,
) -> None:
    with pytest.raises(ValidationError) as info:
        MarketDataV1(symbol="BTC", price=50000, timestamp=int(utcnow().timestamp()), volume=1.5)
    text = str(info.value)
    assert "looks like epoch seconds" in text
    assert "core.utils.clock.now_ms()" in text
    # Adapted for what the contract adds (side, venue; price as a float) and for ms.
    fixed = MarketDataV1(
        symbol="BTC", price=50000.0, timestamp=now_ms(), volume=1.5, side="BUY", venue="mexc"
    )
    assert fixed.timestamp == frozen_clock.ms


# --- 1.3 signals: signal publishes, risk subscribes ---------------------------------------------


def test_seed_signals__utcnow_timestamp_as_written_is_refused_as_seconds(frozen_clock: FrozenClock) -> None:
    with pytest.raises(ValidationError) as info:
        SignalV1(
            symbol="BTC",
            side="BUY",
            timestamp=utcnow().timestamp(),
            signal_id="sig-1",
            price=87_000.0,
            strength=0.5,
            reason="momentum",
        )
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [("timestamp",)]
    assert "looks like epoch seconds" in errors[0]["msg"]
    assert "core.utils.clock.now_ms()" in errors[0]["msg"]
    assert "to_ms" in errors[0]["msg"]


def test_seed_signals__publish_and_validate_with_a_ms_timestamp(
    redis_client: redis.Redis, frozen_clock: FrozenClock
) -> None:
    pubsub = _subscribe(redis_client, "signals")
    signal = SignalV1(
        symbol="BTC",
        side="BUY",
        timestamp=to_ms(utcnow()),  # adapted: the seed's utcnow().timestamp() is seconds
        signal_id="sig-BTC-1",
        price=87_000.0,
        strength=0.5,
        reason="momentum +0.4%",
    )
    redis_client.publish("signals", signal.model_dump_json())

    message = _get_message(pubsub)
    received = SignalV1.model_validate_json(message["data"])  # risk (ZIEL), verbatim
    assert received == signal
    assert received.timestamp == frozen_clock.ms


# --- 1.4 orders: risk publishes (Pub/Sub + stream), execution subscribes ------------------------


def _order() -> OrderV1:
    return OrderV1(
        order_id="ord-1",
        symbol="BTC",
        side="BUY",
        timestamp=now_ms(),
        signal_id="sig-BTC-1",
        order_type="MARKET",
        quantity=0.01,
    )


def test_seed_orders__xadd_of_model_dump_fails_as_designed_and_publish_message_replaces_it(
    redis_client: redis.Redis, frozen_clock: FrozenClock
) -> None:
    """The seed's ``redis.xadd("orders_stream", order.model_dump())`` cannot carry a MARKET
    order's ``price=None`` (redis-py refuses None); the project's ``publish_message`` can."""
    pubsub = _subscribe(redis_client, "orders")
    order = _order()
    redis_client.publish("orders", order.model_dump_json())
    with pytest.raises(redis.DataError):
        redis_client.xadd("orders_stream", order.model_dump())  # type: ignore[arg-type]
    assert redis_client.xlen("orders_stream") == 0

    entry_id = publish_message(redis_client, "orders", order)

    [(stream_id, fields)] = redis_client.xrange("orders_stream")
    assert stream_id.decode() == entry_id
    assert STRICT.from_fields(Topic.ORDERS, fields, entry_id=stream_id).message == order
    for _ in range(2):  # execution (ZIEL): both bodies validate into the same order
        assert OrderV1.model_validate_json(_get_message(pubsub)["data"]) == order


# --- 1.5 order_results: execution publishes ------------------------------------------------------


def test_seed_order_results__publish_message_carries_bool_and_null_fields(
    redis_client: redis.Redis, frozen_clock: FrozenClock
) -> None:
    pubsub = _subscribe(redis_client, "order_results")
    order_result = OrderResultV1(
        order_id="ord-1",
        status="FILLED",
        timestamp=now_ms(),  # adapted: ms, not utcnow().timestamp()
        symbol="BTC",
        side="BUY",
        filled_quantity=0.01,
        average_price=87_000.0,
        fee=0.87,
        simulated=True,
    )
    with pytest.raises(redis.DataError):  # the seed's xadd: bool and None are refused by redis-py
        redis_client.xadd("order_results_stream", order_result.model_dump())  # type: ignore[arg-type]

    publish_message(redis_client, "order_results", order_result)

    assert OrderResultV1.model_validate_json(_get_message(pubsub)["data"]) == order_result
    [(stream_id, fields)] = redis_client.xrange("order_results_stream")
    decoded = STRICT.from_fields(Topic.ORDER_RESULTS, fields, entry_id=stream_id).message
    assert decoded == order_result
    assert (decoded.simulated, decoded.reason) == (True, None)


# --- 2.3 / 5.5 the shared helper, called as the seed calls it ---------------------------------


def test_seed_publish_message__plain_topic_name_publishes_to_channel_and_stream(
    redis_client: redis.Redis, frozen_clock: FrozenClock
) -> None:
    pubsub = _subscribe(redis_client, "signals")
    signal = SignalV1(
        signal_id="sig-ETH-1",
        symbol="ETH/USDT",
        side="SELL",
        price=3_000.0,
        strength=0.9,
        reason="r",
        timestamp=now_ms(),
    )
    publish_message(redis_client, "signals", signal)  # the seed's call, verbatim
    publish_message(redis_client, Topic.SIGNALS, signal)  # the enum still works

    assert [SignalV1.model_validate_json(_get_message(pubsub)["data"]) for _ in range(2)] == [signal, signal]
    entries = redis_client.xrange("signals_stream")
    assert [STRICT.from_fields(Topic.SIGNALS, f, entry_id=i).message for i, f in entries] == [signal, signal]


def test_seed_publish_message__unknown_topic_name_is_refused_listing_the_names(
    redis_client: redis.Redis, frozen_clock: FrozenClock
) -> None:
    with pytest.raises(ConfigError) as info:
        publish_message(redis_client, "signal", _order())
    assert info.value.accepted == ("market_data", "signals", "orders", "order_results")
    assert "'signal'" in str(info.value)
    assert redis_client.keys("*") == []


# --- 2.4 error handling ------------------------------------------------------------------------


def test_seed_error_handling__validation_error_names_the_missing_field() -> None:
    message = json.dumps({"side": "BUY", "price": 1.0, "strength": 0.5, "reason": "", "timestamp": now_ms()})
    try:
        SignalV1.model_validate_json(message)
    except ValidationError as e:
        errors = e.errors()
    else:
        pytest.fail("a signal without symbol and signal_id was accepted")
    assert {"loc": ("symbol",), "type": "missing"} in [{"loc": x["loc"], "type": x["type"]} for x in errors]


# --- 4.3 phase 1: both branches of the flag read the same message --------------------------------


@pytest.mark.parametrize("flag", ["true", "false"])
def test_seed_phase_1__either_branch_reads_a_pydantic_producers_message(
    monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    monkeypatch.setenv("USE_PYDANTIC_CONTRACTS", flag)
    message = MarketDataV1(
        symbol="BTC/USDT", price=1.5, volume=2.0, side="SELL", venue="mexc", timestamp=1_767_225_600_000
    ).model_dump_json()
    USE_PYDANTIC = os.getenv("USE_PYDANTIC_CONTRACTS", "false")  # noqa: N806 -- the seed's name
    if USE_PYDANTIC == "true":
        market_data: Any = MarketDataV1.model_validate_json(message)
    else:
        market_data = MarketData.from_dict(json.loads(message))  # OLD
    assert (market_data.symbol, market_data.price, market_data.timestamp) == (
        "BTC/USDT",
        1.5,
        1_767_225_600_000,
    )
