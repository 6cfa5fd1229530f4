"""The probe symbol: trades whose every signal risk approves under its default limits, so
market_data -> order_result rests on thousands of orders without lifting any limit.

Risk refuses an order that grows a position once exposure (shared by every symbol) is full,
which the bench's 320 symbols reach within a second. An order that *flips* a position,
+h to -h or back, does not grow it (``abs(new) > abs(current)`` is false), so it passes every
limit whatever the exposure. The probe's prices make the momentum strategy (window 20,
cooldown 20, threshold 25 bps: the defaults) fire exactly that sequence:

- trade 0 is 50 bps below ``PRICE``, trades 1-19 at ``PRICE``: trade 19 fires a BUY of strength
  0.5 (notional 500: position +h). It is published before any other trade of the run
  (:meth:`ProbeSeries.priming`), so risk sees it with an empty book and approves it;
- from then on one trade in ``CYCLE`` (21: the fire plus the cooldown) is 2 % off ``PRICE``
  (above, then below, in turn) and fires when it is the oldest of the window, 19 trades later:
  a SELL, then a BUY, ... of strength 1 (notional 1,000 = 2h at ``PRICE``): -h, +h, -h ...

``PRICE`` is 64 so the quantities (15.625 and 7.8125) are exact in binary: the flip lands on
exactly -h. tests/test_bench_probe.py runs the series through the real strategy and risk
engine with exposure full. One order per ``CYCLE`` probe trades; the probe's share of the
feed is a benchmark setting (``--probe-every``), each probe trade costs ws and signal what
any trade costs.
"""

from __future__ import annotations

__all__ = ["CYCLE", "PRICE", "PRIMING", "SYMBOL", "ProbeSeries"]

SYMBOL = "PROBE/USDT"
PRICE = 64.0
CYCLE = 21
"""Probe trades per order after priming: the firing trade and the strategy's cooldown of 20."""
PRIMING = 20
"""Trades that fill the window; the last one fires the first (half-size) order."""
_OFF = 0.02  # 2 %: ~200 bps, past the 100 bps at which a signal's strength reaches 1


class ProbeSeries:
    """The probe's prices in order (``price(k)`` for the k-th probe trade, from 0)."""

    @staticmethod
    def price(k: int) -> float:
        """The price of probe trade ``k``."""
        if k == 0:
            return PRICE / 1.005  # +50 bps at trade 19: strength 0.5, half an order
        cycle, at = divmod(k, CYCLE)
        if cycle == 0 or at != 0:
            return PRICE
        return PRICE * (1 + _OFF) if cycle % 2 else PRICE * (1 - _OFF)  # SELL, then BUY, in turn

    @staticmethod
    def orders_before(k: int) -> int:
        """How many orders probe trades 0..k-1 fire."""
        return 0 if k < PRIMING else 1 + max(0, (k - PRIMING) // CYCLE)
