"""Versions on the real Redis: the live producer gate, an unknown version dead-lettered, and a
v2.0 producer feeding a v1.0-coded service that acts exactly as on v1.0 input."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import build_codec
from core.codec.fields import decode_field_map, encode_field_map
from core.errors import ConfigError
from core.redis import Publisher
from core.status import StatusReporter
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from core.versions.codec import VersionedCodec
from services.risk.service import RiskService
from services.runtime import ServiceContext, run_consuming_service
from tests.ops_helpers import cdb_json, live_service, reporting, service_settings, wait_state
from tests.transport_helpers import make_messages, valid_values

pytestmark = pytest.mark.integration

STRICT = build_codec(CodecPath.PYDANTIC, Profile.STRICT)


def _writer(topic: Topic, version: str) -> VersionedCodec:
    return VersionedCodec(build_codec(CodecPath.PYDANTIC, Profile.STRICT), writes={topic: version})


async def test_live_gate__producer_refused_while_a_live_consumer_cannot_read_its_version(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str
) -> None:
    old_execution = service_settings(ServiceName.EXECUTION, keys, "exe-old")  # legacy: reads v1.0 only
    risk = service_settings(
        ServiceName.RISK, keys, "risk-new", use_pydantic_contracts=True, produce_version_orders="v1.1"
    )
    async with reporting(redis_async, old_execution):
        ctx = ServiceContext.create(ServiceName.RISK, risk, redis_async)
        with pytest.raises(ConfigError) as caught:
            await run_consuming_service(RiskService(ctx), ctx, asyncio.Event())
        # cdb runs its own event loop: from a thread, as an operator's shell would beside the services
        status = await asyncio.to_thread(
            cdb_json, "status", "--redis-url", redis_url, "--prefix", keys.prefix
        )
    assert caught.value.variable == "PRODUCE_VERSION_ORDERS"
    assert caught.value.accepted == ("v1.0",)
    assert "execution/exe-old (reads v1.0)" in str(caught.value)
    (row,) = status["instances"]  # the refused producer never reported itself
    assert (row["instance"], row["reads"], row["writes"]) == (
        "exe-old",
        {"orders": ["v1.0"]},
        {"order_results": "v1.0"},
    )


async def test_live_gate__producer_starts_once_every_consumer_reads_its_version(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    new_execution = service_settings(ServiceName.EXECUTION, keys, "exe-new", use_pydantic_contracts=True)
    risk = service_settings(
        ServiceName.RISK, keys, "risk-new", use_pydantic_contracts=True, produce_version_orders="v1.1"
    )
    async with reporting(redis_async, new_execution), live_service(redis_async, risk):
        state = await wait_state(redis_async, keys, ServiceName.RISK, "risk-new")
    assert state.writes == {"orders": "v1.1"}
    assert state.reads == {"signals": ["v1.0", "v2.0"]}


async def test_live_gate__a_consumer_that_stopped_cleanly_does_not_hold_back_a_producer(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    # The rolling upgrade's usual order: the legacy execution is stopped and replaced by one on
    # the Pydantic path, then risk is recreated writing v1.1. The old instance's last report
    # ("stopped", kept 30 s for cdb status) says it reads v1.0 only, but it reads nothing any more.
    old_execution = service_settings(ServiceName.EXECUTION, keys, "exe-old")
    new_execution = service_settings(ServiceName.EXECUTION, keys, "exe-new", use_pydantic_contracts=True)
    risk = service_settings(
        ServiceName.RISK, keys, "risk-new", use_pydantic_contracts=True, produce_version_orders="v1.1"
    )
    old = ServiceContext.create(ServiceName.EXECUTION, old_execution, redis_async)
    await StatusReporter(redis_async, keys, old.live_state).report_stopped()
    async with reporting(redis_async, new_execution), live_service(redis_async, risk):
        state = await wait_state(redis_async, keys, ServiceName.RISK, "risk-new")
    assert state.writes == {"orders": "v1.1"}


async def test_consumer_gate__a_rolled_back_consumer_refused_while_a_live_producer_writes_what_it_cannot_read(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    """The way back: risk rolled back to the legacy path (reads v1.0 only) while signal still
    writes v2.0 would dead-letter every signal; it is refused at start, naming the producer."""
    signal = service_settings(
        ServiceName.SIGNAL, keys, "sig-new", use_pydantic_contracts=True, produce_version_signals="v2.0"
    )
    legacy_risk = service_settings(ServiceName.RISK, keys, "risk-old")
    async with reporting(redis_async, signal):
        ctx = ServiceContext.create(ServiceName.RISK, legacy_risk, redis_async)
        with pytest.raises(ConfigError) as caught:
            async with asyncio.timeout(10):  # (it would run on, dead-lettering every signal)
                await run_consuming_service(RiskService(ctx), ctx, asyncio.Event())
    assert caught.value.variable == "PRODUCE_VERSION_SIGNALS"
    assert (caught.value.value, caught.value.accepted) == ("v2.0", ("v1.0",))
    assert "signal/sig-new (writes v2.0)" in str(caught.value)
    assert await redis_async.xlen(keys.dlq(Topic.SIGNALS)) == 0  # nothing read, nothing parked


async def test_consumer_gate__starts_once_the_producer_moved_back_or_stopped(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    moved_back = service_settings(ServiceName.SIGNAL, keys, "sig-back", use_pydantic_contracts=True)
    stopped = service_settings(
        ServiceName.SIGNAL, keys, "sig-gone", use_pydantic_contracts=True, produce_version_signals="v2.0"
    )
    gone = ServiceContext.create(ServiceName.SIGNAL, stopped, redis_async)
    await StatusReporter(redis_async, keys, gone.live_state).report_stopped()
    legacy_risk = service_settings(ServiceName.RISK, keys, "risk-old")
    async with reporting(redis_async, moved_back), live_service(redis_async, legacy_risk):
        state = await wait_state(redis_async, keys, ServiceName.RISK, "risk-old")
    assert state.reads == {"signals": ["v1.0"]}


async def test_unknown_version__dead_lettered_by_a_running_service_while_known_ones_are_handled(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    risk = service_settings(ServiceName.RISK, keys, "risk-1", use_pydantic_contracts=True)
    (s0, s1, s2) = make_messages(STRICT, Topic.SIGNALS, 3)
    stream = keys.stream(Topic.SIGNALS)
    async with live_service(redis_async, risk) as ctx:
        await redis_async.xadd(stream, STRICT.to_fields(Topic.SIGNALS, s0))
        await redis_async.xadd(stream, _writer(Topic.SIGNALS, "v2.0").to_fields(Topic.SIGNALS, s1))
        unknown = {**_writer(Topic.SIGNALS, "v2.0").to_fields(Topic.SIGNALS, s2), "api_version": '"v3.0"'}
        await redis_async.xadd(stream, unknown)
        async with asyncio.timeout(10):
            while ctx.live_state().counts.get("messages_ok", 0) + ctx.live_state().counts.get(
                "messages_invalid", 0
            ) < 3 or not await redis_async.xlen(keys.dlq(Topic.SIGNALS)):
                await asyncio.sleep(0.02)
        counts = ctx.live_state().counts
    assert counts["messages_ok"] == 2
    (entry,) = await redis_async.xrange(keys.dlq(Topic.SIGNALS))
    errors = json.loads(entry[1][b"error"])
    assert [e["type"] for e in errors] == ["unknown_api_version"]
    assert "v1.0, v2.0" in errors[0]["msg"]


async def _orders_from(redis: aioredis.Redis, keys: KeySpace, signal_version: str) -> list[dict[str, Any]]:
    """Run risk (its code on v1.0) on 30 signals written as ``signal_version``; its orders' values."""
    risk = service_settings(ServiceName.RISK, keys, "risk-mix", use_pydantic_contracts=True)
    signals = make_messages(STRICT, Topic.SIGNALS, 30)
    async with live_service(redis, risk) as ctx:
        await Publisher(
            redis, _writer(Topic.SIGNALS, signal_version), keys=keys, service=ServiceName.SIGNAL
        ).publish_many(Topic.SIGNALS, signals)
        async with asyncio.timeout(10):
            while ctx.live_state().counts.get("messages_ok", 0) < len(signals):
                await asyncio.sleep(0.02)
    entries = await redis.xrange(keys.stream(Topic.ORDERS))
    # timestamp: when risk approved, from its clock; every other value follows from the input
    return [{k: v for k, v in decode_field_map(f).items() if k != "timestamp"} for _, f in entries]


async def test_version_mix__v2_0_signals_make_the_same_orders_as_v1_0_signals(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    baseline = await _orders_from(redis_async, keys, "v1.0")
    decimal = await _orders_from(redis_async, KeySpace(f"{keys.prefix}v2:"), "v2.0")
    assert baseline, "risk approved no order: the comparison would prove nothing"
    assert decimal == baseline
    assert {o["api_version"] for o in baseline} == {"v1.0"}


async def test_version_mix__producer_writing_v2_0_puts_decimal_strings_on_the_stream(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    trade = STRICT.build(Topic.MARKET_DATA, {**valid_values(Topic.MARKET_DATA, 0), "price": 0.1})
    await Publisher(
        redis_async, _writer(Topic.MARKET_DATA, "v2.0"), keys=keys, service=ServiceName.SIGNAL
    ).publish_many(Topic.MARKET_DATA, [trade])
    ((_, fields),) = await redis_async.xrange(keys.stream(Topic.MARKET_DATA))
    assert fields[b"price"] == b'"0.1"'
    assert b"volume" not in fields
    assert fields[b"quantity"] == encode_field_map({"q": str(trade.volume)})["q"].encode()
