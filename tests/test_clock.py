"""The injectable clock: frozen in tests, aware UTC, epoch milliseconds everywhere."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings

from core.codec import build_codec
from core.topics import CodecPath, Profile, Topic
from core.utils.clock import (
    FrozenClock,
    SystemClock,
    frozen,
    get_clock,
    ms_to_datetime,
    now_ms,
    set_clock,
    to_ms,
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


def test_lenient_defaults__come_from_the_entry_id_never_from_the_clock(frozen_clock: FrozenClock) -> None:
    codec = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)
    first = codec.decode(Topic.SIGNALS, LEGACY_SIGNAL, entry_id=b"1767225600999-0")
    frozen_clock.advance(60_000)
    second = codec.decode(Topic.SIGNALS, LEGACY_SIGNAL, entry_id=b"1767225600999-0")
    assert first.message == second.message
    assert first.message.timestamp == 1_767_225_600_999 != frozen_clock.ms


def test_to_ms__turns_an_aware_datetime_and_epoch_seconds_into_ms() -> None:
    moment = datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)
    assert to_ms(moment) == 1_767_225_600_250
    assert to_ms(moment.timestamp()) == 1_767_225_600_250
    assert to_ms(1_767_225_600) == 1_767_225_600_000


def test_to_ms__of_utcnow_is_now_ms(frozen_clock: FrozenClock) -> None:
    assert to_ms(utcnow()) == now_ms() == frozen_clock.ms


def test_to_ms__refuses_a_naive_datetime_and_non_numbers() -> None:
    with pytest.raises(ValueError, match="aware"):
        to_ms(datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        to_ms(True)


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
