"""The legacy path: ``json.loads`` + ``from_dict`` in, ``json.dumps(to_dict())`` out.

Deleted, with :mod:`migration.legacy` and :mod:`migration.legacy_guard`, once
every service runs the strict profile; only the registry imports it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from enum import Enum
from typing import Any

from core.codec.base import Decoded, EntryId, FieldMap, Message, RawFieldMap
from core.codec.errors import CodecErrors
from core.codec.fields import (
    FieldDecodeError,
    decode_field_map,
    encode_field_map,
    field_map_bytes,
    scan_fields,
)
from core.codec.limits import surrogate_error
from core.codec.pydantic_codec import CONTRACTS
from core.errors import ContractError
from core.topics import CodecPath, Topic
from migration.legacy import LegacyMessage, MarketData, Order, OrderResult, Signal
from migration.legacy_guard import LegacyGuard

__all__ = ["LEGACY_CLASSES", "LegacyCodec"]

LEGACY_CLASSES: dict[Topic, type[LegacyMessage]] = {
    Topic.MARKET_DATA: MarketData,
    Topic.SIGNALS: Signal,
    Topic.ORDERS: Order,
    Topic.ORDER_RESULTS: OrderResult,
}

_dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def _field_names(cls: type[LegacyMessage]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


class LegacyCodec:
    """The codec of the legacy path (no profile: it never knew ``api_version``)."""

    def __init__(self, max_bytes: int) -> None:
        self._errors = CodecErrors(CodecPath.LEGACY, None, max_bytes)
        self._fields = {topic: _field_names(cls) for topic, cls in LEGACY_CLASSES.items()}
        self._guards = {
            topic: LegacyGuard.from_contract(CONTRACTS[topic], self._fields[topic])
            for topic in LEGACY_CLASSES
        }

    @property
    def path(self) -> CodecPath:
        """Always :attr:`CodecPath.LEGACY`."""
        return CodecPath.LEGACY

    @property
    def profile(self) -> None:
        """The legacy path has no profile."""
        return None

    def decode(self, topic: Topic, raw: bytes, *, entry_id: EntryId | None = None) -> Decoded:
        """``json.loads`` + ``from_dict``, behind the contract's boundary checks (fills nothing)."""
        self._errors.check_body(topic, raw)
        try:
            # Decode as UTF-8 first: json.loads(bytes) would also guess UTF-16/32 and skip a
            # BOM, accepting bodies the Pydantic path refuses (the wire is UTF-8 only).
            obj = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            msg = f"Invalid JSON: {exc}"
            raise self._errors.error(topic, raw, [{"type": "json_invalid", "loc": (), "msg": msg}]) from None
        return self._from_obj(topic, obj, raw)

    def from_fields(self, topic: Topic, fields: RawFieldMap, *, entry_id: EntryId | None = None) -> Decoded:
        """Decode a stream field map, then as :meth:`decode`."""
        size, document = scan_fields(fields, self._errors.max_bytes)
        if size > self._errors.max_bytes:
            self._errors.check_fields_size(topic, fields)  # raises payload_too_large, nothing parsed
        obj: Any = None
        if document is not None and document.find(b"\\") >= 0 and surrogate_error(document) is not None:
            document = None  # json.loads would accept it: field-by-field decoding refuses and names the field
        if document is not None:
            try:
                # The same parser on the same values: one call instead of one per field.
                obj = json.loads(document.decode("utf-8"))
            except ValueError:
                obj = None  # decoded again field by field below, which names the bad field
        if obj is None:
            try:
                obj = decode_field_map(fields)
            except FieldDecodeError as exc:
                raise self._errors.from_fields_failure(topic, fields, exc) from None
        return self._from_obj(topic, obj, None, fields)

    def encode(self, topic: Topic, message: Message) -> bytes:
        """``json.dumps(message.to_dict())``; NaN and infinity are refused, not sent."""
        try:
            return _dumps(self._check_type(topic, message).to_dict()).encode("utf-8")
        except (ValueError, TypeError) as exc:
            raise self._errors.error(
                topic,
                repr(message).encode(),
                [{"type": "serialization", "loc": (), "msg": str(exc)}],
            ) from None

    def to_fields(self, topic: Topic, message: Message) -> FieldMap:
        """The stream field map of ``message.to_dict()``."""
        try:
            return encode_field_map(self._check_type(topic, message).to_dict())
        except ValueError as exc:
            raise self._errors.error(
                topic,
                repr(message).encode(),
                [{"type": "serialization", "loc": (), "msg": str(exc)}],
            ) from None

    def build(self, topic: Topic, values: Mapping[str, Any]) -> Message:
        """A legacy dataclass with the fields it knows (``api_version`` etc. dropped)."""
        names = self._fields[topic]
        missing = [n for n in names if n not in values]
        if missing:
            raise self._errors.error(
                topic,
                repr(dict(values)).encode(),
                [{"type": "missing", "loc": (n,), "msg": "Field required"} for n in missing],
            )
        return LEGACY_CLASSES[topic](**{n: _plain(values[n]) for n in names})

    def as_dict(self, topic: Topic, message: Message) -> dict[str, Any]:
        """``message.to_dict()``."""
        checked = self._check_type(topic, message)
        if type(checked) is LEGACY_CLASSES[topic]:
            # Its to_dict is dataclasses.asdict of plain values: the same dict, without the
            # recursive deep copy (~5 us; shadow mode asks once per message).
            return {name: getattr(checked, name) for name in self._fields[topic]}
        return checked.to_dict()

    def _from_obj(
        self, topic: Topic, obj: Any, raw: bytes | None, fields: RawFieldMap | None = None
    ) -> Decoded:
        def fail(errors: list[dict[str, Any]]) -> ContractError:
            body = raw if raw is not None else field_map_bytes(fields or {})
            return self._errors.error(topic, body, errors)

        if not isinstance(obj, dict):
            raise fail([{"type": "model_type", "loc": (), "msg": "Input should be a JSON object"}])
        errors = self._guards[topic].check(obj)
        if errors:
            raise fail(errors)
        try:
            return Decoded(LEGACY_CLASSES[topic].from_dict(obj))
        except KeyError as exc:
            raise fail([{"type": "missing", "loc": (str(exc.args[0]),), "msg": "Field required"}]) from None
        except (ValueError, TypeError) as exc:
            raise fail([{"type": "value_error", "loc": (), "msg": str(exc)}]) from None

    def _check_type(self, topic: Topic, message: Message) -> LegacyMessage:
        cls = LEGACY_CLASSES[topic]
        if not isinstance(message, cls):
            raise self._errors.error(
                topic,
                repr(message).encode(),
                [
                    {
                        "type": "model_type",
                        "loc": (),
                        "msg": f"expected {cls.__name__}, got {type(message).__name__}",
                    }
                ],
            )
        return message


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value
