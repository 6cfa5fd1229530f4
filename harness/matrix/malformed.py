"""Malformed stream entries for the matrix's burst fault: each refused by every path and profile.

Every entry starts from a valid v1.0 field map of its topic (with ``api_version``
and ``timestamp``, so a strict reader has no other complaint) and breaks exactly
one thing. Ids start with ``bad-``: if a path ever accepted one, the business
result would show it.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from core.codec import encode_field_map
from core.domain.contracts import API_VERSION
from core.topics import Topic

__all__ = ["BURST_TOPICS", "Malformation", "malformed_entries"]

BURST_TOPICS = (Topic.MARKET_DATA, Topic.SIGNALS, Topic.ORDERS)
"""Topics a service consumes (``order_results`` has no consumer in the pipeline to refuse them)."""

_TS = 1_767_225_600_000

_TEMPLATES: dict[Topic, dict[str, Any]] = {
    Topic.MARKET_DATA: {
        "symbol": "BAD/USDT",
        "price": 100.0,
        "volume": 1.0,
        "side": "BUY",
        "venue": "bad-venue",
        "timestamp": _TS,
    },
    Topic.SIGNALS: {
        "signal_id": "bad-signal",
        "symbol": "BAD/USDT",
        "side": "BUY",
        "price": 100.0,
        "strength": 0.5,
        "reason": "bad",
        "timestamp": _TS,
    },
    Topic.ORDERS: {
        "order_id": "bad-order",
        "signal_id": "bad-signal",
        "symbol": "BAD/USDT",
        "side": "BUY",
        "order_type": "MARKET",
        "quantity": 1.0,
        "price": 100.0,
        "timestamp": _TS,
    },
}
_ID_FIELD = {Topic.MARKET_DATA: "venue", Topic.SIGNALS: "signal_id", Topic.ORDERS: "order_id"}
_SIZE_FIELD = {Topic.MARKET_DATA: "volume", Topic.SIGNALS: "price", Topic.ORDERS: "quantity"}
_TEXT_FIELD = {Topic.MARKET_DATA: "venue", Topic.SIGNALS: "reason", Topic.ORDERS: "signal_id"}


class Malformation(StrEnum):
    """The one thing a malformed entry gets wrong."""

    BAD_JSON = "bad_json"
    """A field value that is not JSON (``{oops``)."""
    MISSING_FIELD = "missing_field"
    """A required business field (``symbol``) is absent."""
    NAN = "nan"
    """A price of ``NaN`` (JSON-ish, but not a finite number)."""
    NEGATIVE_SIZE = "negative_size"
    """A size below its bound (volume, price or quantity of -1)."""
    UNKNOWN_SIDE = "unknown_side"
    """``side`` is ``HOLD``."""
    OVERSIZED = "oversized"
    """The entry is larger than ``MAX_MESSAGE_BYTES``."""
    NOT_UTF8 = "not_utf8"
    """A field value that is not UTF-8."""


def _valid_fields(topic: Topic, n: int) -> dict[bytes, bytes]:
    values = {**_TEMPLATES[topic], "api_version": API_VERSION}
    values[_ID_FIELD[topic]] = f"bad-{topic.value}-{n}"
    return {k.encode(): v.encode() for k, v in encode_field_map(values).items()}


def _break(
    topic: Topic, fields: dict[bytes, bytes], kind: Malformation, max_bytes: int
) -> dict[bytes, bytes]:
    out = dict(fields)
    if kind is Malformation.BAD_JSON:
        out[b"price"] = b"{oops"
    elif kind is Malformation.MISSING_FIELD:
        del out[b"symbol"]
    elif kind is Malformation.NAN:
        out[b"price"] = b"NaN"
    elif kind is Malformation.NEGATIVE_SIZE:
        out[_SIZE_FIELD[topic].encode()] = b"-1"
    elif kind is Malformation.UNKNOWN_SIDE:
        out[b"side"] = b'"HOLD"'
    elif kind is Malformation.OVERSIZED:
        out[_TEXT_FIELD[topic].encode()] = json.dumps("x" * (max_bytes + 1)).encode()
    elif kind is Malformation.NOT_UTF8:
        out[b"symbol"] = b'"\xff\xfe"'
    return out


def malformed_entries(
    topic: Topic, *, per_kind: int = 3, max_bytes: int = 65_536
) -> list[tuple[Malformation, dict[bytes, bytes]]]:
    """``per_kind`` field maps of every :class:`Malformation` for ``topic``, ready for ``XADD``."""
    out: list[tuple[Malformation, dict[bytes, bytes]]] = []
    for kind in Malformation:
        for _ in range(per_kind):
            out.append((kind, _break(topic, _valid_fields(topic, len(out)), kind, max_bytes)))
    return out
