"""Turning any decode/encode failure into the one :class:`~core.errors.ContractError`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from core.codec.base import RawFieldMap
from core.codec.fields import FieldDecodeError, field_map_bytes, field_map_size
from core.codec.limits import nesting_error, surrogate_error
from core.domain.time_units import explain_details
from core.errors import ContractError, ErrorDetail
from core.topics import CodecPath, Profile, Topic

__all__ = ["CodecErrors"]


class CodecErrors:
    """Makes :class:`ContractError` values for one codec (its path and profile)."""

    __slots__ = ("max_bytes", "path", "profile")

    def __init__(self, path: CodecPath, profile: Profile | None, max_bytes: int) -> None:
        self.path = path
        self.profile = profile
        self.max_bytes = max_bytes

    def error(self, topic: Topic, raw: bytes, errors: Sequence[ErrorDetail]) -> ContractError:
        """A contract error for ``topic`` with the given structured errors (a timestamp refused
        because it is in seconds says so, on every path)."""
        return ContractError(
            topic=topic.value,
            path=self.path.value,
            profile=self.profile.value if self.profile else None,
            raw=raw,
            errors=explain_details(list(errors)),
        )

    def from_validation(self, topic: Topic, raw: bytes, exc: ValidationError) -> ContractError:
        """A contract error carrying pydantic's structured errors (a JSON refusal caused by a lone
        surrogate is reported as on every other path)."""
        errors = [_as_parsed(dict(e)) for e in exc.errors(include_url=False)]
        if errors and errors[0]["type"] == "json_invalid":
            problem = surrogate_error(raw)
            if problem is not None:
                errors = [problem]
        return self.error(topic, raw, errors)

    def from_fields_failure(self, topic: Topic, fields: RawFieldMap, exc: FieldDecodeError) -> ContractError:
        """A contract error for stream fields that are not JSON values."""
        return self.error(topic, field_map_bytes(fields), exc.errors)

    def check_body(self, topic: Topic, raw: bytes, *, text: bool = True) -> None:
        """Refuse, before anything parses it, a JSON body over the size limit, nested deeper than
        :data:`~core.codec.limits.MAX_NESTING_DEPTH` or (``text``) holding a lone surrogate.

        ``text=False`` for a parser that refuses lone surrogates itself (Pydantic's): then
        :meth:`from_validation` reports its refusal in the same words.
        """
        if len(raw) > self.max_bytes:
            raise self.error(topic, raw, [_too_large(len(raw), self.max_bytes)])
        # The common body is one flat object without escapes: a few find() scans, nothing else.
        if raw.find(b"[") >= 0 or raw.find(b"{", 1) >= 0:
            problem = nesting_error(raw)
            if problem is not None:
                raise self.error(topic, raw, [problem])
        if text and raw.find(b"\\") >= 0:
            problem = surrogate_error(raw)
            if problem is not None:
                raise self.error(topic, raw, [problem])

    def check_fields_size(self, topic: Topic, fields: RawFieldMap) -> None:
        """Refuse a stream entry over the limit before anything parses it."""
        size = field_map_size(fields)
        if size > self.max_bytes:
            raise self.error(topic, field_map_bytes(fields), [_too_large(size, self.max_bytes)])


def _too_large(size: int, limit: int) -> ErrorDetail:
    return {
        "type": "payload_too_large",
        "loc": (),
        "msg": f"payload of {size} bytes exceeds the limit of {limit} bytes (MAX_MESSAGE_BYTES)",
    }


def _as_parsed(error: dict[str, Any]) -> dict[str, Any]:
    # An integer past the float range: JSON parsing (a body) refuses it as ``finite_number``;
    # validating the stream field's Python int reports ``float_type``. One reason for one value,
    # whichever way it came in (and the legacy path's: migration.legacy_guard).
    value = error.get("input")
    if error["type"] == "float_type" and type(value) is int:
        return {**error, "type": "finite_number", "msg": "Input should be a finite number"}
    return error
