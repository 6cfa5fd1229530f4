"""The ``synthetic`` source: an endless, seeded market, so a long-running stack sees
production-like traffic without the network (``WS_SOURCE=synthetic``).

* **Many symbols** (``WS_SYNTHETIC_SYMBOLS``, default 20): the five of the bundled files,
  then fifteen more real-looking pairs, then ``SYN<n>/USDT`` with seeded start prices.
* **A realistic price walk**: the bundled files' regime walk (:func:`make_dataset.step`:
  trending up, trending down, flat, with noise), held within a band of a third to three
  times its start price, so it runs for months without drifting to zero.
* **A trade rate** (``WS_SYNTHETIC_RATE`` trades/s, default 300; 0 = as fast as Redis
  takes them): gaps between trades are exponential, and ws emits them on that clock.
  Now and then a sweep fills several trades of one symbol in the same millisecond
  (signal ignores all but the first, counted as not newer).
* **Deterministic for a seed** (``WS_SYNTHETIC_SEED``): the same seed, symbol count,
  rate and start time (``WS_SYNTHETIC_START_MS``; 0 = the time of the first start, kept
  in the checkpoint) give the same trades, ids ``syn-<seed>-<n>`` included.
* **Resumable**: trades are made in blocks of :data:`BLOCK` from a block's own RNG and
  the state the previous block left (prices, regimes, clock). A checkpoint is that state
  plus how many trades of the block are confirmed, so resuming replays at most one block
  in memory, whatever the trade count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from core.domain.contracts import Side
from core.utils.clock import now_ms
from services.ws.make_dataset import MARKETS, TREND_BPS, Market, Walk, step
from services.ws.trades import Trade

__all__ = ["BLOCK", "SyntheticMarket", "SyntheticSpec", "markets"]

BLOCK = 1_000
"""Trades made from one block RNG; a resume regenerates at most this many."""

_MORE: tuple[Market, ...] = (
    Market("ADA/USDT", 0.9850, 4, 900.0, 1, 9),
    Market("AVAX/USDT", 36.40, 3, 25.0, 2, 7),
    Market("LINK/USDT", 21.85, 3, 40.0, 2, 7),
    Market("DOT/USDT", 7.120, 3, 120.0, 2, 6),
    Market("TRX/USDT", 0.25510, 5, 4_000.0, 0, 6),
    Market("LTC/USDT", 104.20, 2, 6.0, 3, 6),
    Market("BCH/USDT", 452.10, 2, 1.5, 4, 5),
    Market("NEAR/USDT", 5.210, 3, 150.0, 2, 5),
    Market("ATOM/USDT", 6.840, 3, 130.0, 2, 4),
    Market("UNI/USDT", 13.270, 3, 60.0, 2, 4),
    Market("APT/USDT", 9.410, 3, 90.0, 2, 4),
    Market("ARB/USDT", 0.7820, 4, 1_100.0, 1, 4),
    Market("OP/USDT", 1.9450, 4, 450.0, 1, 3),
    Market("FIL/USDT", 5.060, 3, 170.0, 2, 3),
    Market("ETC/USDT", 26.830, 3, 30.0, 2, 3),
)
_SWEEP = 0.03  # chance that a trade is one more fill of the previous taker order: same symbol, same ms
_BAND = 3.0  # the walk turns back once it is this factor away from its start price
_YIELD_EVERY = 256


def markets(count: int, seed: int) -> list[Market]:
    """The first ``count`` synthetic markets for ``seed`` (named ones first, then ``SYN<n>``)."""
    named = [*MARKETS, *_MORE][:count]
    rng = random.Random(f"{seed}:markets")
    extra = [
        Market(f"SYN{i:03d}/USDT", round(10 ** rng.uniform(-1, 3), 4), 4, 100.0, 2, 2)
        for i in range(len(named), count)
    ]
    return [*named, *extra]


@dataclass(frozen=True)
class SyntheticSpec:
    """What fixes a synthetic market: seed, symbol count, trades/s, start time (ms, 0 = now)."""

    seed: int = 1
    symbols: int = 20
    rate: float = 300.0
    start_ms: int = 0

    @property
    def identity(self) -> str:
        """The source's name in the position hash: another seed or shape is another market."""
        start = f":start={self.start_ms}" if self.start_ms else ""
        return f"synthetic:seed={self.seed}:symbols={self.symbols}:rate={self.rate:g}{start}"


@dataclass(frozen=True)
class _Snapshot:
    block: int
    clock_ms: float
    walks: tuple[tuple[float, float, int], ...]


class SyntheticMarket:
    """An endless seeded trade stream; :meth:`resume` then :meth:`run` (or :meth:`trades`)."""

    def __init__(self, spec: SyntheticSpec) -> None:
        if spec.symbols < 1:
            raise ValueError(f"symbols must be >= 1, got {spec.symbols}")
        self.spec = spec
        self.markets = markets(spec.symbols, spec.seed)
        self._cum = list(accumulate(m.weight for m in self.markets))
        self._gap_ms = 1000.0 / spec.rate if spec.rate > 0 else 1.0
        self._at = _Snapshot(0, float(spec.start_ms), tuple((m.start_price, 0.0, 0) for m in self.markets))
        self._skip = 0

    @property
    def identity(self) -> str:
        """See :attr:`SyntheticSpec.identity`."""
        return self.spec.identity

    def resume(self, checkpoint: str | None) -> int:
        """Continue after ``checkpoint`` (``None``: from the first trade); returns the number
        of the next trade. Without a fixed start time, the first start takes the clock's now."""
        if checkpoint is None:
            clock = float(self.spec.start_ms or now_ms())
            self._at = _Snapshot(0, clock, self._at.walks)
            self._skip = 0
            return 0
        data: dict[str, Any] = json.loads(checkpoint)
        walks = tuple((float(p), float(d), int(n)) for p, d, n in data["walks"])
        if len(walks) != len(self.markets):
            raise ValueError("checkpoint of another symbol count")
        self._at = _Snapshot(int(data["block"]), float(data["clock_ms"]), walks)
        self._skip = int(data["done"])
        return self._at.block * BLOCK + self._skip

    def encode(self, mark: object) -> str:
        """The checkpoint text of a trade's mark (what :meth:`resume` reads)."""
        snap, done = _unmark(mark)
        return json.dumps(
            {"block": snap.block, "clock_ms": snap.clock_ms, "walks": snap.walks, "done": done},
            separators=(",", ":"),
        )

    def number(self, mark: object) -> int:
        """How many trades of the market come up to and including the mark's trade."""
        snap, done = _unmark(mark)
        return snap.block * BLOCK + done

    def trades(self) -> Iterator[tuple[Trade, object]]:
        """Every trade from the resume point on, each with its mark; never ends."""
        snap, skip = self._at, self._skip
        while True:
            made = self._block(snap)
            for done, trade in enumerate(made[0], start=1):
                if done > skip:
                    yield trade, (snap, done)
            snap, skip = made[1], 0

    async def run(self, on_trade: Callable[[Trade, object], Awaitable[None]], stop: asyncio.Event) -> int:
        """Emit trades at the spec's rate (trade time against the wall clock, from the resume
        point) until ``stop`` is set; returns how many were emitted."""
        emitted = 0
        wall0 = time.monotonic()
        clock0: float | None = None
        for trade, mark in self.trades():
            if stop.is_set():
                return emitted
            if self.spec.rate > 0:
                clock0 = trade.timestamp if clock0 is None else clock0
                ahead = wall0 + (trade.timestamp - clock0) / 1000.0 - time.monotonic()
                if ahead > 0.002:
                    await _sleep_unless(stop, ahead)
                    if stop.is_set():
                        return emitted
            elif emitted % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            await on_trade(trade, mark)
            emitted += 1
        return emitted  # pragma: no cover - the stream never ends

    def _block(self, snap: _Snapshot) -> tuple[list[Trade], _Snapshot]:
        rng = random.Random(f"{self.spec.seed}:{snap.block}")
        walks = [Walk(p, d, n) for p, d, n in snap.walks]
        clock = snap.clock_ms
        indices = range(len(self.markets))
        out: list[Trade] = []
        last = -1
        for j in range(BLOCK):
            if last >= 0 and rng.random() < _SWEEP:
                i = last  # the same taker order filling another maker: same symbol, same ms
            else:
                i = rng.choices(indices, cum_weights=self._cum)[0]
                clock += rng.expovariate(1.0 / self._gap_ms)
            market, walk = self.markets[i], walks[i]
            side, volume = step(rng, market, walk)
            if walk.price > market.start_price * _BAND and walk.drift >= 0:
                walk.drift = -TREND_BPS
            elif walk.price < market.start_price / _BAND and walk.drift <= 0:
                walk.drift = TREND_BPS
            tick = 10.0**-market.price_decimals
            out.append(
                Trade(
                    symbol=market.symbol,
                    price=max(tick, round(walk.price, market.price_decimals)),
                    volume=volume,
                    side=Side(side),
                    timestamp=int(clock),
                    venue="synthetic",
                    trade_id=f"syn-{self.spec.seed}-{snap.block * BLOCK + j}",
                )
            )
            last = i
        after = _Snapshot(snap.block + 1, clock, tuple((w.price, w.drift, w.left) for w in walks))
        return out, after


def _unmark(mark: object) -> tuple[_Snapshot, int]:
    assert isinstance(mark, tuple)  # a mark is always what trades() made
    snap: object = mark[0]
    done: object = mark[1]
    assert isinstance(snap, _Snapshot)
    assert isinstance(done, int)
    return snap, done


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
