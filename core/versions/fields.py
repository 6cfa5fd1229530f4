"""Field types the later contract versions add: exact decimals on the wire, and the v1.1 enum.

A v2.0 price, size or fee travels as a JSON **string** holding a plain decimal (``"64250.5"``,
never a number, an exponent, a sign or whitespace) and is a :class:`~decimal.Decimal` in the
model, so MEXC's decimal strings stay exact end to end. The same pattern is the JSON Schema,
so the codec and the exported schema refuse the same values.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

__all__ = [
    "DECIMAL_MAX_CHARS",
    "DECIMAL_PATTERN",
    "POSITIVE_DECIMAL_PATTERN",
    "DecimalPrice",
    "DecimalQuantity",
    "PositiveDecimalQuantity",
    "TimeInForce",
    "plain_decimal",
]

DECIMAL_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]+)?$"
"""A plain non-negative decimal: no sign, exponent, whitespace, NaN or Infinity."""

DECIMAL_MAX_CHARS = 64
"""Longest decimal string accepted; a value that needs more digits does not fit the contract."""

POSITIVE_DECIMAL_PATTERN = r"^(0\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(\.[0-9]+)?)$"
"""A plain decimal > 0 (the JSON Schema of a price or an order size)."""

_DECIMAL_RE = re.compile(DECIMAL_PATTERN)


class TimeInForce(StrEnum):
    """How long an order stays working at the venue (v1.1)."""

    GTC = "GTC"
    """Good till cancelled: the default, and what every v1.0 order meant."""
    IOC = "IOC"
    """Immediate or cancel: whatever does not fill at once is cancelled."""


def plain_decimal(value: Decimal) -> str:
    """``value`` as the wire writes it: positional notation, never an exponent (``1E+2`` -> ``100``)."""
    return format(value, "f")


def _exact_decimal(value: Any) -> Any:
    # A float or int here is a JSON number (or code passing one): the point of v2.0 is that
    # sizes and prices are never binary floats, so a number is a wrong type, not a conversion.
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PydanticCustomError("decimal_finite", "an exact decimal must be finite")
        if value.is_zero() and value.is_signed():
            value = value.copy_abs()  # -0 is 0: the wire form has no sign
        if len(plain_decimal(value)) > DECIMAL_MAX_CHARS:  # e.g. a huge float converted from v1
            raise PydanticCustomError(
                "decimal_too_long",
                "an exact decimal has at most {limit} characters",
                {"limit": DECIMAL_MAX_CHARS},
            )
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "decimal_string",
            'an exact decimal is written as a JSON string such as "64250.5", not as {kind}',
            {"kind": type(value).__name__},
        )
    if len(value) > DECIMAL_MAX_CHARS or not _DECIMAL_RE.match(value):
        raise PydanticCustomError(
            "decimal_pattern",
            "an exact decimal is plain digits with an optional fraction (at most {limit} characters), "
            "no sign, exponent or spaces",
            {"limit": DECIMAL_MAX_CHARS},
        )
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise PydanticCustomError("decimal_pattern", "not a decimal") from None


def _schema(description: str, unit: str, *, positive: bool = False) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": POSITIVE_DECIMAL_PATTERN if positive else DECIMAL_PATTERN,
        "maxLength": DECIMAL_MAX_CHARS,
        "description": description,
        "unit": unit,
    }


_Exact = Annotated[
    Decimal,
    BeforeValidator(_exact_decimal),
    PlainSerializer(plain_decimal, return_type=str, when_used="json"),  # Python mode keeps the Decimal
]

DecimalPrice = Annotated[
    _Exact,
    Field(gt=0),
    WithJsonSchema(
        _schema(
            "Exact price, quote currency per base unit, as a decimal string; > 0.", "quote", positive=True
        )
    ),
]
"""A price > 0 as an exact decimal (v2.0)."""

DecimalQuantity = Annotated[
    _Exact,
    Field(ge=0),
    WithJsonSchema(_schema("Exact amount as a decimal string; >= 0.", "base currency")),
]
"""A size or fee >= 0 as an exact decimal (v2.0)."""

PositiveDecimalQuantity = Annotated[
    _Exact,
    Field(gt=0),
    WithJsonSchema(
        _schema("Exact size in base currency as a decimal string; > 0.", "base currency", positive=True)
    ),
]
"""A size > 0 as an exact decimal (v2.0)."""
