"""The lenient profile: read v1.0 contracts from producers that predate ``api_version``.

A message without ``api_version`` gets ``"v1.0"``; one without ``timestamp`` gets
the injectable clock's time. Every other rule of the strict contract still holds,
the decoded object *is* the strict contract class, and the names of the filled
fields are reported so they can be counted (the release manager's evidence that
strict is safe). Deleted after cutover, with its one registry entry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, Field, ValidationError, create_model

from core.codec.base import Decoded
from core.domain.contracts import API_VERSION, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from core.utils.clock import now_ms

__all__ = ["LENIENT_FIELDS", "LenientReader", "lenient_variant"]

LENIENT_FIELDS = ("api_version", "timestamp")
"""The fields v1.0 added that the lenient profile fills in when they are missing."""

_OptionalTimestamp = Annotated[
    int | None,
    Field(
        default=None,
        strict=True,
        ge=MIN_TIMESTAMP_MS,
        le=MAX_TIMESTAMP_MS,
        description="Epoch ms (UTC); filled from the clock when missing (lenient profile only).",
        json_schema_extra={"unit": "ms"},
    ),
]


_OptionalApiVersion = Annotated[
    Literal["v1.0"],
    Field(description="Contract version; defaults to v1.0 when missing (lenient profile only)."),
]


def lenient_variant(contract: type[BaseModel]) -> type[BaseModel]:
    """``contract`` with defaults for the fields v1.0 added; all other rules kept."""
    return create_model(
        f"{contract.__name__}Lenient",
        __base__=contract,
        __doc__=f"{contract.__name__} as the lenient migration profile reads it.",
        api_version=(_OptionalApiVersion, API_VERSION),
        timestamp=(_OptionalTimestamp, None),
    )


class LenientReader:
    """Validates with the lenient variant and returns the strict contract class."""

    __slots__ = ("_contract", "_lenient", "_names")

    def __init__(self, contract: type[BaseModel]) -> None:
        self._contract = contract
        self._lenient = lenient_variant(contract)
        self._names = tuple(contract.model_fields)

    def from_json(self, raw: bytes) -> Decoded:
        """Validate a JSON document, filling ``api_version``/``timestamp`` if missing."""
        if b'"api_version"' in raw and b'"timestamp"' in raw:
            # Most messages already carry both: the strict contract accepts them as they are,
            # with the same result and no copy (a miss costs one extra validation).
            try:
                return Decoded(self._contract.__pydantic_validator__.validate_json(raw))
            except ValidationError:
                pass
        return self._to_strict(self._lenient.model_validate_json(raw))

    def from_obj(self, obj: dict[str, Any]) -> Decoded:
        """Validate decoded values, filling ``api_version``/``timestamp`` if missing."""
        if "api_version" in obj and "timestamp" in obj:
            try:
                return Decoded(self._contract.__pydantic_validator__.validate_python(obj))
            except ValidationError:
                pass
        return self._to_strict(self._lenient.model_validate(obj))

    def _to_strict(self, loose: BaseModel) -> Decoded:
        given = loose.model_fields_set
        defaulted = tuple(name for name in LENIENT_FIELDS if name not in given)
        values = {name: getattr(loose, name) for name in self._names}
        if values["timestamp"] is None:
            values["timestamp"] = now_ms()
            defaulted = defaulted if "timestamp" in defaulted else (*defaulted, "timestamp")
        # Already validated by the lenient variant under the same constraints.
        strict = self._contract.model_construct(_fields_set=given | set(defaulted), **values)
        return Decoded(cast(Any, strict), defaulted)
