"""Which messages in-process shadow mode compares (``CONTRACT_SHADOW_SAMPLE``).

A rate of 1 compares every message. A rate below 1 picks messages by a hash of
their stream entry id, so the choice is deterministic: every instance (and every
redelivery) of an entry is either always compared or never, and a rate of 0.1
compares ~1/10 of the entries whatever their order. A Pub/Sub body has no entry
id: there every ``1/rate``-th decode is compared instead.
"""

from __future__ import annotations

import zlib

from core.codec.base import EntryId

__all__ = ["HASH_SPACE", "ShadowSampler", "parse_rate"]

HASH_SPACE = 1 << 32
"""crc32 values lie in ``0 .. HASH_SPACE - 1``."""


def parse_rate(value: object) -> float:
    """A sampling rate from ``1``, ``0.1`` or ``1/10``; ``ValueError`` unless 0 < rate <= 1."""
    if isinstance(value, str) and "/" in value:
        top, _, bottom = value.partition("/")
        rate = float(top) / float(bottom)
    elif isinstance(value, int | float | str):
        rate = float(value)
    else:
        raise ValueError(f"not a rate: {value!r}")
    if not 0 < rate <= 1:  # also refuses NaN
        raise ValueError(f"a rate in (0, 1] (e.g. 1, 0.1 or 1/10), got {value!r}")
    return rate


class ShadowSampler:
    """Decides per message whether it is compared; ``rate`` as :func:`parse_rate` returns it."""

    def __init__(self, rate: float = 1.0) -> None:
        self.rate = parse_rate(rate)
        self.every = self.rate >= 1.0
        self._threshold = int(self.rate * HASH_SPACE)
        self._seen = 0
        period = 1.0 / self.rate
        # A whole period (1/10 -> every 10th) is a countdown: cheaper than the general formula.
        self._period = round(period) if abs(period - round(period)) < 1e-9 else 0
        self._left = self._period

    def take(self, entry_id: EntryId | None) -> bool:
        """True when the message with ``entry_id`` (None: a Pub/Sub body) is to be compared."""
        if self.every:
            return True
        if entry_id is not None:
            raw = entry_id if isinstance(entry_id, bytes) else entry_id.encode("ascii", "replace")
            return zlib.crc32(raw) < self._threshold
        if self._period:
            self._left -= 1
            if self._left:
                return False
            self._left = self._period
            return True
        self._seen += 1
        # Every 1/rate-th body: the integer part of seen * rate moves on by one.
        return int(self._seen * self.rate) != int((self._seen - 1) * self.rate)
