"""The trade a ws source produces, and MEXC's symbol names mapped to the pipeline's.

A source (the live MEXC client, the CSV replay) builds :class:`Trade` objects and
hands them to an async callback; it never knows Redis or the codec. The callback
turns a trade into a ``market_data`` message with
``codec.build(Topic.MARKET_DATA, trade.as_values(version))`` on either path, ``version`` being the
one the codec builds (v2.0 keeps the venue's decimal strings exact, :meth:`Trade.from_text`).

Symbols: MEXC writes a pair without a separator (``BTCUSDT``); the pipeline writes
``BASE/QUOTE`` (``BTC/USDT``). MEXC publishes no separator, so the split is found
by matching a known quote currency at the end of the name (longest first, so
``FDUSD`` wins over ``USD``-like shorter endings). :data:`QUOTE_CURRENCIES` lists
the quotes MEXC spot uses; a name ending in none of them is refused rather than
guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from core.domain.contracts import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, Side
from core.errors import CdbError
from core.versions.changes import float_to_decimal

__all__ = [
    "QUOTE_CURRENCIES",
    "SourceError",
    "Trade",
    "to_mexc_symbol",
    "to_pair",
]

QUOTE_CURRENCIES: tuple[str, ...] = ("USDT", "USDC", "USDE", "FDUSD", "TUSD", "EUR", "BTC", "ETH", "MX")
"""Quote currencies recognised at the end of a MEXC symbol, e.g. ``ETHBTC`` -> ``ETH/BTC``."""

_MAX_SYMBOL = 32  # the contract's limit for MarketDataV1.symbol
_SYMBOL = re.compile(r"[A-Z0-9]+(?:[/_-][A-Z0-9]+)?")  # the contract's pattern for MarketDataV1.symbol
_CODE = re.compile(r"[A-Z0-9]+")
_INF = math.inf
_VALID_SYMBOLS: set[str] = set()
"""Symbols that passed the check once (a feed has a few hundred): the regex runs once for each."""
_MAX_VALID_SYMBOLS = 65_536


class SourceError(CdbError):
    """A trade source met input that is not a valid trade.

    ``reason`` is a short, bounded code (``price_invalid``, ``line_malformed``...) safe
    as a metric label; ``where`` names the place (``services/ws/data/trades.csv:17``, a channel).
    """

    def __init__(self, reason: str, detail: str, *, where: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.where = where
        text = f"{reason}: {detail}"
        super().__init__(f"{where}: {text}" if where else text)

    def located(self, where: str) -> SourceError:
        """The same error, saying where it happened."""
        return SourceError(self.reason, self.detail, where=where)


def to_pair(mexc_symbol: str, quotes: Iterable[str] = QUOTE_CURRENCIES) -> str:
    """``"BTCUSDT"`` -> ``"BTC/USDT"``; a name already in pair form is returned upper-cased.

    Raises :class:`SourceError` (``symbol_unknown``) when no quote currency in ``quotes``
    ends the name or nothing is left for the base currency.
    """
    name = mexc_symbol.strip().upper()
    if "/" in name:
        base, _, quote = name.partition("/")
        if _CODE.fullmatch(base) and _CODE.fullmatch(quote):
            return name
        raise SourceError("symbol_unknown", f"{mexc_symbol!r} is not BASE/QUOTE")
    if _CODE.fullmatch(name):
        for quote in sorted(quotes, key=len, reverse=True):
            if name.endswith(quote) and len(name) > len(quote):
                return f"{name[: -len(quote)]}/{quote}"
    raise SourceError(
        "symbol_unknown",
        f"{mexc_symbol!r} does not end in a known quote currency ({', '.join(quotes)})",
    )


def to_mexc_symbol(pair: str) -> str:
    """``"BTC/USDT"`` -> ``"BTCUSDT"`` (MEXC's channel names use this form)."""
    return pair.strip().upper().replace("/", "")


@dataclass(frozen=True, slots=True, init=False)
class Trade:
    """One trade at a venue, checked at construction.

    ``price`` is quote currency per base unit (finite, > 0), ``volume`` base currency
    (finite, >= 0), ``side`` the taker side, ``timestamp`` epoch **milliseconds**.
    A value the ``market_data`` contract would refuse raises :class:`SourceError`
    here, at the source, where the raw input is still at hand.

    ``exact_price`` / ``exact_volume``: the decimals the venue wrote (MEXC's strings, the CSV's
    text), when known; ``price``/``volume`` are then their nearest floats. A v2.0 message carries
    the exact ones; a trade without them carries its floats' shortest decimals. They do not take
    part in equality (a trade read back from a frame equals the one written).
    """

    symbol: str
    price: float
    volume: float
    side: Side
    timestamp: int
    venue: str = "mexc"
    trade_id: str | None = None
    exact_price: Decimal | None = field(default=None, compare=False, repr=False)
    exact_volume: Decimal | None = field(default=None, compare=False, repr=False)

    def __init__(  # noqa: PLR0917  # the signature the dataclass would generate
        self,
        symbol: str,
        price: float,
        volume: float,
        side: Side,
        timestamp: int,
        venue: str = "mexc",
        trade_id: str | None = None,
        exact_price: Decimal | None = None,
        exact_volume: Decimal | None = None,
    ) -> None:
        # The frozen dataclass's own __init__, through the slots' descriptors instead of
        # object.__setattr__ looked up and called per field (ws makes one per trade: ~1.4 -> ~0.85 us).
        _SET_SYMBOL(self, symbol)
        _SET_PRICE(self, price)
        _SET_VOLUME(self, volume)
        _SET_SIDE(self, side)
        _SET_TIMESTAMP(self, timestamp)
        _SET_VENUE(self, venue)
        _SET_TRADE_ID(self, trade_id)
        _SET_EXACT_PRICE(self, exact_price)
        _SET_EXACT_VOLUME(self, exact_volume)
        self.__post_init__()

    def __post_init__(self) -> None:
        # Every check below runs for every trade (ws's hot path): the common, valid trade passes
        # each in one cheap test; anything else takes the full check, which says what is wrong.
        symbol = self.symbol
        if symbol not in _VALID_SYMBOLS:
            if len(symbol) > _MAX_SYMBOL or not _SYMBOL.fullmatch(symbol):
                raise SourceError("symbol_invalid", f"symbol {symbol!r} is not like 'BTC/USDT'")
            if len(_VALID_SYMBOLS) < _MAX_VALID_SYMBOLS:
                _VALID_SYMBOLS.add(symbol)
        price, volume = self.price, self.volume
        if type(price) is not float or not 0.0 < price < _INF:
            object.__setattr__(self, "price", _number("price", price, positive=True))
        if type(volume) is not float or not 0.0 <= volume < _INF:
            object.__setattr__(self, "volume", _number("volume", volume, positive=False))
        if type(self.side) is not Side and not isinstance(self.side, Side):
            raise SourceError("side_invalid", f"side {self.side!r} is not a Side")
        ts = self.timestamp
        not_int = type(ts) is not int and (isinstance(ts, bool) or not isinstance(ts, int))
        if not_int or not MIN_TIMESTAMP_MS <= ts <= MAX_TIMESTAMP_MS:
            raise SourceError("time_invalid", f"timestamp {ts!r} is not epoch milliseconds")
        if not self.venue:
            raise SourceError("venue_invalid", "venue is empty")
        if self.exact_price is None and self.exact_volume is None:
            return
        for name, exact in (("price", self.exact_price), ("volume", self.exact_volume)):
            if exact is not None and (not isinstance(exact, Decimal) or float(exact) != getattr(self, name)):
                raise SourceError(f"{name}_invalid", f"exact {name} {exact!r} is not the decimal of {name}")

    @classmethod
    def from_text(cls, *, price: str, volume: str, **fields: Any) -> Trade:
        """A trade whose price and volume the venue wrote as decimal strings, kept exact; the
        floats are their nearest values. Text that is no finite number: :class:`SourceError`."""
        exact_price, exact_volume = _exact("price", price), _exact("volume", volume)
        return cls(
            price=float(exact_price),
            volume=float(exact_volume),
            exact_price=exact_price,
            exact_volume=exact_volume,
            **fields,
        )

    def as_values(self, version: str = "v1.0") -> dict[str, Any]:
        """The values ``codec.build(Topic.MARKET_DATA, ...)`` takes in contract ``version``
        (the one the codec builds: :func:`core.versions.own.own_version`).

        v1.0: ``price``/``volume`` as floats. v2.0: ``price``/``quantity`` as exact decimals, the
        venue's own when known. ``trade_id`` is included only when known; the legacy path
        ignores it, the Pydantic path carries it. ``api_version`` is left to the codec.
        """
        values: dict[str, Any]
        if version == "v1.0":  # one literal per version: this runs for every trade
            values = {
                "symbol": self.symbol,
                "price": self.price,
                "volume": self.volume,
                "side": self.side,
                "venue": self.venue,
                "timestamp": self.timestamp,
            }
        elif version == "v2.0":
            values = {
                "symbol": self.symbol,
                "price": self.exact_price if self.exact_price is not None else float_to_decimal(self.price),
                "quantity": (
                    self.exact_volume if self.exact_volume is not None else float_to_decimal(self.volume)
                ),
                "side": self.side,
                "venue": self.venue,
                "timestamp": self.timestamp,
            }
        else:
            raise ValueError(f"a trade is built as market_data v1.0 or v2.0, not {version!r}")
        if self.trade_id is not None:
            values["trade_id"] = self.trade_id
        return values


_SLOT_SETTERS = {name: vars(Trade)[name].__set__ for name in Trade.__slots__}
(
    _SET_SYMBOL,
    _SET_PRICE,
    _SET_VOLUME,
    _SET_SIDE,
    _SET_TIMESTAMP,
    _SET_VENUE,
    _SET_TRADE_ID,
    _SET_EXACT_PRICE,
    _SET_EXACT_VOLUME,
) = (
    _SLOT_SETTERS[name]
    for name in (
        "symbol",
        "price",
        "volume",
        "side",
        "timestamp",
        "venue",
        "trade_id",
        "exact_price",
        "exact_volume",
    )
)


def _exact(name: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise SourceError(f"{name}_invalid", f"{name} {text!r} is not a number") from None
    if not value.is_finite():
        raise SourceError(f"{name}_invalid", f"{name} {text!r} is not finite")
    return value


def _number(name: str, value: object, *, positive: bool) -> float:
    # bool is an int subclass; True as a price is a bug upstream, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SourceError(f"{name}_invalid", f"{name} {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise SourceError(f"{name}_invalid", f"{name} {value!r} is not finite and {bound}")
    return number
