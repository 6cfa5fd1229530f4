"""The bench's probe symbol: every signal it fires becomes an order under risk's default
limits, with exposure full, so market_data -> order_result rests on its orders."""

from __future__ import annotations

import json
from types import SimpleNamespace

import redis.asyncio as aioredis

from bench.e2e_cpu import per_message_us
from bench.e2e_load import STAGES, read_window
from bench.e2e_phases import MAX_POINT_S, point_seconds
from bench.e2e_probe import CYCLE, PRIMING, SYMBOL, ProbeSeries
from bench.e2e_result import SETTINGS, E2eResult, summarize
from bench.report_e2e import rate_cpu_lines, stage_lines
from core.topics import KeySpace, Topic
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


async def test_read_window__splits_each_result_where_its_signal_and_order_were_written(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    async def add(topic: Topic, ms: int, name: str, value: str) -> None:
        await redis_async.xadd(keys.stream(topic), {name: json.dumps(value)}, id=f"{ms}-0")

    # A trade at 1,000 ms: signal at +3, order at +5, result at +9 (the split: 3, 2, 4).
    await add(Topic.SIGNALS, 1_003, "signal_id", "sig-PROBE/USDT-1000")
    await add(Topic.ORDERS, 1_005, "order_id", "ord-sig-PROBE/USDT-1000")
    await add(Topic.ORDER_RESULTS, 1_009, "order_id", "ord-sig-PROBE/USDT-1000")
    # The second trade of that millisecond: a signal, rejected by risk (no order).
    await add(Topic.SIGNALS, 1_004, "signal_id", "sig-BTC0/USDT-1000#1")
    # A result whose order the stream no longer holds: a latency, but no split.
    await add(Topic.ORDER_RESULTS, 1_012, "order_id", "ord-sig-ETH0/USDT-1001")
    # A trade after the window.
    await add(Topic.SIGNALS, 5_001, "signal_id", "sig-PROBE/USDT-5000")
    await add(Topic.ORDERS, 5_002, "order_id", "ord-sig-PROBE/USDT-5000")
    await add(Topic.ORDER_RESULTS, 5_003, "order_id", "ord-sig-PROBE/USDT-5000")

    window = await read_window(redis_async, keys, 1_000, 4_999)

    assert sorted(window.signals) == [3, 4]
    assert sorted(window.results) == [9, 11]
    assert window.stages == {"trade->signal": [3], "signal->order": [2], "order->result": [4]}
    assert list(window.stages) == list(STAGES)


def test_stage_table__p50_p99_and_mean_per_stage_and_none_for_a_point_without_stages() -> None:
    setting = SETTINGS[1]
    result = E2eResult(setting, rate=1_000)
    stages = {"trade->signal": [1, 1, 2], "signal->order": [1, 2, 2], "order->result": [4, 4, 7]}
    result.curve = [
        {"rate": 1_000.0, "stages": {s: summarize(v) for s, v in stages.items()}},
        {"rate": 5_000.0},
    ]

    rows = [line for line in stage_lines([result]) if line.startswith(f"| {setting.name} ")]

    assert rows == [f"| {setting.name} | 1,000 | 1 / 2 / 1.33 (3) | 2 / 2 / 1.67 (3) | 4 / 7 / 5.00 (3) |"]
    assert stage_lines([E2eResult(setting, rate=1_000)]) == []


def test_rate_cpu_table__cpu_per_message_at_each_offered_rate_with_the_pipeline_sum() -> None:
    setting = SETTINGS[1]
    result = E2eResult(setting, rate=20_000)
    # 30,000 messages at 1,000/s: 3 s of signal's CPU is 100 us a message, Redis left out of
    # the pipeline; at 20,000/s fewer wakes carry more entries each.
    low = per_message_us({"ws": 0.6, "signal": 3.0, "risk": 0.3, "execution": 0.15, "redis": 1.2}, 30_000)
    high = per_message_us({"ws": 6.0, "signal": 7.2, "risk": 1.8, "execution": 0.3, "redis": 4.2}, 600_000)
    result.curve = [{"rate": 1_000.0, "cpu_us": low}, {"rate": 20_000.0, "cpu_us": high}, {"rate": 5_000.0}]

    lines = rate_cpu_lines([result])

    assert (
        "| setting | asked msg/s | ws us | signal us | risk us | execution us | redis us | pipeline us |"
        in lines
    )
    rows = [line for line in lines if line.startswith(f"| {setting.name} ")]
    assert rows == [
        f"| {setting.name} | 1,000 | 20.0 | 100.0 | 10.0 | 5.0 | 40.0 | 135.0 |",
        f"| {setting.name} | 20,000 | 10.0 | 12.0 | 3.0 | 0.5 | 7.0 | 25.5 |",
    ]
    assert rate_cpu_lines([E2eResult(setting, rate=1_000)]) == []
