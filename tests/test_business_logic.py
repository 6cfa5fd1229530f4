"""Business logic of signal, risk and execution: pure functions of their input and state."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import fakeredis
import pytest

from core.codec import Decoded
from core.errors import ConfigError
from core.metrics import IgnoreReason
from core.settings import ServiceSettings
from core.topics import ServiceName
from services.config import load_config
from services.execution.paper import PaperVenue, VenueParams
from services.risk.limits import RiskEngine, RiskLimits
from services.runtime import ServiceContext
from services.signal.service import SignalService
from services.signal.strategy import MomentumStrategy, SignalParams
from tests.support.execution import VenueOrder

pytestmark = pytest.mark.strict_path  # runs in the week-4 deletion rehearsal too (test_week4_deletion)


@dataclass
class _Trade:
    symbol: str
    price: float
    timestamp: int
    trade_id: str | None = None


@dataclass
class _Signal:
    signal_id: str
    symbol: str
    side: str
    price: float
    strength: float


def _feed(strategy: MomentumStrategy, prices: list[float], symbol: str = "BTC/USDT") -> list[dict]:
    out = []
    for i, price in enumerate(prices):
        values = strategy.on_trade(_Trade(symbol, price, 1_767_225_600_000 + i))
        if values:
            out.append(values)
    return out


def test_strategy__rising_prices_fire_one_buy_then_cool_down() -> None:
    strategy = MomentumStrategy(SignalParams(window=5, threshold_bps=10, cooldown=3))
    signals = _feed(strategy, [100.0, 100.1, 100.2, 100.3, 100.4, 100.5, 100.6])
    assert [s["side"] for s in signals] == ["BUY"]
    assert signals[0]["signal_id"] == "sig-BTC/USDT-1767225600004"
    assert 0 < signals[0]["strength"] <= 1


def test_strategy__falling_prices_fire_sell() -> None:
    strategy = MomentumStrategy(SignalParams(window=3, threshold_bps=10, cooldown=0))
    signals = _feed(strategy, [100.0, 99.0, 98.0])
    assert [s["side"] for s in signals] == ["SELL"]


def test_strategy__flat_prices_fire_nothing() -> None:
    strategy = MomentumStrategy(SignalParams(window=3, threshold_bps=10))
    assert _feed(strategy, [100.0] * 50) == []


def test_strategy__the_same_content_again_in_the_same_millisecond_is_a_duplicate_and_older_is_stale() -> None:
    strategy = MomentumStrategy(SignalParams(window=2, threshold_bps=10, cooldown=0))
    assert strategy.on_trade(_Trade("X", 100.0, 1_767_225_600_010)) is None
    fired = strategy.on_trade(_Trade("X", 101.0, 1_767_225_600_011))
    assert fired is not None
    assert strategy.on_trade(_Trade("X", 101.0, 1_767_225_600_011)) is None  # no trade id: same content
    assert strategy.on_trade(_Trade("X", 90.0, 1_767_225_600_005)) is None
    assert strategy.ignored == {IgnoreReason.DUPLICATE: 1, IgnoreReason.STALE: 1}


def test_strategy__trades_sharing_a_millisecond_all_count_and_fire_distinct_signal_ids() -> None:
    strategy = MomentumStrategy(SignalParams(window=2, threshold_bps=10, cooldown=0))
    ms = 1_767_225_600_010
    prices = [100.0, 101.0, 102.0, 103.0]  # four trades of one symbol in one millisecond
    outcomes = [strategy.decide(_Trade("X", p, ms, trade_id=f"t{i}"), f"1-{i}") for i, p in enumerate(prices)]
    assert [o.ignored for o in outcomes] == [None] * len(prices)
    ids = [o.signal["signal_id"] for o in outcomes if o.signal is not None]
    assert len(ids) == len(prices) - 1  # every trade after the first completes a rising window
    assert len(set(ids)) == len(ids)
    assert ids[0] == f"sig-X-{ms}#1"


def test_strategy__a_redelivered_entry_is_a_duplicate_and_gets_its_first_signal_again() -> None:
    strategy = MomentumStrategy(SignalParams(window=2, threshold_bps=10, cooldown=0))
    strategy.decide(_Trade("X", 100.0, 1_767_225_600_010, trade_id="a"), "5-0")
    first = strategy.decide(_Trade("X", 101.0, 1_767_225_600_010, trade_id="b"), "5-1")
    again = strategy.decide(_Trade("X", 101.0, 1_767_225_600_010, trade_id="b"), "5-1")
    later = strategy.decide(_Trade("X", 101.0, 1_767_225_600_011, trade_id="c"), "6-0")
    assert first.signal is not None
    assert (again.ignored, again.repeated, again.signal) == (IgnoreReason.DUPLICATE, True, first.signal)
    assert later.ignored is None  # the redelivery did not enter the window twice
    assert strategy.ignored == {IgnoreReason.DUPLICATE: 1}


def test_strategy__the_same_trade_id_on_another_entry_is_a_duplicate_whatever_its_time() -> None:
    strategy = MomentumStrategy(SignalParams(window=2, threshold_bps=10, cooldown=0))
    strategy.decide(_Trade("X", 100.0, 1_767_225_600_010, trade_id="a"), "5-0")
    strategy.decide(_Trade("X", 100.0, 1_767_225_600_011, trade_id="b"), "5-1")
    resent = strategy.decide(_Trade("X", 100.0, 1_767_225_600_010, trade_id="a"), "9-0")  # producer retry
    older = strategy.decide(_Trade("X", 100.0, 1_767_225_600_009, trade_id="z"), "9-1")
    assert (resent.ignored, resent.repeated) == (IgnoreReason.DUPLICATE, False)
    assert older.ignored is IgnoreReason.STALE


def test_strategy__symbols_have_separate_windows() -> None:
    strategy = MomentumStrategy(SignalParams(window=2, threshold_bps=10, cooldown=0))
    strategy.on_trade(_Trade("A", 100.0, 1_767_225_600_001))
    assert strategy.on_trade(_Trade("B", 200.0, 1_767_225_600_002)) is None  # B's window is not A's


def test_risk__sizes_order_by_strength_and_notional() -> None:
    engine = RiskEngine(RiskLimits(max_order_notional=1000))
    decision = engine.on_signal(_Signal("s1", "BTC/USDT", "BUY", 50_000.0, 0.5))
    assert decision.order is not None
    assert decision.order["quantity"] == pytest.approx(0.01)
    assert decision.order["order_id"] == "ord-s1"
    assert decision.order["price"] == 50_000.0
    assert engine.positions["BTC/USDT"] == pytest.approx(0.01)


def test_risk__kill_switch_rejects_everything() -> None:
    engine = RiskEngine(RiskLimits(kill_switch=True))
    decision = engine.on_signal(_Signal("s1", "BTC/USDT", "BUY", 100.0, 1.0))
    assert decision.order is None
    assert decision.rejection == "kill switch is on"


def test_risk__position_limit_rejects_growth_but_allows_reduction() -> None:
    engine = RiskEngine(RiskLimits(max_order_notional=1000, max_position_notional=1500))
    assert engine.on_signal(_Signal("s1", "X", "BUY", 100.0, 1.0)).order is not None
    second = engine.on_signal(_Signal("s2", "X", "BUY", 100.0, 1.0))
    assert second.order is None
    assert second.rejection is not None
    assert "position limit" in second.rejection
    assert engine.on_signal(_Signal("s3", "X", "SELL", 100.0, 1.0)).order is not None
    assert engine.positions["X"] == pytest.approx(0.0)


def test_risk__exposure_limit_spans_symbols() -> None:
    engine = RiskEngine(RiskLimits(max_order_notional=1000, max_exposure_notional=1500))
    assert engine.on_signal(_Signal("s1", "A", "BUY", 10.0, 1.0)).order is not None
    decision = engine.on_signal(_Signal("s2", "B", "SELL", 10.0, 1.0))
    assert decision.rejection == "exposure limit 1500"


def test_risk__redelivered_signal_gets_the_same_decision_without_doubling_position() -> None:
    engine = RiskEngine()
    first = engine.on_signal(_Signal("s1", "X", "BUY", 100.0, 1.0))
    again = engine.on_signal(_Signal("s1", "X", "BUY", 100.0, 1.0))
    assert again.duplicate
    assert again.order == first.order
    assert first.order is not None
    assert engine.positions["X"] == pytest.approx(first.order["quantity"])


def test_venue__market_buy_fills_at_reference_plus_slippage_with_fee() -> None:
    venue = PaperVenue(VenueParams(fee_bps=10, slippage_bps=5, max_fill_notional=10_000))
    result = venue.fill(VenueOrder("o1", "X", "BUY", "MARKET", 2.0, 100.0))
    assert result["status"] == "FILLED"
    assert result["average_price"] == Decimal("100.05")  # exact decimals, no float residue
    assert result["fee"] == Decimal("0.2001")
    assert result["reason"] is None


def test_venue__market_sell_slips_downwards() -> None:
    result = PaperVenue(VenueParams(slippage_bps=5)).fill(VenueOrder("o1", "X", "SELL", "MARKET", 1.0, 100.0))
    assert result["average_price"] == Decimal("99.95")


def test_venue__large_order_fills_partially() -> None:
    venue = PaperVenue(VenueParams(max_fill_notional=500, slippage_bps=0))
    result = venue.fill(VenueOrder("o1", "X", "BUY", "MARKET", 10.0, 100.0))
    assert result["status"] == "PARTIALLY_FILLED"
    assert result["filled_quantity"] == Decimal("5")


def test_venue__tiny_order_and_missing_price_are_rejected() -> None:
    venue = PaperVenue(VenueParams(min_notional=10))
    tiny = venue.fill(VenueOrder("o1", "X", "BUY", "MARKET", 0.01, 100.0))
    blind = venue.fill(VenueOrder("o2", "X", "BUY", "MARKET", 1.0, None))
    assert (tiny["status"], blind["status"]) == ("REJECTED", "REJECTED")
    assert tiny["average_price"] is None
    assert blind["reason"] == "no reference price for a paper fill"


def test_venue__decimal_order_fills_exactly_and_a_float_one_as_its_shortest_decimal() -> None:
    venue = PaperVenue(VenueParams(fee_bps=10, slippage_bps=0, max_fill_notional=1e9))
    exact = venue.fill(
        VenueOrder("o1", "X", "BUY", "MARKET", Decimal("0.123456789012345678"), Decimal("64250.1"))
    )
    assert exact["filled_quantity"] == Decimal("0.123456789012345678")  # beyond a float's 17 digits
    assert exact["average_price"] == Decimal("64250.1")
    assert exact["fee"] == Decimal("7.93211104")  # 7.9321110397... rounded half-even to 8 places
    floats = venue.fill(VenueOrder("o2", "X", "BUY", "MARKET", 0.1, 100.0))
    assert floats["filled_quantity"] == Decimal("0.1")  # not 0.1000000000000000055511...


def test_service_config__bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(RiskLimits, {"RISK_MAX_ORDER_NOTIONAL": "-5"})
    assert caught.value.variable == "RISK_MAX_ORDER_NOTIONAL"
    assert load_config(RiskLimits, {"RISK_KILL_SWITCH": "yes"}).kill_switch is True


def test_strategy__a_trade_with_a_filled_in_time_is_refused_and_moves_no_clock() -> None:
    strategy = MomentumStrategy(SignalParams(window=2, threshold_bps=10, cooldown=0))
    filled = strategy.decide(_Trade("X", 500.0, 4_000_000_000_000), "1-0", time_filled=True)  # "now"
    strategy.decide(_Trade("X", 100.0, 1_767_225_600_010), "2-0")
    fired = strategy.decide(_Trade("X", 101.0, 1_767_225_600_011), "3-0")
    assert filled.ignored is IgnoreReason.TIME_FILLED
    assert fired.ignored is None  # the real trades after it are neither stale nor compared to it
    assert fired.signal is not None
    assert fired.signal["side"] == "BUY"


async def test_signal_replay__rebuilds_the_state_silently_and_dedupes_like_the_owner_did() -> None:
    params = SignalParams(window=3, threshold_bps=10, cooldown=1)
    ms = 1_767_225_600_000
    history = [(f"7-{i}", _Trade("X", 100.0 + i, ms + i // 2, trade_id=f"t{i}")) for i in range(9)]
    redis = fakeredis.FakeAsyncRedis()
    settings = ServiceSettings.load(ServiceName.SIGNAL, environ={})
    owner = SignalService(ServiceContext.create(ServiceName.SIGNAL, settings, redis), params)
    heir = SignalService(ServiceContext.create(ServiceName.SIGNAL, settings, redis), params)
    for entry_id, trade in history:
        await owner.handle(Decoded(trade), entry_id)
        heir.replay(Decoded(trade), entry_id)

    assert owner.ctx.publisher.deferred > 0  # the owner fired signals ...
    assert heir.ctx.publisher.deferred == 0  # ... the heir only rebuilt its state
    assert heir.ctx.metrics.snapshot()["ignored"] == 0
    following = [(f"8-{i}", _Trade("X", 110.0 + i, ms + 10, trade_id=f"u{i}")) for i in range(3)]
    assert [owner.strategy.decide(t, e) for e, t in following] == [
        heir.strategy.decide(t, e) for e, t in following
    ]
    await heir.handle(Decoded(history[-1][1]), history[-1][0])  # an entry the owner had applied
    assert heir.ctx.metrics.snapshot()["ignored_by_reason"]["duplicate"] == 1
