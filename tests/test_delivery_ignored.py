"""Every trade counts once, and nothing is ignored silently: real services on real Redis.

Same-millisecond trades all reach the strategy; a redelivered entry, the same trade
published twice and an out-of-order trade are dropped on purpose, and each is counted
by reason in the metrics, in the live status (``cdb status --json``) and in the
Prometheus text, which all agree.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from cdb.cli.main import app
from core.codec import build_codec
from core.metrics import IgnoreReason
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from services.risk.service import RiskService
from services.runtime import ServiceContext
from services.signal.service import SignalService
from services.signal.strategy import SignalParams
from services.ws.replay import BUNDLED_TRADES_SMALL, load_trades
from tests.delivery_helpers import PATHS, drain, service_settings, value_fields

pytestmark = pytest.mark.integration

BASE_MS = 1_767_225_600_000
FIRING = SignalParams(window=2, threshold_bps=1, cooldown=0)
"""Every trade after a symbol's first fires when the price moved at least 1 bps."""


def _trade(price: float, ts: int, trade_id: str, volume: float = 1.0) -> dict[str, str]:
    return value_fields(
        {
            "symbol": "X/USDT",
            "price": price,
            "volume": volume,
            "side": "BUY",
            "venue": "mexc",
            "timestamp": ts,
            "trade_id": trade_id,
        }
    )


def _signal(i: int) -> dict[str, str]:
    return value_fields(
        {
            "signal_id": f"sig-{i}",
            "symbol": f"S{i}/USDT",
            "side": "BUY",
            "price": 100.0,
            "strength": 0.5,
            "reason": "test",
        }
    )


def _ignored_in_prometheus(ctx: ServiceContext) -> dict[str, int]:
    text = generate_latest(ctx.metrics.registry).decode()
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cdb_messages_ignored_total":
                out[sample.labels["reason"]] += int(sample.value)
    return dict(out)


def _status_json(redis_url: str, keys: KeySpace) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["status", "--redis-url", redis_url, "--prefix", keys.prefix, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("path", PATHS)
async def test_signal__trades_sharing_a_millisecond_all_count_and_fire_distinct_signals(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str, path: str
) -> None:
    prices = [100.0, 100.5, 101.0, 101.5, 102.0]  # one taker order walking five price levels
    entries = [_trade(p, BASE_MS, f"t{i}", volume=1.0 + i) for i, p in enumerate(prices)]
    settings = service_settings(ServiceName.SIGNAL, keys, redis_url, path)

    run = await drain(redis_async, settings, lambda ctx: SignalService(ctx, FIRING), entries)

    ids = [json.loads(f[b"signal_id"]) for f in run.outputs]
    assert len(ids) == len(prices) - 1  # every trade counted: each after the first fires
    assert len(set(ids)) == len(ids)
    assert run.ctx.metrics.snapshot()["ignored"] == 0
    assert run.ctx.metrics.snapshot()["messages_ok"] == len(prices)


@pytest.mark.parametrize("path", PATHS)
async def test_signal__stale_and_duplicate_trades_are_counted_alike_in_metrics_status_and_prometheus(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str, path: str
) -> None:
    entries = [
        _trade(100.0, BASE_MS + 10, "a"),
        _trade(101.0, BASE_MS + 11, "b"),
        _trade(101.0, BASE_MS + 11, "b"),  # the same trade published twice (a producer's retry)
        _trade(99.0, BASE_MS + 5, "old"),  # out of order: older than the symbol's last trade
    ]
    settings = service_settings(ServiceName.SIGNAL, keys, redis_url, path)
    seen: dict[str, Any] = {}

    async def redeliver_everything(ctx: ServiceContext) -> None:
        # What a consumer that lost its acknowledgements looks like: every entry comes again.
        await redis_async.xgroup_setid(keys.stream(Topic.MARKET_DATA), keys.group(ServiceName.SIGNAL), "0")

    async def look(ctx: ServiceContext) -> None:
        seen["status"] = await asyncio.to_thread(_status_json, redis_url, keys)

    run = await drain(
        redis_async,
        settings,
        lambda ctx: SignalService(ctx, FIRING),
        entries,
        then=redeliver_everything,
        inspect=look,
    )

    want = {"stale": 1, "duplicate": 1 + len(entries), "time_filled": 0, "gone": 0}
    snapshot = run.ctx.metrics.snapshot()
    assert snapshot["ignored_by_reason"] == want
    assert snapshot["ignored"] == sum(want.values())
    assert _ignored_in_prometheus(run.ctx) == {k: v for k, v in want.items() if v}
    (row,) = seen["status"]["instances"]
    assert row["ignored_by_reason"] == {k: v for k, v in want.items() if v}
    assert row["ignored"] == sum(want.values())
    assert len(run.outputs) == 2  # b's signal, and again for b's redelivered entry (at least once)
    assert {f[b"signal_id"] for f in run.outputs} == {json.dumps(f"sig-X/USDT-{BASE_MS + 11}").encode()}
    assert run.ctx.extra_counts["signals"] == 1


@pytest.mark.parametrize("path", PATHS)
async def test_risk__a_signal_published_twice_moves_the_position_once_and_is_counted_duplicate(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str, path: str
) -> None:
    settings = service_settings(ServiceName.RISK, keys, redis_url, path)
    services: list[RiskService] = []

    def make(ctx: ServiceContext) -> RiskService:
        services.append(RiskService(ctx))
        return services[-1]

    run = await drain(redis_async, settings, make, [_signal(1), _signal(2), _signal(1)])

    assert run.ctx.metrics.snapshot()["ignored_by_reason"][IgnoreReason.DUPLICATE.value] == 1
    assert run.ctx.extra_counts["orders"] == 2
    assert services[0].engine.positions == {"S1/USDT": 5.0, "S2/USDT": 5.0}
    assert run.live is not None
    assert run.live.counts["ignored_by_reason"]["duplicate"] == 1


def _bundled_entries() -> list[dict[str, str]]:
    codec = build_codec(CodecPath.LEGACY)
    return [
        codec.to_fields(Topic.MARKET_DATA, codec.build(Topic.MARKET_DATA, t.as_values()))
        for t in load_trades(BUNDLED_TRADES_SMALL)
    ]


@pytest.mark.parametrize("path", PATHS)
async def test_signal__a_trade_without_time_before_the_replay_changes_no_signal_and_is_accounted_for(
    redis_async: aioredis.Redis, redis_url: str, path: str
) -> None:
    timeless = {k: v for k, v in _trade(94_000.0, 0, "no-time").items() if k != "timestamp"}
    timeless["symbol"] = json.dumps("BTC/USDT")
    runs = []
    for entries in (_bundled_entries(), [timeless, *_bundled_entries()]):
        keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:")
        try:
            settings = service_settings(ServiceName.SIGNAL, keys, redis_url, path)
            runs.append(await drain(redis_async, settings, SignalService, entries))
        finally:
            found = [k async for k in redis_async.scan_iter(match=keys.all_keys_pattern())]
            if found:
                await redis_async.unlink(*found)
    plain, with_timeless = runs

    def signal_ids(run: Any) -> list[str]:
        return [json.loads(f[b"signal_id"]) for f in run.outputs]

    assert any(i.startswith("sig-BTC/USDT-") for i in signal_ids(plain)), "the data must fire BTC signals"
    assert signal_ids(with_timeless) == signal_ids(plain)
    accounted = (
        len(with_timeless.letters)
        + with_timeless.ctx.metrics.snapshot()["ignored_by_reason"][IgnoreReason.TIME_FILLED.value]
    )
    assert accounted == 1  # dead-lettered (legacy: no timestamp), or counted as ignored (lenient fill)
