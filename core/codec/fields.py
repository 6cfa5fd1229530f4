"""The Redis Stream field-map encoding, shared by every path.

Rule: one stream field per message field, its value the JSON encoding of the
field's value. That makes every value a contract can hold survive the trip
(``null``, ``true``/``false``, unicode, integers of any size, nested values),
which XADD of a bare ``model.model_dump()`` dict (the seed's sketch) does not: redis-py refuses
``None`` and ``bool`` and would turn numbers into untyped strings. ``redis-cli
XRANGE`` shows it readably: ``symbol "BTC/USDT" price 50000.5 reason null``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any, cast

from core.codec.base import FieldMap, RawFieldMap
from core.codec.limits import nesting_error, surrogate_error
from core.errors import ErrorDetail

__all__ = [
    "FieldDecodeError",
    "RepeatedFields",
    "decode_field_map",
    "encode_field_map",
    "field_map_bytes",
    "field_map_size",
    "fields_of_flat",
    "fields_of_pairs",
    "scan_fields",
]

_encode_value = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_LITERALS: dict[object, str] = {None: "null", True: "true", False: "false"}
_isfinite = math.isfinite
_float_repr = float.__repr__  # what JSONEncoder writes for a float
_int_repr = int.__repr__

# One JSON scalar, exactly as RFC 8259 spells it: a string (unrolled loop, no raw control
# characters), a number, or a literal. Nothing else, not even surrounding whitespace.
_SCALAR = (  # possessive quantifiers: nothing to backtrack into, ~30 % faster
    rb'(?:"[^"\\\x00-\x1f]*+(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*+)*+"'
    rb"|-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+|true|false|null)"
)
_IDENTIFIER = rb"[A-Za-z_][A-Za-z0-9_]*"
# Joined with NUL, which no JSON text may contain raw: a value or name that itself holds a
# NUL can pass the check, but then the document is invalid JSON and the caller falls back.
_SCALARS = re.compile(_SCALAR + rb"(?:\x00" + _SCALAR + rb")*+")
_IDENTIFIERS = re.compile(_IDENTIFIER + rb"(?:\x00" + _IDENTIFIER + rb")*+")
# The bytes that give a JSON text structure (member and element separators, containers) or
# hide a quote from it (escapes), each mapped to another byte: translating with it changes
# nothing exactly when none is there (one pass and a compare, no argument parsing per byte).
_STRUCTURE = bytes.maketrans(b",:[]{}\\", b"\x00" * 7)
_TEMPLATES: dict[bytes, bytes | None] = {}
_MAX_TEMPLATES = 256  # distinct field-name sets remembered (a topic has one or two)


class FieldDecodeError(ValueError):
    """Some stream fields were not valid JSON values; carries one error per field."""

    def __init__(self, errors: list[ErrorDetail]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} stream field(s) are not JSON values")


class RepeatedFields(dict[Any, Any]):
    """A stream entry that gives a field name more than once. Redis keeps every pair, but a
    field map holds one value per name, so reading it as a dict would pick one silently (a
    ``side`` of ``"BUY"`` then ``"SELL"`` would be a SELL). It holds the first value of each
    name and ``pairs``, the entry as sent; every codec refuses it (``duplicate_field``) and its
    dead letter keeps every pair."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[Any, Any]]) -> None:
        super().__init__()
        for name, value in pairs:
            self.setdefault(name, value)
        self.pairs = pairs

    def repeated(self) -> list[Any]:
        """The names given more than once, in the order they first came."""
        counts: dict[Any, int] = {}
        for name, _ in self.pairs:
            counts[name] = counts.get(name, 0) + 1
        return [name for name, n in counts.items() if n > 1]


def fields_of_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """The field map of an entry's ``(name, value)`` pairs: a plain dict, or
    :class:`RepeatedFields` when a name comes more than once."""
    fields = dict(pairs)
    return fields if len(fields) == len(pairs) else RepeatedFields(pairs)


def fields_of_flat(flat: Sequence[Any]) -> dict[Any, Any]:
    """:func:`fields_of_pairs` of a flat ``[name, value, ...]`` list, as Redis sends an entry."""
    pairs = iter(flat)
    return fields_of_pairs(list(zip(pairs, pairs, strict=False)))  # names and values alternate


def encode_field_map(values: Mapping[str, Any]) -> FieldMap:
    """Encode plain values (as from ``model_dump(mode="json")``) as a stream field map.

    Raises ``ValueError`` for a value JSON cannot carry (NaN, infinity, an object
    that is not JSON-serialisable).
    """
    out: FieldMap = {}
    try:
        for name, value in values.items():
            # What JSONEncoder.encode gives, without building a C encoder per call (~1 us each).
            kind = type(value)
            if kind is str:
                out[name] = encode_basestring(value)
            elif kind is float and _isfinite(value):
                out[name] = _float_repr(value)
            elif kind is int:
                out[name] = _int_repr(value)
            elif isinstance(value, str):  # a StrEnum: JSONEncoder writes its text the same way
                out[name] = encode_basestring(value)
            else:
                out[name] = _encode_scalar(value)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    return out


def _encode_scalar(value: Any) -> str:
    if type(value) is float:  # only a non-finite one comes here
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    if type(value) is bool or value is None:
        return _LITERALS[value]
    return _encode_value(value)  # str/int subclasses (enums), nested values


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def decode_field_map(fields: RawFieldMap) -> dict[str, Any]:
    """Decode a stream field map back into plain values.

    Raises :class:`FieldDecodeError` naming every field whose value is not JSON, or every
    name an entry gives more than once (:class:`RepeatedFields`).
    """
    if type(fields) is RepeatedFields:
        raise FieldDecodeError([_repeated_error(name, fields) for name in fields.repeated()])
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
        problem = nesting_error(raw_value, (name,), levels_above=1) or surrogate_error(raw_value, (name,))
        if problem is not None:
            errors.append({**problem, "input": raw_value})
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


def _repeated_error(name: bytes | str, fields: RepeatedFields) -> ErrorDetail:
    text = _safe_text(name)
    times = sum(1 for n, _ in fields.pairs if n == name)
    return {
        "type": "duplicate_field",
        "loc": (text,),
        "msg": f"stream field {text!r} is given {times} times; an entry holds each field once",
    }


def scan_fields(fields: RawFieldMap, max_bytes: int) -> tuple[int, bytes | None]:
    """The field map's wire size (as :func:`field_map_size`) and, when it is within
    ``max_bytes`` and that is safe, the whole map as one JSON object (else ``None``).

    The document is made only for the common case: bytes names that are plain identifiers
    and bytes values that either hold none of ``,:[]{}\\`` or are each exactly one JSON
    scalar (string, number, ``true``/``false``/``null``). Then ``{"name":value,...}``, if it
    parses at all, parses to what :func:`decode_field_map` returns, so one parse replaces one
    per field, and a value such as ``1,"side":"SELL"`` cannot smuggle a field in. The caller
    must decode field by field when the document does not parse, and for anything else
    (nested values, text maps, odd names). The document may hold a lone surrogate escape:
    Pydantic's parser refuses it (the codec then decodes field by field, which names the
    field); the legacy codec checks before its ``json.loads``.

    Why a value without those bytes is safe: with no escapes, every quote opens or closes a
    string. The first value holding an odd number of quotes would leave a string open, which
    swallows the ``,"`` after it and leaves the next name bare (or the document unterminated):
    not JSON. So in a document that parses every value holds whole strings, and with no
    separator or container outside them it is one JSON value, or the parse fails. This test
    costs a sixth of the scalar pattern's; the pattern still admits the values it misses
    (a string holding a comma, an escape).
    """
    if type(fields) is RepeatedFields:  # never one document: decode_field_map refuses it
        return field_map_size(fields), None
    try:
        raw = cast(Mapping[bytes, bytes], fields)
        names = b"\x00".join(raw)
        values = tuple(raw.values())
        joined = b"\x00".join(values)
    except TypeError:  # text names or values (a client with decode_responses=True)
        return field_map_size(fields), None
    size = len(names) + len(joined) - 2 * (len(values) - 1) if values else 0
    if size > max_bytes:
        return size, None
    template = _TEMPLATES.get(names, b"")
    if template == b"":
        template = _template(raw) if _IDENTIFIERS.fullmatch(names) else None
        if len(_TEMPLATES) < _MAX_TEMPLATES:
            _TEMPLATES[names] = template
    if template is None:
        return size, None
    if joined.translate(_STRUCTURE) != joined and _SCALARS.fullmatch(joined) is None:
        return size, None
    return size, template % values


def _template(fields: Mapping[bytes, bytes]) -> bytes:
    # Identifiers hold no '%', '"' or '\\', so they go into the format string as they are.
    return b"{" + b",".join(b'"' + name + b'":%b' for name in fields) + b"}"


def field_map_size(fields: RawFieldMap) -> int:
    """Bytes a field map occupies on the wire (names and values), for the size limit."""
    if type(fields) is RepeatedFields:
        return sum(_byte_len(k) + _byte_len(v) for k, v in fields.pairs)
    try:
        raw = cast(Mapping[bytes, bytes], fields)
        return len(b"".join(raw)) + len(b"".join(raw.values()))
    except TypeError:
        # Text (a client with decode_responses=True) is measured in UTF-8 bytes, not characters,
        # so the limit means the same for both kinds of client.
        return sum(_byte_len(k) + _byte_len(v) for k, v in fields.items())


def _byte_len(value: bytes | str) -> int:
    return len(value) if isinstance(value, bytes) else len(value.encode("utf-8", errors="surrogatepass"))


def field_map_bytes(fields: RawFieldMap) -> bytes:
    """A faithful, readable rendering of a field map as bytes, for dead letters: a JSON object of
    its names and values as text (for :class:`RepeatedFields`, every pair as sent, its names
    repeated). Bytes that are not UTF-8 are kept, not replaced: then the object is written in
    ASCII and such a byte is the escape of its surrogate (``\\udcff`` for 0xFF), so
    ``json.loads`` and ``.encode("utf-8", "surrogateescape")`` give every byte back."""
    pairs = fields.pairs if type(fields) is RepeatedFields else fields.items()
    texts = [(_exact_text(k), _exact_text(v)) for k, v in pairs]
    try:
        return _json_object(texts, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a byte that is not UTF-8: its surrogate cannot be UTF-8 either
        return _json_object(texts, ensure_ascii=True).encode("ascii")


def _json_object(pairs: Sequence[tuple[str, str]], *, ensure_ascii: bool) -> str:
    # Written member by member, as json.dumps writes a dict, so a repeated name stays repeated.
    dumps = json.JSONEncoder(ensure_ascii=ensure_ascii).encode
    return "{" + ", ".join(f"{dumps(name)}: {dumps(value)}" for name, value in pairs) + "}"


def _exact_text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="surrogateescape") if isinstance(value, bytes) else value


def _safe_text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
