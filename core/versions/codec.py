"""The versioned codec: reads every declared version, hands the code its own, writes the configured one.

It wraps the flag-selected Pydantic codec (strict or lenient, shadow or not), which still decodes
every v1.0 message exactly as before. A message of another declared version is validated with
that version's model and converted (:mod:`core.versions.convert`) to the version the service's
code is written against (``own``: :mod:`core.versions.own` per service, v1.0 when not given).
Outgoing, a message is converted to the version ``PRODUCE_VERSION_<TOPIC>`` names. An
``api_version`` that is not declared is a :class:`~core.errors.ContractError`
(``unknown_api_version``): dead-lettered, never guessed. A version retired on the topic
(``RETIRED_VERSIONS_<TOPIC>``) is one too (``retired_api_version``); a message without
``api_version`` counts as v1.0 there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from core.codec.base import Codec, Decoded, EntryId, FieldMap, Message, RawFieldMap
from core.codec.errors import CodecErrors
from core.codec.fields import (
    FieldDecodeError,
    decode_field_map,
    encode_field_map,
    field_map_bytes,
    scan_fields,
)
from core.errors import ContractError
from core.topics import CodecPath, Profile, Topic
from core.utils.clock import now_ms
from core.versions.convert import ConversionError, convert, version_of
from core.versions.declaration import BASE_VERSION, VERSIONS, known_versions

__all__ = ["VersionedCodec"]

_BASE_JSON = f'"api_version":"{BASE_VERSION}"'.encode()
_BASE_FIELD = json.dumps(BASE_VERSION)
_BASE_FIELD_BYTES = _BASE_FIELD.encode()


class VersionedCodec:
    """A :class:`~core.codec.base.Codec` that reads every declared version and writes one per topic."""

    def __init__(
        self,
        inner: Codec,
        *,
        writes: Mapping[Topic, str] | None = None,
        own: Mapping[Topic, str] | None = None,
        max_bytes: int = 65_536,
        retired: Mapping[Topic, Collection[str]] | None = None,
    ) -> None:
        self._inner = inner
        self._writes = {t: (writes or {}).get(t, BASE_VERSION) for t in Topic}
        self._own = {t: (own or {}).get(t, BASE_VERSION) for t in Topic}
        for topic, version in (*self._writes.items(), *self._own.items()):
            if version not in known_versions(topic):
                raise ValueError(f"{version!r} is not a declared version of {topic.value}")
        self._errors = CodecErrors(CodecPath.PYDANTIC, inner.profile, max_bytes)
        self._retired = {t: frozenset((retired or {}).get(t, ())) for t in Topic}
        self._last: tuple[Any, str, BaseModel] | None = None  # one-slot cache: encode then to_fields
        self.seen: dict[Topic, dict[str, int]] = {}
        """Per topic, when each version was last decoded (epoch ms): evidence to retire one."""

    @property
    def max_bytes(self) -> int:
        """The largest body or stream entry it reads (``MAX_MESSAGE_BYTES``)."""
        return self._errors.max_bytes

    @property
    def path(self) -> CodecPath:
        """The inner codec's path (Pydantic)."""
        return self._inner.path

    @property
    def profile(self) -> Profile | None:
        """The inner codec's profile."""
        return self._inner.profile

    def reads(self, topic: Topic) -> list[str]:
        """The versions of ``topic`` this codec reads (every declared one not retired)."""
        return [v for v in known_versions(topic) if v not in self._retired[topic]]

    def writes(self, topic: Topic) -> str:
        """The version this codec writes on ``topic``."""
        return self._writes[topic]

    def own(self, topic: Topic) -> str:
        """The version of ``topic`` this codec hands the code and builds."""
        return self._own[topic]

    def decode(self, topic: Topic, raw: bytes, *, entry_id: EntryId | None = None) -> Decoded:
        """Decode a JSON body of any declared version into the code's own version."""
        # find(), not ``in``: bytes.__contains__ makes and drops a TypeError first (CPython 3.11).
        base = raw.find(_BASE_JSON) != -1
        version = None if base or len(raw) > self._errors.max_bytes else _json_version(raw)
        if version is None or version == BASE_VERSION:
            # Decoded first: a broken body is reported for what is wrong with it, not as retired.
            decoded = self._inner.decode(topic, raw, entry_id=entry_id)
            if self._retired[topic]:  # a body found to carry v1.0 says so, not "without api_version"
                self._refuse_retired(topic, BASE_VERSION if base else version, raw)
            return self._to_own(topic, decoded, raw)
        if self._retired[topic]:
            self._refuse_retired(topic, version, raw)
        model = self._model(topic, version, raw)
        try:
            return self._to_own(topic, Decoded(model.model_validate_json(raw)), raw)
        except ValidationError as exc:
            raise self._errors.from_validation(topic, raw, exc) from None

    def from_fields(self, topic: Topic, fields: RawFieldMap, *, entry_id: EntryId | None = None) -> Decoded:
        """Decode a stream entry of any declared version into the code's own version."""
        version = _field_version(fields)
        if version is None or version == BASE_VERSION:
            decoded = self._inner.from_fields(topic, fields, entry_id=entry_id)
            if self._retired[topic]:  # after decoding, as in decode()
                self._refuse_retired(topic, version, lambda: field_map_bytes(fields))
            if self._own[topic] == BASE_VERSION:  # the common case today: nothing to convert
                seen = self.seen.get(topic)  # _saw(), inline: every message of the common case
                if seen is None:
                    seen = self.seen[topic] = {}
                seen[BASE_VERSION] = now_ms()
                return decoded
            return self._to_own(topic, decoded, lambda: field_map_bytes(fields))
        if self._retired[topic]:
            self._refuse_retired(topic, version, lambda: field_map_bytes(fields))
        size, document = scan_fields(fields, self._errors.max_bytes)
        if size > self._errors.max_bytes:
            self._errors.check_fields_size(topic, fields)  # raises payload_too_large, nothing parsed
        model = self._model(
            topic, version, field_map_bytes(fields) if version not in VERSIONS[topic].models else b""
        )
        if document is not None:  # the common entry: one JSON document, validated in one call
            fast: BaseModel | None
            try:
                fast = model.model_validate_json(document)
            except ValidationError:
                fast = None  # decoded again field by field below, which reports per field
            if fast is not None:
                return self._to_own(topic, Decoded(fast), lambda: field_map_bytes(fields))
        raw = field_map_bytes(fields)
        try:
            message = model.model_validate(decode_field_map(fields))
        except FieldDecodeError as exc:
            raise self._errors.from_fields_failure(topic, fields, exc) from None
        except ValidationError as exc:
            raise self._errors.from_validation(topic, raw, exc) from None
        return self._to_own(topic, Decoded(message), raw)

    def encode(self, topic: Topic, message: Message) -> bytes:
        """The JSON body of ``message`` in the version written on ``topic``."""
        if self._writes[topic] == BASE_VERSION and getattr(message, "api_version", None) == BASE_VERSION:
            return self._inner.encode(topic, message)  # what the steps below come to, in one test
        out = self._outgoing(topic, message)
        if version_of(out) == BASE_VERSION:
            return self._inner.encode(topic, out)
        return out.__pydantic_serializer__.to_json(out)

    def to_fields(self, topic: Topic, message: Message) -> FieldMap:
        """The stream field map of ``message`` in the version written on ``topic``."""
        if self._writes[topic] == BASE_VERSION and getattr(message, "api_version", None) == BASE_VERSION:
            return self._inner.to_fields(topic, message)  # as in encode()
        out = self._outgoing(topic, message)
        if version_of(out) == BASE_VERSION:
            return self._inner.to_fields(topic, out)
        return encode_field_map(out.__pydantic_serializer__.to_python(out, mode="json"))

    def build(self, topic: Topic, values: Mapping[str, Any]) -> Message:
        """A new message in the code's own version (a clock ``timestamp`` unless given).

        ``values`` are of the own version (a v2.0 price as a ``Decimal`` stays exact); values
        that version refuses but v1.0 takes (floats, ``volume``: what code written against v1.0
        gives) are built as v1.0 and converted by the declared converter, so such code builds
        the same message. Refused by both: the own version's errors.
        """
        own = self._own[topic]
        if own == BASE_VERSION:
            return self._inner.build(topic, values)
        data = {**values, "api_version": own}
        data.setdefault("timestamp", now_ms())
        try:
            return VERSIONS[topic].model(own).model_validate(data)
        except ValidationError as exc:
            refused = exc
        try:
            older = self._inner.build(topic, {**values, "timestamp": data["timestamp"]})
        except ContractError:
            raise self._errors.from_validation(topic, repr(dict(values)).encode(), refused) from None
        return self._convert(topic, older, own, repr(dict(values)).encode())

    def as_dict(self, topic: Topic, message: Message) -> dict[str, Any]:
        """The message's values in JSON mode (any version)."""
        if isinstance(message, BaseModel) and version_of(message) != BASE_VERSION:
            return message.model_dump(mode="json")
        return self._inner.as_dict(topic, message)

    def _saw(self, topic: Topic, version: str) -> None:
        seen = self.seen.get(topic)
        if seen is None:  # not setdefault(topic, {}): that makes a dict for every message
            seen = self.seen[topic] = {}
        seen[version] = now_ms()

    def _model(self, topic: Topic, version: str, raw: bytes) -> type[BaseModel]:
        if version in VERSIONS[topic].models:
            return VERSIONS[topic].model(version)
        raise self._errors.error(
            topic,
            raw,
            [
                {
                    "type": "unknown_api_version",
                    "loc": ("api_version",),
                    "msg": f"api_version {version!r} is not a version of {topic.value} this reader knows "
                    f"({', '.join(known_versions(topic))}); upgrade this consumer before its producers",
                    "input": version,
                }
            ],
        )

    def _refuse_retired(self, topic: Topic, version: str | None, raw: bytes | Callable[[], bytes]) -> None:
        if (version or BASE_VERSION) not in self._retired[topic]:  # none: what a lenient reader fills in
            return
        said = (
            f"api_version {version!r}"
            if version
            else f"a message without api_version (read as {BASE_VERSION})"
        )
        version = version or BASE_VERSION
        raise self._errors.error(
            topic,
            raw if isinstance(raw, bytes) else raw(),
            [
                {
                    "type": "retired_api_version",
                    "loc": ("api_version",),
                    "msg": f"{said} is retired on {topic.value} here "
                    f"(RETIRED_VERSIONS_{topic.value.upper()}); this reader reads "
                    f"{', '.join(self.reads(topic))}; its producer must write one of those",
                    "input": version,
                }
            ],
        )

    def _to_own(self, topic: Topic, decoded: Decoded, raw: bytes | Callable[[], bytes]) -> Decoded:
        message = decoded.message
        own = self._own[topic]
        version = version_of(message) if isinstance(message, BaseModel) else BASE_VERSION
        self._saw(topic, version)
        if not isinstance(message, BaseModel) or version == own:
            return decoded
        return Decoded(self._convert(topic, message, own, raw), decoded.defaulted)

    def _outgoing(self, topic: Topic, message: Message) -> BaseModel:
        target = self._writes[topic]
        if not isinstance(message, BaseModel) or version_of(message) == target:
            return message  # type: ignore[no-any-return]  # the inner codec reports a wrong type
        last = self._last
        if last is not None and last[0] is message and last[1] == target:
            return last[2]
        out = self._convert(topic, message, target, lambda: repr(message).encode())  # only for an error
        self._last = (message, target, out)
        return out

    def _convert(
        self, topic: Topic, message: BaseModel, target: str, raw: bytes | Callable[[], bytes]
    ) -> BaseModel:
        try:
            return convert(topic, message, target)
        except ConversionError as exc:
            raise self._errors.error(
                topic,
                raw if isinstance(raw, bytes) else raw(),
                [
                    {
                        "type": "version_conversion",
                        "loc": (exc.field,),
                        "msg": f"{version_of(message)} -> {target}: {exc}",
                    }
                ],
            ) from None


def _json_version(raw: bytes) -> str | None:
    # Only when the body is not plainly v1.0; anything unparsable goes to the inner codec,
    # which reports it exactly as it always did.
    if b'"api_version"' not in raw:
        return None
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    value = obj.get("api_version") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def _field_version(fields: RawFieldMap) -> str | None:
    if fields.get(b"api_version") == _BASE_FIELD_BYTES:  # type: ignore[call-overload]  # redis-py's form
        return BASE_VERSION
    raw: Any = fields.get(b"api_version") if b"api_version" in fields else fields.get("api_version")  # type: ignore[call-overload]
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if text == _BASE_FIELD:
        return BASE_VERSION
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, str) else None
