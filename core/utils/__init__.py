"""Small shared utilities: the injectable clock."""

from core.utils.clock import (
    Clock,
    FrozenClock,
    SystemClock,
    frozen,
    get_clock,
    ms_to_datetime,
    now_ms,
    set_clock,
    utcnow,
)

__all__ = [
    "Clock",
    "FrozenClock",
    "SystemClock",
    "frozen",
    "get_clock",
    "ms_to_datetime",
    "now_ms",
    "set_clock",
    "utcnow",
]
