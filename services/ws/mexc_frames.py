"""MEXC spot v3 binary frames: protobuf ``PushDataV3ApiWrapper`` <-> :class:`Trade`.

Field numbers and types follow MEXC's published definitions (see
``services/ws/proto/*.proto`` for the provenance): the wrapper carries ``channel`` (1),
``symbol`` (3), ``sendTime`` (6) and the body ``publicAggreDeals`` (314); each deal has
``price`` (1, decimal string), ``quantity`` (2, decimal string), ``tradeType`` (3,
1 = BUY, 2 = SELL), ``time`` (4, epoch ms) and, in newer revisions, ``tradeId`` (5).

Decoding is tolerant of what newer revisions add (unknown fields are skipped) and
strict about what a trade needs. A frame carries many deals (everything of 100 ms), so
:func:`decode_frame` refuses each bad deal on its own, as a frame of that deal alone, and
one bad deal never costs the others; :func:`decode_deals` refuses the whole frame instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal

from google.protobuf.message import DecodeError

from core.domain.contracts import Side
from core.versions.fields import plain_decimal
from services.ws.proto.PushDataV3ApiWrapper_pb2 import PushDataV3ApiWrapper
from services.ws.trades import QUOTE_CURRENCIES, SourceError, Trade, to_mexc_symbol, to_pair

__all__ = [
    "DEALS_CHANNEL_PREFIX",
    "TRADE_TYPES",
    "deals_channel",
    "decode_deals",
    "decode_frame",
    "encode_deals",
]

DEALS_CHANNEL_PREFIX = "spot@public.aggre.deals.v3.api.pb"
"""MEXC's aggregated-trades channel; a full name is ``<prefix>@<interval>@<SYMBOL>``."""

TRADE_TYPES: dict[int, Side] = {1: Side.BUY, 2: Side.SELL}
"""MEXC ``tradeType`` -> taker side (MEXC documents 1: Buy, 2: Sell)."""

_SIDE_CODES = {side: code for code, side in TRADE_TYPES.items()}
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def deals_channel(mexc_symbol: str, interval: str = "100ms") -> str:
    """``spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT`` (MEXC offers 100ms and 10ms)."""
    return f"{DEALS_CHANNEL_PREFIX}@{interval}@{mexc_symbol.upper()}"


def decode_deals(raw: bytes, *, venue: str = "mexc", quotes: Iterable[str] = QUOTE_CURRENCIES) -> list[Trade]:
    """The trades of one binary frame, in the frame's order; all of them or none.

    Raises :class:`SourceError` for a frame that is not protobuf, carries no
    aggregated-deals body, names no mappable symbol, or holds a deal with an
    unparsable price/quantity, an unknown ``tradeType`` or a time outside epoch ms.
    """
    trades, refused = decode_frame(raw, venue=venue, quotes=quotes)
    if refused:
        raise refused[0][1]
    return trades


def decode_frame(
    raw: bytes, *, venue: str = "mexc", quotes: Iterable[str] = QUOTE_CURRENCIES
) -> tuple[list[Trade], list[tuple[bytes, SourceError]]]:
    """The valid trades of one binary frame, in the frame's order, and each refused deal as a
    frame of its own (the wrapper with that deal only) with its :class:`SourceError`.

    Raises :class:`SourceError` when no deal can be read at all: the frame is not protobuf,
    carries no aggregated-deals body or names no mappable symbol.
    """
    wrapper = PushDataV3ApiWrapper()
    try:
        wrapper.ParseFromString(raw)
    except DecodeError as exc:
        raise SourceError("protobuf_invalid", f"not a PushDataV3ApiWrapper: {exc}") from None
    where = wrapper.channel or "<no channel>"
    if wrapper.WhichOneof("body") != "publicAggreDeals":
        raise SourceError("body_unexpected", "frame carries no publicAggreDeals body", where=where)
    # The wrapper's symbol field is optional; the channel always ends in the symbol.
    name = wrapper.symbol if wrapper.HasField("symbol") else wrapper.channel.rpartition("@")[2]
    try:
        pair = to_pair(name, quotes)
    except SourceError as exc:
        raise exc.located(where) from None
    trades = []
    refused: list[tuple[bytes, SourceError]] = []
    for index, deal in enumerate(wrapper.publicAggreDeals.deals):
        try:
            trades.append(
                Trade.from_text(
                    symbol=pair,
                    price=_decimal("price", deal.price),
                    volume=_decimal("quantity", deal.quantity),
                    side=_side(deal.tradeType),
                    timestamp=deal.time,
                    venue=venue,
                    trade_id=deal.tradeId or None,
                )
            )
        except SourceError as exc:
            refused.append((_alone(wrapper, index), exc.located(f"{where} deal {index}")))
    return trades, refused


def _alone(wrapper: PushDataV3ApiWrapper, index: int) -> bytes:
    # The refused deal's own evidence: the frame as MEXC sent it, with only that deal in it.
    single = PushDataV3ApiWrapper()
    single.CopyFrom(wrapper)
    deals = single.publicAggreDeals.deals
    del deals[index + 1 :]
    del deals[:index]
    return single.SerializeToString()


def encode_deals(
    mexc_symbol: str,
    trades: Sequence[Trade],
    *,
    interval: str = "100ms",
    send_time: int | None = None,
) -> bytes:
    """One binary frame as MEXC sends it for ``trades`` (used by the fake server and tests)."""
    channel = deals_channel(to_mexc_symbol(mexc_symbol), interval)
    wrapper = PushDataV3ApiWrapper(channel=channel, symbol=to_mexc_symbol(mexc_symbol))
    wrapper.publicAggreDeals.eventType = channel.rpartition("@")[0]
    for trade in trades:
        deal = wrapper.publicAggreDeals.deals.add()
        deal.price = _format(trade.price, trade.exact_price)
        deal.quantity = _format(trade.volume, trade.exact_volume)
        deal.tradeType = _SIDE_CODES[trade.side]
        deal.time = trade.timestamp
        if trade.trade_id is not None:
            deal.tradeId = trade.trade_id
    if send_time is not None:
        wrapper.sendTime = send_time
    elif trades:
        wrapper.sendTime = trades[-1].timestamp
    return wrapper.SerializeToString()


def _decimal(name: str, text: str) -> str:
    # Decimal() alone would accept "nan", "inf", " 1", "1_000": none of them is a MEXC decimal.
    # The text itself is kept (Trade.from_text): a v2.0 message carries it exact.
    if not _DECIMAL.fullmatch(text):
        raise SourceError(f"{name}_invalid", f"{name} {text!r} is not a decimal string")
    return text


def _side(trade_type: int) -> Side:
    try:
        return TRADE_TYPES[trade_type]
    except KeyError:
        detail = f"tradeType {trade_type} is neither 1 (BUY) nor 2 (SELL)"
        raise SourceError("trade_type_unknown", detail) from None


def _format(value: float, exact: Decimal | None) -> str:
    # The venue's own decimal when known; else repr(), the shortest string that reads back to
    # the same float.
    return plain_decimal(exact) if exact is not None else repr(value)
