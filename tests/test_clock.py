"""The injectable clock: frozen in tests, aware UTC, epoch milliseconds everywhere."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings

from core.codec import build_codec
from core.topics import Path, Profile, Topic
from core.utils.clock import (
    FrozenClock,
    SystemClock,
    frozen,
    get_clock,
    ms_to_datetime,
    now_ms,
    set_clock,
    utcnow,
)
from tests.strategies import timestamps_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LEGACY_SIGNAL = (
    b'{"signal_id": "s1", "symbol": "BTC/USDT", "side": "BUY", "price": 1.5, "strength": 0.5, "reason": ""}'
)


def test_frozen_clock_fixture__stands_still_at_its_time(frozen_clock: FrozenClock) -> None:
    assert now_ms() == frozen_clock.ms == 1_767_225_600_000
    assert now_ms() == now_ms()
    assert get_clock() is frozen_clock


def test_frozen_clock__advance_moves_it_by_milliseconds(frozen_clock: FrozenClock) -> None:
    frozen_clock.advance(250)
    assert now_ms() == 1_767_225_600_250


def test_frozen_clock__makes_lenient_defaults_deterministic(frozen_clock: FrozenClock) -> None:
    codec = build_codec(Path.PYDANTIC, Profile.LENIENT)
    first = codec.decode(Topic.SIGNALS, LEGACY_SIGNAL)
    second = codec.decode(Topic.SIGNALS, LEGACY_SIGNAL)
    assert first.message == second.message
    assert first.message.timestamp == frozen_clock.ms


def test_frozen__restores_the_previous_clock_even_after_an_error() -> None:
    before = get_clock()
    try:
        with frozen(1_000_000_000_000) as clock:
            assert now_ms() == 1_000_000_000_000
            assert get_clock() is clock
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert get_clock() is before


def test_set_clock__returns_the_previous_clock() -> None:
    mine = FrozenClock(42)
    previous = set_clock(mine)
    try:
        assert now_ms() == 42
    finally:
        assert set_clock(previous) is mine


def test_system_clock__is_epoch_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    value = SystemClock().now_ms()
    after = time.time_ns() // 1_000_000
    assert before <= value <= after


def test_utcnow__is_timezone_aware_utc() -> None:
    value = utcnow()
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


def test_utcnow__agrees_with_now_ms_on_the_frozen_clock(frozen_clock: FrozenClock) -> None:
    frozen_clock.advance(123)
    assert utcnow() == EPOCH + timedelta(milliseconds=now_ms())
    assert utcnow() == datetime(2026, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)


def test_utcnow__agrees_with_now_ms_on_the_system_clock() -> None:
    before = now_ms()
    value = utcnow()
    after = now_ms()
    assert EPOCH + timedelta(milliseconds=before) <= value <= EPOCH + timedelta(milliseconds=after)


@settings(max_examples=200, deadline=None)
@given(ms=timestamps_ms)
def test_ms_to_datetime__is_exact_to_the_millisecond(ms: int) -> None:
    value = ms_to_datetime(ms)
    assert value == EPOCH + timedelta(milliseconds=ms)
    assert (value - EPOCH) // timedelta(milliseconds=1) == ms
