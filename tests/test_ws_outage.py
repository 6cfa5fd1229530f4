"""ws rides out a 30 s Redis outage: a replay waits and loses nothing, a live source sheds
what its buffer cannot hold and counts exactly that (throwaway redis-server, killed and
restarted with its append-only file)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis
from redis.asyncio.connection import AbstractConnection

from cdb.launcher import run_service
from core.redis import RetryPolicy, connect_async
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic
from services.runtime import ServiceContext
from services.ws.outbox import SHED_BUFFER_FULL, SHED_SHUTDOWN, Outbox, Overflow
from services.ws.replay import COLUMNS
from services.ws.service import WsService
from services.ws.trades import Side, Trade
from tests.support.servers import ThrowawayRedis, free_port
from tests.transport_helpers import poll_until

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0
"""Longer than the ~9 s ws survived before (the publisher's retries), and than any restart."""
KEYS = KeySpace("wsout:")
T0 = 1_767_225_600_000


def _trades(n: int) -> list[Trade]:
    # Two symbols, some sharing a millisecond: order within a symbol is what must hold.
    return [
        Trade(
            symbol=("BTC/USDT", "ETH/USDT")[i % 2],
            price=100.0 + i / 100,
            volume=0.5,
            side=Side.BUY if i % 3 else Side.SELL,
            timestamp=T0 + 10 * (i // 2),
            trade_id=f"t-{i:05d}",
        )
        for i in range(n)
    ]


def _write_csv(path: Path, trades: list[Trade]) -> Path:
    lines = [",".join(COLUMNS)]
    lines += [f"{t.timestamp},{t.symbol},{t.side.value},{t.price},{t.volume},{t.trade_id}" for t in trades]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _arrived(server: ThrowawayRedis) -> list[str]:
    """The trade ids on ``market_data_stream``, in stream order ([] while the server is down)."""
    client = redis.Redis.from_url(server.url, socket_connect_timeout=0.5)
    try:
        entries = client.xrange(KEYS.stream(Topic.MARKET_DATA))
    except redis.ConnectionError:
        return []
    finally:
        client.close()
    return [json.loads(fields[b"trade_id"]) for _, fields in entries]


async def _poll_arrived(server: ThrowawayRedis, done: int, timeout_s: float) -> list[str]:
    seen: list[str] = []

    async def poll() -> None:
        seen[:] = await asyncio.to_thread(_arrived, server)
        if len(seen) < done:
            await asyncio.sleep(0.1)

    await poll_until(poll, lambda: len(seen) >= done, timeout_s=timeout_s)
    return seen


async def test_ws_service__redis_down_30s_mid_replay__every_trade_arrives_once_in_order(
    throwaway_redis: ThrowawayRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trades = _trades(600)
    for name, value in {
        "REDIS_URL": throwaway_redis.url,
        "KEY_PREFIX": KEYS.prefix,
        "USE_PYDANTIC_CONTRACTS": "true",
        "WS_SOURCE": "replay",
        "WS_REPLAY_FILE": str(_write_csv(tmp_path / "trades.csv", trades)),
        "WS_REPLAY_PACE": "1",  # 3 s of trades at the recorded pace
        "WS_BUFFER_SIZE": "40",
    }.items():
        monkeypatch.setenv(name, value)
    stop = asyncio.Event()
    ws = asyncio.create_task(run_service(ServiceName.WS, stop))
    try:
        await _poll_arrived(throwaway_redis, 60, timeout_s=20)
        await asyncio.to_thread(throwaway_redis.kill)
        await asyncio.sleep(OUTAGE_S)  # the fault itself: Redis stays down this long
        assert not ws.done(), "ws must keep running through the outage"
        await asyncio.to_thread(throwaway_redis.start)
        arrived = await _poll_arrived(throwaway_redis, len(trades), timeout_s=60)
        assert not ws.done()
    finally:
        stop.set()
        await asyncio.wait_for(ws, timeout=30)

    ids = [t.trade_id for t in trades]
    assert _resent_block(arrived, ids) is not None, arrived  # every trade, in order


def _resent_block(arrived: list[str], ids: list[str]) -> tuple[int, int] | None:
    """``(j, k)`` when ``arrived`` is ``ids[:k] + ids[j:]`` (``j == k``: each trade once), else None.

    Killed with ``kill -9`` after its append-only file took an XADD but before the reply went
    out, Redis keeps the entry and ws, never told, sends it again: a contiguous block of trades
    can arrive twice, right where the outage began (at-least-once; signal counts a trade once by
    its trade id). Anything else (a gap, a reordering, a duplicate elsewhere) is a defect."""
    extra = len(arrived) - len(ids)
    if extra < 0:
        return None
    for k in range(len(ids) + 1):
        j = k - extra
        if j >= 0 and arrived == ids[:k] + ids[j:]:
            return j, k
    return None


def test_resent_block__accepts_one_resent_block_only() -> None:
    ids = ["a", "b", "c", "d"]
    assert _resent_block(ids, ids) is not None
    assert _resent_block(["a", "b", "c", "b", "c", "d"], ids) == (1, 3)
    assert _resent_block(["a", "c", "b", "d"], ids) is None  # reordered
    assert _resent_block(["a", "b", "d"], ids) is None  # lost
    assert _resent_block(["a", "b", "a", "c", "d"], ids) is None  # a stray duplicate, not a resend


async def test_outbox__live_source_small_buffer_through_30s_outage__shed_count_equals_what_is_missing(
    throwaway_redis: ThrowawayRedis,
) -> None:
    client = connect_async(throwaway_redis.url)
    settings = ServiceSettings.load(
        ServiceName.WS, environ={}, overrides={"key_prefix": KEYS.prefix, "use_pydantic_contracts": True}
    )
    ctx = ServiceContext.create(ServiceName.WS, settings, client)
    outbox = Outbox(WsService(ctx), capacity=25, overflow=Overflow.SHED_OLDEST)
    stop = asyncio.Event()
    sender = asyncio.create_task(outbox.run(stop))
    trades = _trades(400)
    before, during, after = trades[:100], trades[100:300], trades[300:]
    try:
        for trade in before:
            await outbox.put(trade)
            await asyncio.sleep(0.005)  # a live feed waits for its next frame
        await _poll_arrived(throwaway_redis, len(before), timeout_s=20)
        await asyncio.to_thread(throwaway_redis.kill)
        for trade in during:  # a live feed keeps coming: 200 trades over the outage
            await outbox.put(trade)
            await asyncio.sleep(OUTAGE_S / len(during))
        assert not sender.done()
        assert ctx.extra_counts["ws_redis_down"] == 1
        await asyncio.to_thread(throwaway_redis.start)
        await poll_until(
            lambda: asyncio.sleep(0.05), lambda: ctx.extra_counts["ws_redis_down"] == 0, timeout_s=30
        )
        for trade in after:
            await outbox.put(trade)
            await asyncio.sleep(0.005)
        await asyncio.wait_for(outbox.drain(), timeout=60)
        arrived = await asyncio.to_thread(_arrived, throwaway_redis)
    finally:
        stop.set()
        await asyncio.wait_for(sender, timeout=30)
        await client.aclose()

    sent = [t.trade_id for t in trades]
    missing = [i for i in sent if i not in set(arrived)]
    assert outbox.shed[SHED_BUFFER_FULL] == len(missing) > 0
    counts = ctx.live_state().counts  # what cdb status shows
    assert (counts["shed_buffer_full"], counts["ws_redis_down"], counts["ws_buffered"]) == (
        len(missing),
        0,
        0,
    )
    shed_metric = ctx.metrics.registry.get_sample_value(
        "cdb_ws_shed_total", {"service": "ws", "reason": SHED_BUFFER_FULL}
    )
    assert shed_metric == len(missing)
    assert arrived == [i for i in sent if i not in set(missing)]  # the rest once, in order
    # The oldest held were shed: what is missing is one run of the outage's trades; the
    # freshest of them (what the buffer held when Redis came back) arrived.
    first = sent.index(missing[0])
    assert missing == sent[first : first + len(missing)]
    assert set(missing) <= {t.trade_id for t in during}
    assert during[-1].trade_id in arrived


async def test_outbox__stopped_while_redis_is_down__counts_what_it_held_as_shed(
    throwaway_redis: ThrowawayRedis,
) -> None:
    client = connect_async(throwaway_redis.url)
    settings = ServiceSettings.load(ServiceName.WS, environ={}, overrides={"key_prefix": KEYS.prefix})
    ctx = ServiceContext.create(ServiceName.WS, settings, client)
    ctx.publisher.retry = RetryPolicy(attempts=2, initial_s=0.01, max_s=0.02, jitter_s=0.0, deadline_s=1.0)
    outbox = Outbox(WsService(ctx), capacity=100, overflow=Overflow.WAIT)
    stop = asyncio.Event()
    sender = asyncio.create_task(outbox.run(stop))
    throwaway_redis.kill()
    try:
        for trade in _trades(30):
            await outbox.put(trade)
        await poll_until(lambda: asyncio.sleep(0.02), lambda: ctx.extra_counts.get("ws_redis_down") == 1)
        stop.set()
        await asyncio.wait_for(sender, timeout=30)
    finally:
        stop.set()
        await client.aclose()

    assert outbox.shed == {SHED_BUFFER_FULL: 0, SHED_SHUTDOWN: 30}
    assert ctx.extra_counts["shed_shutdown"] == 30
    assert outbox.buffered == 0


async def test_ws_service__bad_frame_while_redis_is_down__gives_its_letter_up_after_a_few_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bad frame is parked inside the live receive loop: the full transport retry policy
    # (10 attempts, ~9.5 s of backoff) would hold the next frames, and the pings, that long.
    connects = [0]
    original = AbstractConnection.connect

    async def counted(self: AbstractConnection) -> None:
        connects[0] += 1
        await original(self)

    monkeypatch.setattr(AbstractConnection, "connect", counted)
    client = connect_async(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens: Redis is down
    settings = ServiceSettings.load(ServiceName.WS, environ={}, overrides={"key_prefix": KEYS.prefix})
    ctx = ServiceContext.create(ServiceName.WS, settings, client)
    try:
        await WsService(ctx).on_bad_frame(b"\x0a\xff not protobuf", "frame_undecodable")
    finally:
        await client.aclose()

    assert ctx.extra_counts["bad_frames"] == 1
    assert ctx.extra_counts["dead_letters_lost_redis_down"] == 1  # counted (and logged), not raised
    assert 1 <= connects[0] <= 3, f"{connects[0]} connection attempts for one dead letter"
