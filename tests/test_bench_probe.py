"""The bench's probe symbol: every signal it fires becomes an order under risk's default
limits, with exposure full, so market_data -> order_result rests on its orders."""

from __future__ import annotations

from types import SimpleNamespace

from bench.e2e_phases import MAX_POINT_S, point_seconds
from bench.e2e_probe import CYCLE, PRIMING, SYMBOL, ProbeSeries
from services.risk.limits import RiskEngine, RiskLimits
from services.signal.strategy import MomentumStrategy, SignalParams

TRADES = PRIMING + CYCLE * 500


def test_probe__with_exposure_full_after_its_first_order__every_signal_is_approved_in_turn() -> None:
    strategy, risk = MomentumStrategy(SignalParams()), RiskEngine(RiskLimits())
    sides: list[str] = []
    for k in range(TRADES):
        trade = SimpleNamespace(
            symbol=SYMBOL, price=ProbeSeries.price(k), timestamp=1_000 + k, trade_id=f"p{k}"
        )
        values = strategy.on_trade(trade)
        if values is None:
            continue
        decision = risk.on_signal(SimpleNamespace(**values))
        assert decision.order is not None, (k, decision.rejection)
        sides.append(values["side"])
        if len(sides) == 1:  # the rest of the book fills exposure to the limit right away
            risk.positions["OTHER/USDT"], risk.marks["OTHER/USDT"] = 80.0, 100.0
            assert risk.exposure() >= risk.limits.max_exposure_notional
    assert len(sides) == ProbeSeries.orders_before(TRADES) == 1 + (TRADES - PRIMING) // CYCLE
    assert sides[:4] == ["BUY", "SELL", "BUY", "SELL"]
    assert abs(risk.positions[SYMBOL]) * ProbeSeries.price(1) == 500.0  # +-h: flipped, never grown


def test_curve_point__a_low_rate_runs_long_enough_for_its_samples_a_high_rate_for_its_seconds() -> None:
    # 1,000 msg/s, every 5th trade a probe's, one order per CYCLE probe trades: ~9.5 orders/s.
    low = point_seconds(1_000, 10.0, 300, 5)
    assert low > 30.0
    assert 1_000 / (5 * CYCLE) * (low - 2.0) >= 300  # the warm-up's orders are not counted
    assert point_seconds(20_000, 10.0, 300, 5) == 10.0
    assert point_seconds(100, 10.0, 300, 5) == MAX_POINT_S
    assert point_seconds(1_000, 10.0, 0, 5) == 10.0  # no sample count asked
    assert point_seconds(1_000, 10.0, 300, 0) == 10.0  # no probe: only natural orders
