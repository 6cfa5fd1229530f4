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
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from bench.e2e_probe import PRIMING, SYMBOL, ProbeSeries
from core.topics import KeySpace, ServiceName, Topic
from services.pipeline import group_backlog
from services.ws.replay import BUNDLED_TRADES, load_trades
from services.ws.service import WsService
from services.ws.trades import Side, Trade

__all__ = ["COPIES", "Feed", "GroupProgress", "backlog", "read_latencies", "wait_idle"]

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
            name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
            if name == want:
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


async def read_latencies(
    redis: aioredis.Redis, keys: KeySpace, topic: Topic, first_ms: int, last_ms: int
) -> list[int]:
    """Latency in ms from trade to ``topic`` entry (signals or order_results), for trades
    built in [first_ms, last_ms] (entries read back with XRANGE from ``first_ms``)."""
    field_name = b"signal_id" if topic is Topic.SIGNALS else b"order_id"
    out: list[int] = []
    start: bytes | str = f"{first_ms}-0"
    while True:
        entries: Any = await redis.xrange(keys.stream(topic), min=start, count=5_000)
        if not entries:
            return out
        for entry_id, fields in entries:
            # sig-<symbol>-<trade ms>[#<n-th trade of that ms>] (services.signal.strategy.signal_id)
            trade_ms = int(json.loads(fields[field_name]).rsplit("-", 1)[1].partition("#")[0])
            if first_ms <= trade_ms <= last_ms:
                out.append(int(entry_id.split(b"-")[0]) - trade_ms)
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
