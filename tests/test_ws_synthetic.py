"""The synthetic source: deterministic for a seed, many symbols, a realistic walk and rate,
same-millisecond trades now and then, and a checkpoint that resumes exactly."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ws.synthetic import BLOCK, SyntheticMarket, SyntheticSpec
from services.ws.trades import Trade

SPEC = SyntheticSpec(seed=11, symbols=20, rate=300.0, start_ms=1_767_225_600_000)


def _first(spec: SyntheticSpec, n: int, checkpoint: str | None = None) -> list[tuple[Trade, object]]:
    market = SyntheticMarket(spec)
    market.resume(checkpoint)
    return list(itertools.islice(market.trades(), n))


FULL = _first(SPEC, 3 * BLOCK + 500)
TRADES = [t for t, _ in FULL]


def test_synthetic__same_seed_same_trades_other_seed_other_trades() -> None:
    assert [t for t, _ in _first(SPEC, 2_000)] == TRADES[:2_000]
    other = [
        t for t, _ in _first(SyntheticSpec(seed=12, symbols=20, rate=300.0, start_ms=SPEC.start_ms), 2_000)
    ]
    assert [(t.symbol, t.price) for t in other] != [(t.symbol, t.price) for t in TRADES[:2_000]]


def test_synthetic__many_symbols_ids_in_sequence_and_time_never_goes_back() -> None:
    assert len({t.symbol for t in TRADES}) == SPEC.symbols
    assert [t.trade_id for t in TRADES] == [f"syn-{SPEC.seed}-{n}" for n in range(len(TRADES))]
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(TRADES))
    assert all(t.price > 0 and t.volume > 0 for t in TRADES)
    assert {t.side.value for t in TRADES} == {"BUY", "SELL"}


def test_synthetic__some_trades_of_one_symbol_share_a_millisecond() -> None:
    same = sum(1 for a, b in itertools.pairwise(TRADES) if (a.symbol, a.timestamp) == (b.symbol, b.timestamp))
    assert 0.005 * len(TRADES) < same < 0.1 * len(TRADES)


def test_synthetic__trade_rate_follows_the_setting() -> None:
    for rate in (50.0, 300.0, 2_000.0):
        spec = SyntheticSpec(seed=3, symbols=5, rate=rate, start_ms=SPEC.start_ms)
        trades = [t for t, _ in _first(spec, 6_000)]
        seconds = (trades[-1].timestamp - trades[0].timestamp) / 1000.0
        assert 0.85 * rate < len(trades) / seconds < 1.15 * rate


def test_synthetic__prices_walk_with_a_spread_of_moves() -> None:
    btc = [t.price for t in TRADES if t.symbol == "BTC/USDT"]
    moves = [b / a - 1 for a, b in itertools.pairwise(btc)]
    assert max(moves) > 0.0005
    assert min(moves) < -0.0005
    assert max(abs(m) for m in moves) < 0.01  # a few bps per trade, never a jump


def test_synthetic__stays_within_a_band_of_its_start_price_over_a_long_run() -> None:
    spec = SyntheticSpec(seed=5, symbols=2, rate=300.0, start_ms=SPEC.start_ms)
    market = SyntheticMarket(spec)
    market.resume(None)
    start = {m.symbol: m.start_price for m in market.markets}
    ratios = Counter[str]()
    for trade, _ in itertools.islice(market.trades(), 200_000):
        ratio = trade.price / start[trade.symbol]
        assert 1 / 3.5 < ratio < 3.5
        ratios[trade.symbol] += 1
    assert len(ratios) == 2


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(min_value=1, max_value=len(FULL) - 300))
def test_synthetic__a_checkpoint_resumes_at_the_next_trade(cut: int) -> None:
    market = SyntheticMarket(SPEC)
    checkpoint = market.encode(FULL[cut - 1][1])
    resumed = SyntheticMarket(SPEC)
    assert resumed.resume(checkpoint) == cut
    assert resumed.number(FULL[cut - 1][1]) == cut
    assert [t for t, _ in itertools.islice(resumed.trades(), 300)] == TRADES[cut : cut + 300]


async def test_synthetic__run_paces_trades_and_ends_when_stopped() -> None:
    market = SyntheticMarket(SyntheticSpec(seed=1, symbols=3, rate=400.0, start_ms=SPEC.start_ms))
    market.resume(None)
    stop = asyncio.Event()
    got: list[Trade] = []

    async def on_trade(trade: Trade, mark: object) -> None:
        got.append(trade)
        if len(got) == 100:
            stop.set()

    emitted = await asyncio.wait_for(market.run(on_trade, stop), timeout=30)
    assert emitted == len(got) == 100
    assert [t.trade_id for t in got] == [f"syn-1-{n}" for n in range(100)]
