"""ws re-sending the trades the replicas did not acknowledge (REDIS_WAIT_REPLICAS) keeps every
symbol's trades in order: signal applies each trade once, in the order the exchange sent it, and
counts nothing valid as stale (re-sent copies of trades it already applied are duplicates).

Why it holds: a symbol lives in one partition stream, written by one publish at a time on one
connection; a short ``WAIT`` leaves unconfirmed that chunk and everything after it in the call
(a suffix of the partition's messages, never a confirmed message after an unconfirmed one), which
ws sends again in order; and a promoted replica holds a prefix of what the primary wrote. So in
the stream, every trade's first copy comes after the first copies of the trades before it.

The replicas' answers are faked on the real server: the publisher's ``WAIT`` is swapped for a
script that pops the next planned acknowledgement count (and, to stand for a fail-over to a
replica that had only part of the unconfirmed entries, drops the stream's newest entries).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import build_codec
from core.metrics import IgnoreReason
from core.redis.publisher import DEFAULT_CHUNK
from core.redis.retry import RetryPolicy
from core.redis.wire import pack_command
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from services.runtime import ServiceContext
from services.signal.strategy import MomentumStrategy
from services.ws.service import WsService
from services.ws.trades import Side, Trade
from tests.ops_helpers import service_settings

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT"]
READER = build_codec(CodecPath.PYDANTIC)

FAKE_WAIT = """
local step = redis.call('LPOP', KEYS[1])
if not step then return 1 end
local acked, keep = string.match(step, '^(%d+):?(%d*)$')
if keep ~= '' then
  local entries = redis.call('XRANGE', KEYS[2], '-', '+')
  for i = tonumber(keep) + 1, #entries do redis.call('XDEL', KEYS[2], entries[i][1]) end
end
return tonumber(acked)
"""
"""Stands in for ``WAIT 1 <ms>``: the next planned step, ``"<acked>"`` or ``"<acked>:<keep>"``
(then the stream keeps only its first ``keep`` entries: a fail-over to a replica that had those);
1 (acknowledged) once the plan is used up."""


def _trades(n: int, symbols: list[str]) -> list[Trade]:
    # Every trade of a symbol strictly later than the one before: out of order would be stale.
    return [
        Trade(
            symbol=symbols[i % len(symbols)],
            price=100.0 + i,
            volume=1.0,
            side=Side.BUY,
            timestamp=T0 + i,
            trade_id=f"t-{i:03d}",
        )
        for i in range(n)
    ]


async def _ws(
    redis_async: aioredis.Redis, keys: KeySpace, plan: list[str], *, partitions: int = 1, chunk: int
) -> WsService:
    """ws with replica acknowledgement on, the replicas answering as ``plan`` says."""
    settings = service_settings(
        ServiceName.WS,
        keys,
        "ws-1",
        use_pydantic_contracts=True,
        redis_wait_replicas=1,
        topic_partitions=partitions,
    )
    ws = WsService(ServiceContext.create(ServiceName.WS, settings, redis_async))
    publisher = ws.ctx.publisher
    publisher.chunk = chunk
    publisher.retry = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.01, jitter_s=0.0, deadline_s=5.0)
    plan_key = f"{keys.prefix}fake-wait-plan"
    if plan:
        await redis_async.rpush(plan_key, *plan)
    # A fail-over step trims the one stream; with partitions the plan only answers (no trimming).
    stream = keys.stream(Topic.MARKET_DATA) if partitions == 1 else plan_key
    publisher._wait = pack_command(["EVAL", FAKE_WAIT, "2", plan_key, stream])  # the fake replicas
    return ws


async def _publish(ws: WsService, trades: list[Trade]) -> None:
    messages = [ws.build_or_refusal(t) for t in trades]
    await ws.publish_batch(messages)


async def _signal_reads(ws: WsService) -> tuple[dict[str, list[str]], Counter[Any]]:
    """What signal makes of ws's streams, partition by partition in entry order: the trade ids it
    applied per symbol, and what it ignored, by reason."""
    strategy = MomentumStrategy()
    applied: dict[str, list[str]] = {}
    for stream in ws.ctx.keys.streams(Topic.MARKET_DATA):
        for entry_id, fields in await ws.ctx.redis.xrange(stream):
            trade = READER.from_fields(Topic.MARKET_DATA, fields, entry_id=entry_id).message
            if strategy.decide(trade, entry_id.decode()).ignored is None:
                applied.setdefault(trade.symbol, []).append(trade.trade_id)
    return applied, strategy.ignored


def _in_order(trades: list[Trade]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in trades:
        out.setdefault(t.symbol, []).append(str(t.trade_id))
    return out


async def _stream_length(ws: WsService) -> int:
    return sum([await ws.ctx.redis.xlen(s) for s in ws.ctx.keys.streams(Topic.MARKET_DATA)])


async def test_ws_resend__a_short_chunk_then_an_acknowledged_one__keeps_each_symbol_in_order(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    # Chunks of 3: the first acknowledged, the second short, the third (already written behind
    # it on the connection) acknowledged. The second chunk and everything after it is re-sent.
    ws = await _ws(redis_async, keys, ["1", "0"], chunk=3)
    trades = _trades(10, SYMBOLS[:2])
    await _publish(ws, trades)

    assert ws.ctx.extra_counts["trades_resent"] == 7
    applied, ignored = await _signal_reads(ws)
    assert applied == _in_order(trades)
    assert set(ignored) <= {IgnoreReason.DUPLICATE}
    assert ignored[IgnoreReason.DUPLICATE] == await _stream_length(ws) - len(trades)


async def test_ws_resend__one_partition_short_among_several__keeps_each_symbol_in_order(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    # 4 partitions published concurrently in chunks of 2: the first WAIT to run comes back short
    # (whichever partition it is), then one more later on; the rest are acknowledged.
    ws = await _ws(redis_async, keys, ["0", "1", "1", "0"], partitions=4, chunk=2)
    trades = _trades(40, SYMBOLS)
    await _publish(ws, trades)

    assert ws.ctx.extra_counts["trades_resent"] > 0
    applied, ignored = await _signal_reads(ws)
    assert applied == _in_order(trades)
    assert set(ignored) <= {IgnoreReason.DUPLICATE}
    assert ignored[IgnoreReason.DUPLICATE] == await _stream_length(ws) - len(trades)


@pytest.mark.parametrize("survivors", [0, 1, 3])
async def test_ws_resend__a_fail_over_keeps_some_of_the_unconfirmed_trades__keeps_each_symbol_in_order(
    redis_async: aioredis.Redis, keys: KeySpace, survivors: int
) -> None:
    # One chunk per call, as the outbox sends (a batch is at most one chunk): 4 trades confirmed,
    # then 5 that the replica had only ``survivors`` of when it was promoted; ws re-sends all 5.
    ws = await _ws(redis_async, keys, ["1", f"0:{4 + survivors}"], chunk=10)
    trades = _trades(9, SYMBOLS[:2])
    await _publish(ws, trades[:4])
    await _publish(ws, trades[4:])

    assert ws.ctx.extra_counts["trades_resent"] == 5
    assert await _stream_length(ws) == 4 + survivors + 5
    applied, ignored = await _signal_reads(ws)
    assert applied == _in_order(trades)
    assert ignored == Counter({IgnoreReason.DUPLICATE: survivors}) - Counter()


async def test_ws_resend__a_whole_batch_of_one_symbol_again__is_counted_as_duplicates_not_stale(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    # The outbox's batch (up to one publish chunk) of a busy symbol, short once and re-sent whole:
    # every copy is a trade signal applied, so a duplicate. Counted stale, it looked like trades
    # arriving out of order (what the audit saw), although none was lost.
    ws = await _ws(redis_async, keys, ["0"], chunk=DEFAULT_CHUNK)
    trades = _trades(500, SYMBOLS[:1])
    await _publish(ws, trades)

    assert ws.ctx.extra_counts["trades_resent"] == 500
    applied, ignored = await _signal_reads(ws)
    assert applied == _in_order(trades)
    assert ignored == Counter({IgnoreReason.DUPLICATE: 500})
