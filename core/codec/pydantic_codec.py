"""The Pydantic path: ``model_validate_json`` in, ``model_dump_json`` out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from core.codec.base import Decoded, EntryId, FieldMap, Message, RawFieldMap
from core.codec.errors import CodecErrors
from core.codec.fields import (
    FieldDecodeError,
    decode_field_map,
    encode_field_map,
    field_map_bytes,
    scan_fields,
)
from core.domain.contracts import API_VERSION, MarketDataV1, OrderResultV1, OrderV1, SignalV1
from core.domain.time_units import explain_validation_error
from core.topics import CodecPath, Profile, Topic
from core.utils.clock import now_ms

__all__ = ["CONTRACTS", "ContractReader", "PydanticCodec", "StrictReader"]

CONTRACTS: dict[Topic, type[BaseModel]] = {
    Topic.MARKET_DATA: MarketDataV1,
    Topic.SIGNALS: SignalV1,
    Topic.ORDERS: OrderV1,
    Topic.ORDER_RESULTS: OrderResultV1,
}
"""The v1.0 contract of every topic."""


def _serialises_plainly(model: type[BaseModel]) -> bool:
    decorators = model.__pydantic_decorators__
    return not (
        decorators.field_serializers or decorators.model_serializers or model.__pydantic_computed_fields__
    )


_PLAIN_CONTRACTS = frozenset(m for m in CONTRACTS.values() if _serialises_plainly(m))
_VALIDATORS = {topic: model.__pydantic_validator__ for topic, model in CONTRACTS.items()}


class ContractReader(Protocol):
    """Validates input into a strict contract; raises ``pydantic.ValidationError``."""

    def from_json(self, raw: bytes, entry_id: EntryId | None = None) -> Decoded:
        """Validate a JSON document (``entry_id``: its stream entry, for a filled default)."""
        ...

    def from_obj(self, obj: dict[str, Any], entry_id: EntryId | None = None) -> Decoded:
        """Validate already-decoded values (``entry_id``: its stream entry, for a filled default)."""
        ...


class StrictReader:
    """The strict profile: the contract as it is, nothing filled in."""

    __slots__ = ("_model",)

    def __init__(self, model: type[BaseModel]) -> None:
        self._model = model

    def from_json(self, raw: bytes, entry_id: EntryId | None = None) -> Decoded:
        """Validate a JSON document against the strict contract (nothing is filled)."""
        return Decoded(self._model.__pydantic_validator__.validate_json(raw))

    def from_obj(self, obj: dict[str, Any], entry_id: EntryId | None = None) -> Decoded:
        """Validate decoded values against the strict contract (nothing is filled)."""
        return Decoded(self._model.__pydantic_validator__.validate_python(obj))


class PydanticCodec:
    """The codec of the Pydantic path; ``readers`` decide the profile."""

    def __init__(self, profile: Profile, readers: Mapping[Topic, ContractReader], max_bytes: int) -> None:
        self._profile = profile
        self._readers = dict(readers)
        self._errors = CodecErrors(CodecPath.PYDANTIC, profile, max_bytes)

    @property
    def path(self) -> CodecPath:
        """Always :attr:`CodecPath.PYDANTIC`."""
        return CodecPath.PYDANTIC

    @property
    def profile(self) -> Profile:
        """Lenient or strict."""
        return self._profile

    def decode(self, topic: Topic, raw: bytes, *, entry_id: EntryId | None = None) -> Decoded:
        """Validate a Pub/Sub JSON body into the topic's contract."""
        self._errors.check_body(topic, raw, text=False)  # Pydantic's parser refuses lone surrogates
        try:
            return self._readers[topic].from_json(raw, entry_id)
        except ValidationError as exc:
            raise self._errors.from_validation(topic, raw, exc) from None

    def from_fields(self, topic: Topic, fields: RawFieldMap, *, entry_id: EntryId | None = None) -> Decoded:
        """Validate a stream field map into the topic's contract."""
        size, document = scan_fields(fields, self._errors.max_bytes)
        if size > self._errors.max_bytes:
            self._errors.check_fields_size(topic, fields)  # raises payload_too_large, nothing parsed
        reader = self._readers[topic]
        if document is not None:
            try:
                return reader.from_json(document, entry_id)
            except ValidationError:
                pass  # decoded again field by field below, which reports exactly as it always did
        try:
            obj = decode_field_map(fields)
        except FieldDecodeError as exc:
            raise self._errors.from_fields_failure(topic, fields, exc) from None
        try:
            return reader.from_obj(obj, entry_id)
        except ValidationError as exc:
            raise self._errors.from_validation(topic, field_map_bytes(fields), exc) from None

    def encode(self, topic: Topic, message: Message) -> bytes:
        """The JSON body of a contract message."""
        model = self._check_type(topic, message)
        return model.__pydantic_serializer__.to_json(model)

    def to_fields(self, topic: Topic, message: Message) -> FieldMap:
        """The stream field map of a contract message."""
        model = self._check_type(topic, message)
        # A contract whose fields all serialise as themselves: its attributes are what
        # model_dump(mode="json") gives (enums are StrEnums, written as their value).
        plain = type(model) in _PLAIN_CONTRACTS
        values = model.__dict__ if plain else model.__pydantic_serializer__.to_python(model, mode="json")
        try:
            return encode_field_map(values)
        except ValueError as exc:  # only an unvalidated model (model_construct) holds NaN/inf
            raise self._errors.error(
                topic, repr(message).encode(), [{"type": "serialization", "loc": (), "msg": str(exc)}]
            ) from None

    def build(self, topic: Topic, values: Mapping[str, Any]) -> Message:
        """A validated contract; adds ``api_version`` and a clock ``timestamp`` unless given."""
        data = {"api_version": API_VERSION, **values}
        if "timestamp" not in data:  # the clock only when needed (ws gives every trade's time)
            data["timestamp"] = now_ms()
        try:
            # The contract's validator itself: what model_validate runs, without its two Python
            # frames (~0.4 us of ws's per-trade cost); its errors get the same unit hints below.
            return _VALIDATORS[topic].validate_python(data)
        except ValidationError as exc:
            explained = explain_validation_error(exc)
            raise self._errors.from_validation(topic, repr(dict(values)).encode(), explained) from None

    def as_dict(self, topic: Topic, message: Message) -> dict[str, Any]:
        """The contract's values in JSON mode."""
        return self._check_type(topic, message).model_dump(mode="json")

    def _check_type(self, topic: Topic, message: Message) -> BaseModel:
        model = CONTRACTS[topic]
        if not isinstance(message, model):
            raise self._errors.error(
                topic,
                repr(message).encode(),
                [
                    {
                        "type": "model_type",
                        "loc": (),
                        "msg": f"expected {model.__name__}, got {type(message).__name__}",
                    }
                ],
            )
        return message
