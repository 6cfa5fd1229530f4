"""The load side of the end-to-end benchmark: a ws feed with fresh trades, and what to read back.

The feed replays the bundled trades (``services/ws/data/trades.csv``) over and over as ``COPIES`` copies of
each symbol (``BTC/USDT`` -> ``BTC0/USDT`` ... ``BTC63/USDT``), each copy starting at a
different point of the series, so signals do not all fire at once. Every trade gets a fresh
``trade_id`` and a fresh timestamp: the wall clock in ms when it is built (never before the last
of its symbol; trades of a symbol sharing a millisecond all count, so there is no bump that
would make a trade look younger than it is). ``max_ahead_ms`` reports how far a timestamp
ran ahead of the clock (0 unless the clock stepped back).

Latency needs no clock in the services: the signal id carries the trade's timestamp
(``sig-<symbol>-<trade ms>``), the order id carries the signal id and the order result the
order id, and each Redis Stream entry id starts with the server's clock at ``XADD``. So
market_data -> order_result latency = (order_results entry id ms) - (trade ms), at 1 ms
resolution, on the one clock of this machine.

With ``probe_every`` > 0 every that-many-th trade is one of the probe symbol's
(:mod:`bench.e2e_probe`) instead: one order per 21 probe trades, every one within risk's
default limits. :meth:`Feed.prime` publishes the probe's first 20 trades (its first order)
before anything else.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from bench.e2e_probe import PRIMING, SYMBOL, ProbeSeries
from core.redis.modes import reply_text
from core.topics import KeySpace, ServiceName, Topic
from services.pipeline import group_backlog
from services.ws.replay import BUNDLED_TRADES, load_trades
from services.ws.service import WsService
from services.ws.trades import Side, Trade

__all__ = ["COPIES", "STAGES", "Feed", "GroupProgress", "Window", "backlog", "read_window", "wait_idle"]

COPIES = 64
_PHASE_STEP = 181  # trades between the starting points of two copies (prime: spreads them)


class Feed:
    """Builds fresh trades from the bundled series and publishes them through ws."""

    def __init__(self, ws: WsService) -> None:
        self.ws = ws
        self.base = load_trades(BUNDLED_TRADES)
        self.sent = 0
        self.max_ahead_ms = 0
        self.probe_every = 0
        """Every that-many-th trade is the probe symbol's (0: none)."""
        self.probes = 0
        """Probe trades built so far."""
        self._last: dict[str, int] = {}
        self._symbols = {
            (t.symbol, k): t.symbol.replace("/", f"{k}/", 1) for t in self.base for k in range(COPIES)
        }

    def _stamp(self, symbol: str, now_ms: int) -> int:
        ts = max(now_ms, self._last.get(symbol, 0))
        self._last[symbol] = ts
        self.max_ahead_ms = max(self.max_ahead_ms, ts - now_ms)
        return ts

    def _probe(self, now_ms: int) -> Trade:
        k, self.probes = self.probes, self.probes + 1
        ts = self._stamp(SYMBOL, now_ms)
        return Trade(
            symbol=SYMBOL,
            price=ProbeSeries.price(k),
            volume=1.0,
            side=Side.BUY,
            timestamp=ts,
            trade_id=f"p{k}",
        )

    def _trade(self, n: int, now_ms: int) -> Trade:
        if self.probe_every and n % self.probe_every == 0:
            return self._probe(now_ms)
        copy, step = n % COPIES, n // COPIES
        base = self.base[(step + copy * _PHASE_STEP) % len(self.base)]
        symbol = self._symbols[(base.symbol, copy)]
        ts = self._stamp(symbol, now_ms)
        return Trade(
            symbol=symbol,
            price=base.price,
            volume=base.volume,
            side=base.side,
            timestamp=ts,
            venue=base.venue,
            trade_id=f"g{n}",
        )

    async def publish(self, count: int) -> None:
        """Build ``count`` trades now and publish them (one ws batch)."""
        now_ms = time.time_ns() // 1_000_000
        for _ in range(count):
            await self.ws.on_trade(self._trade(self.sent, now_ms))
            self.sent += 1
        await self.ws.flush()

    async def prime(self) -> None:
        """Publish the probe's first trades (its first order) before any other trade."""
        now_ms = time.time_ns() // 1_000_000
        for _ in range(PRIMING - self.probes):
            await self.ws.on_trade(self._probe(now_ms))
            self.sent += 1
        await self.ws.flush()


@dataclass
class GroupProgress:
    """Samples how many entries a consumer group has finished (read and acked)."""

    redis: aioredis.Redis
    keys: KeySpace
    service: ServiceName
    samples: list[tuple[float, int]] = field(default_factory=list)

    async def done(self) -> int:
        """Entries read by the group minus those still pending (0 before the group exists)."""
        topic = self.service.consumes
        assert topic is not None
        try:
            groups: list[dict[str, Any]] = await self.redis.xinfo_groups(self.keys.stream(topic))
        except aioredis.ResponseError:
            return 0
        want = self.keys.group(self.service)
        for info in groups:
            if reply_text(info["name"]) == want:
                return int(info.get("entries-read") or 0) - int(info["pending"])
        return 0

    async def sample(self) -> int:
        """Record (monotonic time, done) and return done."""
        done = await self.done()
        self.samples.append((time.monotonic(), done))
        return done

    def rates(self, since: float, until: float, step: float = 1.0) -> list[float]:
        """Rates (entries/s) over consecutive ``step``-second windows inside [since, until]."""
        inside = [(t, d) for t, d in self.samples if since <= t <= until]
        marks: list[tuple[float, int]] = []
        for t, d in inside:
            if not marks or t - marks[-1][0] >= step:
                marks.append((t, d))
        return [(d2 - d1) / (t2 - t1) for (t1, d1), (t2, d2) in itertools.pairwise(marks)]

    def rate(self, since: float, until: float) -> float:
        """Average rate over [since, until] from the first and last samples inside it."""
        inside = [(t, d) for t, d in self.samples if since <= t <= until]
        if len(inside) < 2:
            return 0.0
        (t1, d1), (t2, d2) = inside[0], inside[-1]
        return (d2 - d1) / (t2 - t1)


STAGES = ("trade->signal", "signal->order", "order->result")
"""The stages of market_data -> order_result: ws and signal, then risk, then execution."""


@dataclass
class Window:
    """What the pipeline made of the trades built in one window, read back from the streams."""

    results: list[int] = field(default_factory=list)
    """Trade -> order result, ms, one per result."""
    signals: list[int] = field(default_factory=list)
    """Trade -> signal, ms, one per signal."""
    stages: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in STAGES})
    """Each result's latency split at its signal's and its order's XADD (:data:`STAGES`), ms:
    where the time goes, on the very samples of :attr:`results`."""


async def read_window(redis: aioredis.Redis, keys: KeySpace, first_ms: int, last_ms: int) -> Window:
    """Latencies of the trades built in [first_ms, last_ms] (entries read back with XRANGE from
    ``first_ms``). Ids chain a result to its trade (``ord-sig-<symbol>-<trade ms>[#n]``:
    services.risk.limits and services.signal.strategy), and every entry id starts with the
    server's clock at its XADD, so each stage is the difference of two of them (1 ms apart at
    best, unbiased on average: both are truncated to the millisecond)."""
    window = Window()
    signal_ms: dict[str, int] = {}
    async for entry_ms, signal_id in _ids(redis, keys.stream(Topic.SIGNALS), b"signal_id", first_ms):
        trade_ms = _trade_ms(signal_id)
        if first_ms <= trade_ms <= last_ms:
            window.signals.append(entry_ms - trade_ms)
            signal_ms[signal_id] = entry_ms
    order_ms = {
        order_id: ms async for ms, order_id in _ids(redis, keys.stream(Topic.ORDERS), b"order_id", first_ms)
    }
    async for entry_ms, order_id in _ids(redis, keys.stream(Topic.ORDER_RESULTS), b"order_id", first_ms):
        trade_ms = _trade_ms(order_id)
        if not first_ms <= trade_ms <= last_ms:
            continue
        window.results.append(entry_ms - trade_ms)
        signal_at, order_at = signal_ms.get(order_id.removeprefix("ord-")), order_ms.get(order_id)
        if signal_at is not None and order_at is not None:
            for stage, ms in zip(
                STAGES, (signal_at - trade_ms, order_at - signal_at, entry_ms - order_at), strict=True
            ):
                window.stages[stage].append(ms)
    return window


def _trade_ms(message_id: str) -> int:
    # sig-<symbol>-<trade ms>[#<n-th trade of that ms>] (services.signal.strategy.signal_id), or
    # ord-<that signal id> (services.risk.limits)
    return int(message_id.rsplit("-", 1)[1].partition("#")[0])


async def _ids(
    redis: aioredis.Redis, stream: str, name: bytes, first_ms: int
) -> AsyncIterator[tuple[int, str]]:
    """(entry ms, the JSON string field ``name``) of every entry from ``first_ms`` on."""
    start: bytes | str = f"{first_ms}-0"
    while True:
        entries: Any = await redis.xrange(stream, min=start, count=5_000)
        if not entries:
            return
        for entry_id, fields in entries:
            yield int(entry_id.split(b"-")[0]), json.loads(fields[name])
        start = b"(" + entries[-1][0]


async def wait_idle(progress: list[GroupProgress], produced: int, timeout_s: float) -> bool:
    """Wait until the first group finished ``produced`` entries and every group its backlog."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await progress[0].done() >= produced and all([await backlog(p) == 0 for p in progress]):
            return True
        await asyncio.sleep(0.1)
    return False


async def backlog(p: GroupProgress) -> int:
    """Entries the group has not finished: undelivered (lag) plus pending."""
    topic = p.service.consumes
    assert topic is not None
    return await group_backlog(p.redis, p.keys.stream(topic), p.keys.group(p.service))
