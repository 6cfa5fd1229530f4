"""The Redis Stream field-map encoding, shared by every path.

Rule: one stream field per message field, its value the JSON encoding of the
field's value. That makes every value a contract can hold survive the trip
(``null``, ``true``/``false``, unicode, integers of any size, nested values),
which a plain ``xadd(stream, model.model_dump())`` does not: redis-py refuses
``None`` and ``bool`` and would turn numbers into untyped strings. ``redis-cli
XRANGE`` shows it readably: ``symbol "BTC/USDT" price 50000.5 reason null``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from core.codec.base import FieldMap, RawFieldMap
from core.errors import ErrorDetail

__all__ = [
    "FieldDecodeError",
    "decode_field_map",
    "encode_field_map",
    "field_map_bytes",
    "field_map_size",
]

_encode_value = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class FieldDecodeError(ValueError):
    """Some stream fields were not valid JSON values; carries one error per field."""

    def __init__(self, errors: list[ErrorDetail]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} stream field(s) are not JSON values")


def encode_field_map(values: Mapping[str, Any]) -> FieldMap:
    """Encode plain values (as from ``model_dump(mode="json")``) as a stream field map.

    Raises ``ValueError`` for a value JSON cannot carry (NaN, infinity, an object
    that is not JSON-serialisable).
    """
    try:
        return {name: _encode_value(value) for name, value in values.items()}
    except TypeError as exc:
        raise ValueError(str(exc)) from exc


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def decode_field_map(fields: RawFieldMap) -> dict[str, Any]:
    """Decode a stream field map back into plain values.

    Raises :class:`FieldDecodeError` naming every field whose value is not JSON.
    """
    out: dict[str, Any] = {}
    errors: list[ErrorDetail] = []
    for raw_name, raw_value in fields.items():
        try:
            name = _text(raw_name)
        except UnicodeDecodeError:
            errors.append(
                {"type": "json_invalid", "loc": (repr(raw_name),), "msg": "field name is not UTF-8"}
            )
            continue
        try:
            # _text: strict UTF-8, as on the Pub/Sub path (json.loads(bytes) would guess UTF-16).
            out[name] = json.loads(_text(raw_value))
        except (ValueError, RecursionError) as exc:
            errors.append(
                {
                    "type": "json_invalid",
                    "loc": (name,),
                    "msg": f"stream field value is not a JSON value: {exc}",
                    "input": raw_value,
                }
            )
    if errors:
        raise FieldDecodeError(errors)
    return out


def field_map_size(fields: RawFieldMap) -> int:
    """Bytes a field map occupies on the wire (names and values), for the size limit."""
    # Text (a client with decode_responses=True) is measured in UTF-8 bytes, not characters,
    # so the limit means the same for both kinds of client.
    return sum(_byte_len(k) + _byte_len(v) for k, v in fields.items())


def _byte_len(value: bytes | str) -> int:
    return len(value) if isinstance(value, bytes) else len(value.encode("utf-8", errors="surrogatepass"))


def field_map_bytes(fields: RawFieldMap) -> bytes:
    """A faithful, readable rendering of a field map as bytes, for dead letters."""
    return json.dumps({_safe_text(k): _safe_text(v) for k, v in fields.items()}, ensure_ascii=False).encode(
        "utf-8"
    )


def _safe_text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
