"""Cross-field rules of the contracts, as JSON Schema ``if``/``then``.

The per-field constraints come from the models; the model validators (``OrderV1``: a
LIMIT order needs a price; ``OrderResultV1``: a fill needs a price and a quantity, a
REJECTED or CANCELLED result carries no fill) cannot be derived, so they are stated
here once. The exported schemas carry them (``allOf``), the legacy guard checks them
(:mod:`migration.legacy_guard` reads these ``if``/``then`` rules), and the test suite
checks that the codec and these rules refuse the same messages.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from core.domain.contracts import OrderResultV1, OrderStatus, OrderType, OrderV1

__all__ = ["cross_field_rules"]


def cross_field_rules(model: type[BaseModel]) -> list[dict[str, Any]]:
    """``if``/``then`` rules for the model validators of ``model`` (and its lenient variant)."""
    if issubclass(model, OrderV1):
        return [
            {
                "description": "A LIMIT order needs a price.",
                "if": {
                    "properties": {"order_type": {"const": OrderType.LIMIT.value}},
                    "required": ["order_type"],
                },
                "then": {"properties": {"price": {"type": "number"}}, "required": ["price"]},
            }
        ]
    if issubclass(model, OrderResultV1):
        filled = [OrderStatus.FILLED.value, OrderStatus.PARTIALLY_FILLED.value]
        unfilled = [OrderStatus.REJECTED.value, OrderStatus.CANCELLED.value]
        return [
            {
                "description": "A FILLED or PARTIALLY_FILLED result needs filled_quantity > 0 and a price.",
                "if": {"properties": {"status": {"enum": filled}}, "required": ["status"]},
                "then": {
                    "properties": {
                        "filled_quantity": {"exclusiveMinimum": 0},
                        "average_price": {"type": "number"},
                    },
                    "required": ["filled_quantity", "average_price"],
                },
            },
            {
                "description": "A REJECTED or CANCELLED result carries no fill: filled_quantity 0, "
                "average_price null or absent.",
                "if": {"properties": {"status": {"enum": unfilled}}, "required": ["status"]},
                "then": {
                    "properties": {
                        "filled_quantity": {"const": 0},
                        "average_price": {"type": "null"},
                    },
                },
            },
        ]
    return []
