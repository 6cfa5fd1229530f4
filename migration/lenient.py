"""The lenient profile: read v1.0 contracts from producers that predate ``api_version``.

What a missing (or ``null``) field means is decided per field and per topic, here:

- ``api_version``: filled with ``"v1.0"`` on every topic (the only version a
  pre-v1.0 producer can have meant);
- ``timestamp`` on ``market_data``: **never filled**. It is the trade's business
  time, the legacy ws always sent it, and a guessed one reorders trades (a "now"
  made every later real trade of the symbol look stale). Missing or null, the
  message is a :class:`~core.errors.ContractError` and is dead-lettered;
- ``timestamp`` on ``signals``, ``orders``, ``order_results`` (the legacy producers
  predate the field): filled from the stream entry's own server time, the
  millisecond part of its id, **never the reader's clock**. Without an entry id
  (a Pub/Sub body, a dead letter that kept none) the message is refused.

Every other rule of the strict contract still holds, the decoded object *is* the
strict contract class, and the names of the filled fields are reported
(:attr:`Decoded.defaulted`) so they can be counted: the release manager's evidence
that strict is safe. Deleted after cutover, with its one registry entry.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, Field, ValidationError, create_model
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.codec.base import Decoded
from core.domain.contracts import API_VERSION, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from core.topics import Topic

__all__ = [
    "LENIENT_FIELDS",
    "MISSING_TIMESTAMP",
    "LenientReader",
    "MissingTimestamp",
    "entry_time_ms",
    "lenient_models",
    "lenient_readers",
    "lenient_variant",
]

LENIENT_FIELDS = ("api_version", "timestamp")
"""The fields v1.0 added that the lenient profile may fill in when missing or null."""


class MissingTimestamp(StrEnum):
    """What the lenient profile does with a message whose ``timestamp`` is missing or null."""

    REFUSED = "refused"
    """Business time: never invented; the message is a contract error (dead-lettered)."""
    ENTRY_TIME = "entry time"
    """Filled from the stream entry's server time (its id), reported as filled."""


MISSING_TIMESTAMP: dict[Topic, MissingTimestamp] = {
    Topic.MARKET_DATA: MissingTimestamp.REFUSED,
    Topic.SIGNALS: MissingTimestamp.ENTRY_TIME,
    Topic.ORDERS: MissingTimestamp.ENTRY_TIME,
    Topic.ORDER_RESULTS: MissingTimestamp.ENTRY_TIME,
}
"""The rule per topic (documented in docs/architecture.md, "Missing business time")."""

_OptionalTimestamp = Annotated[
    int | None,
    Field(
        default=None,
        strict=True,
        ge=MIN_TIMESTAMP_MS,
        le=MAX_TIMESTAMP_MS,
        description="Epoch ms (UTC); when missing or null, filled from the stream entry's server time "
        "(the ms part of its id), never the reader's clock (lenient profile only).",
        json_schema_extra={"unit": "ms"},
    ),
]

_OptionalApiVersion = Annotated[
    Literal["v1.0"] | None,
    Field(description="Contract version; v1.0 when missing or null (lenient profile only)."),
]


def lenient_variant(contract: type[BaseModel], *, fill_timestamp: bool = True) -> type[BaseModel]:
    """``contract`` with defaults for the fields v1.0 added; all other rules kept.

    ``fill_timestamp=False`` keeps ``timestamp`` as strict as the contract (market data).
    """
    fields: dict[str, Any] = {"api_version": (_OptionalApiVersion, None)}
    if fill_timestamp:
        fields["timestamp"] = (_OptionalTimestamp, None)
    return create_model(
        f"{contract.__name__}Lenient",
        __base__=contract,
        __doc__=f"{contract.__name__} as the lenient migration profile reads it.",
        **fields,
    )


def entry_time_ms(entry_id: bytes | str) -> int | None:
    """The server time (epoch ms) in a stream entry id ``<ms>-<seq>``; ``None`` if it has none."""
    text = entry_id.decode("ascii", "replace") if isinstance(entry_id, bytes) else entry_id
    head = text.partition("-")[0]
    return int(head) if head.isdigit() and len(head) <= 16 else None


class LenientReader:
    """Validates with the lenient variant and returns the strict contract class."""

    __slots__ = ("_contract", "_lenient", "_names", "_title")

    def __init__(
        self, contract: type[BaseModel], rule: MissingTimestamp = MissingTimestamp.ENTRY_TIME
    ) -> None:
        self._contract = contract
        self._lenient = lenient_variant(contract, fill_timestamp=rule is MissingTimestamp.ENTRY_TIME)
        self._names = tuple(contract.model_fields)
        self._title = contract.__name__

    def from_json(self, raw: bytes, entry_id: bytes | str | None = None) -> Decoded:
        """Validate a JSON document, filling ``api_version``/``timestamp`` as the topic's rule says."""
        # find(), not ``in``: CPython 3.11's bytes.__contains__ first tries the operand as an
        # integer and builds, then drops, a TypeError for it (~1.8k instructions a test).
        if raw.find(b'"api_version"') != -1 and raw.find(b'"timestamp"') != -1:
            # Most messages already carry both: the strict contract accepts them as they are,
            # with the same result and no copy (a miss costs one extra validation).
            try:
                return Decoded(self._contract.__pydantic_validator__.validate_json(raw))
            except ValidationError:
                pass
        return self._to_strict(self._lenient.model_validate_json(raw), entry_id, raw)

    def from_obj(self, obj: dict[str, Any], entry_id: bytes | str | None = None) -> Decoded:
        """Validate decoded values, filling ``api_version``/``timestamp`` as the topic's rule says."""
        if "api_version" in obj and "timestamp" in obj:
            try:
                return Decoded(self._contract.__pydantic_validator__.validate_python(obj))
            except ValidationError:
                pass
        return self._to_strict(self._lenient.model_validate(obj), entry_id, obj)

    def _to_strict(self, loose: BaseModel, entry_id: bytes | str | None, given_input: object) -> Decoded:
        values = {name: getattr(loose, name) for name in self._names}
        defaulted: list[str] = []
        if values["api_version"] is None:
            values["api_version"] = API_VERSION
            defaulted.append("api_version")
        if values["timestamp"] is None:  # only a topic whose rule is ENTRY_TIME gets here
            values["timestamp"] = self._entry_time(entry_id, given_input)
            defaulted.append("timestamp")
        # Already validated by the lenient variant under the same constraints.
        fields_set = loose.model_fields_set | set(defaulted)
        strict = self._contract.model_construct(_fields_set=fields_set, **values)
        return Decoded(cast(Any, strict), tuple(defaulted))

    def _entry_time(self, entry_id: bytes | str | None, given_input: object) -> int:
        ms = entry_time_ms(entry_id) if entry_id is not None else None
        if ms is not None and MIN_TIMESTAMP_MS <= ms <= MAX_TIMESTAMP_MS:
            return ms
        if entry_id is None:
            why = "there is no stream entry id to take its server time from"
        else:
            why = f"the stream entry id {entry_id!r} holds no plausible epoch ms"
        error = PydanticCustomError(
            "timestamp_unfillable",
            "timestamp is missing or null and {why}; the lenient profile fills it only from the "
            "stream entry's server time, never from the reader's clock",
            {"why": why},
        )
        detail: InitErrorDetails = {"type": error, "loc": ("timestamp",), "input": given_input}
        raise ValidationError.from_exception_data(self._title, [detail])


def lenient_models(contracts: dict[Topic, type[BaseModel]]) -> dict[Topic, type[BaseModel]]:
    """The lenient variant of each topic's contract under its :data:`MISSING_TIMESTAMP` rule."""
    return {
        topic: lenient_variant(model, fill_timestamp=MISSING_TIMESTAMP[topic] is MissingTimestamp.ENTRY_TIME)
        for topic, model in contracts.items()
    }


def lenient_readers(contracts: dict[Topic, type[BaseModel]]) -> dict[Topic, LenientReader]:
    """A :class:`LenientReader` per topic under its :data:`MISSING_TIMESTAMP` rule."""
    return {topic: LenientReader(model, MISSING_TIMESTAMP[topic]) for topic, model in contracts.items()}
