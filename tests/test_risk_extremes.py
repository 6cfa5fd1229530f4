"""Risk decides every contract-valid signal, however extreme its numbers: it never raises.

A price is valid anywhere in (0, 1.8e308] and a strength in [0, 1], so a size, a notional
or the exposure can overflow to infinity. A signal whose order size is not a whole number
of lots a float can count is rejected with its reason, like one below a lot, on both codec
paths; a growth whose notional overflows is rejected by the limit it breaks; nothing the
engine refuses moves a position, and the next ordinary signal is decided as usual.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import cast

import pytest
import redis.asyncio as aioredis

from core.codec import build_codec
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from services.risk.limits import RiskEngine, RiskLimits, SignalView
from services.risk.service import RiskService
from tests.delivery_helpers import PATHS, drain, service_settings, signal_fields

TOO_MANY_LOTS = "order size above 2^53 lots"
CODEC_PATHS = (CodecPath.LEGACY, CodecPath.PYDANTIC)


def _signal(
    path: CodecPath, i: int, *, price: float, strength: float = 1.0, side: str = "BUY", symbol: str = "X/USDT"
) -> SignalView:
    """Signal ``sig-<i>`` as ``path`` decodes it from the stream."""
    fields = signal_fields(
        i,
        symbol=json.dumps(symbol),
        side=json.dumps(side),
        price=json.dumps(price),
        strength=json.dumps(strength),
        timestamp="1767225600000",
    )
    message: SignalView = build_codec(path).from_fields(Topic.SIGNALS, fields).message
    return message


@pytest.mark.parametrize("path", CODEC_PATHS)
@pytest.mark.parametrize("price", [1e-300, 5e-324, 1e-12])
def test_risk__a_price_so_small_the_size_exceeds_2_to_the_53_lots__is_rejected_and_changes_no_position(
    path: CodecPath, price: float
) -> None:
    engine = RiskEngine()  # 1,000 quote per order in lots of 1e-6: 1e-12 is already 1e21 lots

    decision = engine.on_signal(_signal(path, 0, price=price))

    assert (decision.order, decision.rejection) == (None, TOO_MANY_LOTS)
    assert engine.positions == {}
    assert engine.on_signal(_signal(path, 1, price=100.0)).order is not None  # the next one as usual
    assert engine.positions == {"X/USDT": pytest.approx(10.0)}


@pytest.mark.parametrize("path", CODEC_PATHS)
@pytest.mark.parametrize("price", [1e308, sys.float_info.max])
@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_risk__a_price_near_the_float_maximum__is_sized_below_one_lot(
    path: CodecPath, price: float, strength: float
) -> None:
    engine = RiskEngine()

    decision = engine.on_signal(_signal(path, 0, price=price, strength=strength))

    assert (decision.order, decision.rejection) == (None, "order size below one lot")
    assert engine.positions == {}


def test_risk__a_rejected_extreme_signal_is_remembered_like_any_decision() -> None:
    engine = RiskEngine()
    first = engine.on_signal(_signal(CodecPath.PYDANTIC, 0, price=1e-300))

    again = engine.on_signal(_signal(CodecPath.PYDANTIC, 0, price=1e-300))

    assert again.duplicate
    assert (again.order, again.rejection) == (None, first.rejection)


def test_risk__a_position_that_would_overflow__is_rejected_by_the_position_limit() -> None:
    # Lots of 1e300 base: one order of about 1.8e308 base is a valid float; a second one on top
    # would make the position infinite.
    top = sys.float_info.max
    limits = RiskLimits(
        max_order_notional=top, max_position_notional=top, max_exposure_notional=top, quantity_step=1e300
    )
    engine = RiskEngine(limits)
    assert engine.on_signal(_signal(CodecPath.PYDANTIC, 0, price=1.0)).order is not None

    decision = engine.on_signal(_signal(CodecPath.PYDANTIC, 1, price=1.0))

    assert decision.rejection == f"position limit {top:g} on X/USDT"
    assert engine.positions["X/USDT"] == pytest.approx(1.797e308, rel=1e-3)


def test_risk__an_exposure_that_overflows__rejects_growth_and_still_lets_positions_shrink() -> None:
    engine = RiskEngine()
    assert engine.on_signal(_signal(CodecPath.PYDANTIC, 0, price=100.0, symbol="A/USDT")).order is not None
    assert engine.on_signal(_signal(CodecPath.PYDANTIC, 1, price=100.0)).order is not None
    # Below one lot, but it marks A/USDT: ten of A at 1e308 is an infinite exposure.
    marking = engine.on_signal(_signal(CodecPath.PYDANTIC, 2, price=1e308, symbol="A/USDT"))

    grow = engine.on_signal(_signal(CodecPath.PYDANTIC, 3, price=100.0))
    shrink = engine.on_signal(_signal(CodecPath.PYDANTIC, 4, price=100.0, side="SELL"))

    assert marking.rejection == "order size below one lot"
    assert engine.exposure() == float("inf")
    assert grow.rejection == "exposure limit 8000"
    assert shrink.order is not None
    assert engine.positions == {"A/USDT": pytest.approx(10.0), "X/USDT": pytest.approx(0.0)}


def test_risk__an_order_a_huge_position_cannot_absorb__is_rejected_not_approved_unrecorded() -> None:
    # A position of 1e12 base (however it got there) moves in steps of about 1.2e-4: an order of
    # 1e-5 added to it leaves it unchanged, so the position would not follow the order and the
    # limits, which look at the change, would let it through.
    engine = RiskEngine(positions={"X/USDT": 1e12})

    decision = engine.on_signal(_signal(CodecPath.PYDANTIC, 0, price=1e8))

    assert decision.order is None
    assert decision.rejection == "order size below the precision of the position on X/USDT"
    assert engine.positions == {"X/USDT": 1e12}


@dataclass
class _BrokenSignal:
    """A signal whose side cannot be read: a stand-in for any error in the middle of a decision."""

    signal_id: str
    symbol: str
    price: float
    strength: float

    @property
    def side(self) -> str:
        raise RuntimeError("no side")


def test_risk__a_signal_that_fails_to_be_decided_changes_no_state() -> None:
    engine = RiskEngine()
    assert engine.on_signal(_signal(CodecPath.PYDANTIC, 0, price=100.0)).order is not None
    before = (dict(engine.positions), dict(engine.marks))

    with pytest.raises(RuntimeError, match="no side"):
        engine.on_signal(cast(SignalView, _BrokenSignal("sig-1", "X/USDT", 50.0, 1.0)))

    assert (engine.positions, engine.marks) == before  # not even the mark: its retry sees the same


@pytest.mark.integration
@pytest.mark.parametrize("path", PATHS)
async def test_risk_service__extreme_valid_signals_are_rejections_not_dead_letters(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str, path: str
) -> None:
    entries = [
        signal_fields(1),
        signal_fields(2, price="1e-300"),  # the audit's signal: math.floor(inf) raised
        signal_fields(3, price="5e-324"),
        signal_fields(4, price="1e308", strength="1.0"),
        signal_fields(5),
    ]
    settings = service_settings(ServiceName.RISK, keys, redis_url, path)

    run = await drain(redis_async, settings, RiskService, entries)

    assert run.letters == []
    assert sorted(json.loads(f[b"order_id"]) for f in run.outputs) == ["ord-sig-1", "ord-sig-5"]
    assert run.ctx.extra_counts["rejections"] == 3
    assert run.ctx.metrics.snapshot()["messages_ok"] == 5
