"""The injectable clock: every timestamp the pipeline makes comes from here.

Tests freeze it (:func:`frozen`) so runs are deterministic and repeatable.
All contract timestamps are epoch **milliseconds** (see :func:`now_ms`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = [
    "Clock",
    "FrozenClock",
    "SystemClock",
    "frozen",
    "get_clock",
    "ms_to_datetime",
    "now_ms",
    "set_clock",
    "to_ms",
    "utcnow",
]


class Clock(Protocol):
    """Something that tells the current time in epoch milliseconds."""

    def now_ms(self) -> int:
        """Milliseconds since 1970-01-01T00:00:00Z."""
        ...


class SystemClock:
    """The wall clock."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch, from the system clock."""
        return time.time_ns() // 1_000_000


class FrozenClock:
    """A clock that stands still until told to move; for tests and replays."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        """The frozen time."""
        return self.ms

    def advance(self, ms: int) -> None:
        """Move the frozen time forward by ``ms`` milliseconds."""
        self.ms += ms


_SYSTEM = SystemClock()
_current: Clock = _SYSTEM
_time_ns = time.time_ns


def get_clock() -> Clock:
    """The clock in force for this process."""
    return _current


def set_clock(clock: Clock) -> Clock:
    """Install ``clock`` for this process; returns the previous one."""
    global _current
    previous, _current = _current, clock
    return previous


@contextmanager
def frozen(ms: int) -> Iterator[FrozenClock]:
    """Freeze the process clock at ``ms`` inside the ``with`` block."""
    clock = FrozenClock(ms)
    previous = set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)


def now_ms() -> int:
    """The current time in epoch milliseconds, from the clock in force."""
    clock = _current
    if clock is _SYSTEM:  # the wall clock, read here: one Python call less (signal reads it per message)
        return _time_ns() // 1_000_000
    return clock.now_ms()


def ms_to_datetime(ms: int) -> datetime:
    """An aware UTC datetime for an epoch-millisecond value."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(value: datetime | float) -> int:
    """Epoch milliseconds, the unit of every contract timestamp, from an aware ``datetime`` or
    from epoch **seconds** (``time.time()``, ``datetime.timestamp()``); a naive datetime is refused.

    ``to_ms(utcnow())`` is :func:`now_ms`; ``to_ms(utcnow().timestamp())`` fixes the seed's seconds.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("to_ms needs an aware datetime (e.g. utcnow()), not a naive one")
        return (value - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"to_ms takes a datetime or epoch seconds, not {type(value).__name__}")
    return round(value * 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime, from the clock in force."""
    return ms_to_datetime(now_ms())
