"""Shadow mode: decode every message on both paths, act on one, count where they differ.

:class:`ShadowCodec` wraps the flag-selected codec (the *primary*) and the other
path's codec (the *shadow*). Every decode runs both; the service gets the
primary's result exactly as without shadow mode, and the two results are
compared field by field. Encoding and building use the primary alone.

Comparison rules (what counts as "the same"):

- only fields **both** sides have are compared: the legacy classes lack
  ``api_version``, ``timestamp`` (signals, orders, results) and ``trade_id``, so
  those are never mismatches;
- values are compared in their plain form (:meth:`Codec.as_dict`), so an enum and
  a string are equal by value (``Side.BUY`` == ``"BUY"``);
- numbers are equal when ``math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)``:
  ``float("0.1")`` vs ``0.1000000000000000055`` or ``5`` vs ``5.0`` is formatting,
  not a difference; booleans are never equal to numbers (``True`` != ``1``);
- one side decoding while the other refuses is a mismatch of the pseudo-field
  ``<decode>``; both refusing is agreement (the primary's error is raised);
- the shadow codec crashing with anything but a ContractError is a ``<decode>``
  mismatch too: shadow mode must never take a service down.

Mismatches are counted by (topic, field), reported to an optional callback (the
service's metrics, hence live status and Prometheus), and the first few diffs of
each (topic, field) are logged with both values.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from core.codec.base import Codec, Decoded, EntryId, FieldMap, Message, RawFieldMap
from core.errors import ContractError
from core.logging import get_logger
from core.topics import CodecPath, Profile, Topic

__all__ = [
    "ABS_TOL",
    "DECODE_FIELD",
    "REL_TOL",
    "FieldDiff",
    "ShadowCallback",
    "ShadowCodec",
    "diff_values",
    "same_value",
]

DECODE_FIELD = "<decode>"
"""The pseudo-field of a mismatch where one side decoded and the other refused."""

REL_TOL = 1e-12
"""Relative tolerance when comparing numbers (float formatting, not a difference)."""

ABS_TOL = 1e-12
"""Absolute tolerance when comparing numbers (for values near zero)."""

ShadowCallback = Callable[[Topic, Sequence[str]], None]
"""Called once per compared message with the topic and the mismatching fields (often none)."""

FieldDiff = tuple[str, Any, Any]
"""One difference: (field, primary value, shadow value)."""

_log = get_logger("migration.shadow")
_PLAIN = frozenset({str, int, float, bool, type(None)})
_MAX_LOGGED_VALUE = 120


def same_value(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same under the shadow comparison rules."""
    if type(a) is type(b) and type(a) in _PLAIN and a == b:
        return True  # the common case, decided at once (the rules below agree: equal is same)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(a, str) or isinstance(b, str):
        # A StrEnum is a str: equal by value to the plain string the other path holds.
        return isinstance(a, str) and isinstance(b, str) and str(a) == str(b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def diff_values(primary: Mapping[str, Any], shadow: Mapping[str, Any]) -> list[FieldDiff]:
    """The fields both sides have whose values differ, in the primary's field order."""
    diffs = []
    for name, value in primary.items():
        if name in shadow:
            other = shadow[name]
            if not (type(value) is type(other) and type(value) in _PLAIN and value == other) and not (
                same_value(value, other)
            ):
                diffs.append((name, value, other))
    return diffs


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_LOGGED_VALUE else text[: _MAX_LOGGED_VALUE - 3] + "..."


class ShadowCodec:
    """A codec that decodes with ``primary`` and ``shadow``, returns the primary's result
    and counts field differences. Encoding, building and ``as_dict`` are the primary's.

    ``on_compare`` is told about every compared message (see :data:`ShadowCallback`);
    ``log_limit`` diffs per (topic, field) are logged with both values.
    """

    def __init__(
        self,
        primary: Codec,
        shadow: Codec,
        *,
        on_compare: ShadowCallback | None = None,
        log_limit: int = 5,
    ) -> None:
        self.primary = primary
        self.shadow = shadow
        self.on_compare = on_compare
        self.log_limit = log_limit
        self.compared: Counter[Topic] = Counter()
        self.mismatches: Counter[tuple[Topic, str]] = Counter()

    @property
    def path(self) -> CodecPath:
        """The primary's path: the one the service acts on."""
        return self.primary.path

    @property
    def profile(self) -> Profile | None:
        """The primary's profile."""
        return self.primary.profile

    def decode(self, topic: Topic, raw: bytes, *, entry_id: EntryId | None = None) -> Decoded:
        """Decode a Pub/Sub body on both paths; the primary's result (or error) wins."""
        return self._both(topic, lambda codec: codec.decode(topic, raw, entry_id=entry_id))

    def from_fields(self, topic: Topic, fields: RawFieldMap, *, entry_id: EntryId | None = None) -> Decoded:
        """Decode a stream field map on both paths; the primary's result (or error) wins."""
        return self._both(topic, lambda codec: codec.from_fields(topic, fields, entry_id=entry_id))

    def encode(self, topic: Topic, message: Message) -> bytes:
        """The primary's Pub/Sub body."""
        return self.primary.encode(topic, message)

    def to_fields(self, topic: Topic, message: Message) -> FieldMap:
        """The primary's stream field map."""
        return self.primary.to_fields(topic, message)

    def build(self, topic: Topic, values: Mapping[str, Any]) -> Message:
        """The primary's outgoing message."""
        return self.primary.build(topic, values)

    def as_dict(self, topic: Topic, message: Message) -> dict[str, Any]:
        """The primary's plain values of ``message``."""
        return self.primary.as_dict(topic, message)

    def mismatch_counts(self) -> dict[str, dict[str, int]]:
        """Mismatches so far as ``{topic: {field: count}}`` (for status and tests)."""
        out: dict[str, dict[str, int]] = {}
        for (topic, name), n in sorted(self.mismatches.items()):
            out.setdefault(topic.value, {})[name] = n
        return out

    def _both(self, topic: Topic, run: Callable[[Codec], Decoded]) -> Decoded:
        primary_error: ContractError | None = None
        mine: Decoded | None
        try:
            mine = run(self.primary)
        except ContractError as exc:
            primary_error, mine = exc, None
        theirs: Decoded | None
        shadow_error: str | None = None
        try:
            theirs = run(self.shadow)
        except ContractError as exc:
            theirs, shadow_error = None, f"{exc.reason}: {exc}"
        except Exception as exc:  # a shadow bug is a difference to count, never an outage
            theirs, shadow_error = None, f"crash: {type(exc).__name__}: {exc}"
        diffs = self._compare(topic, mine, theirs, primary_error, shadow_error)
        self._record(topic, diffs)
        if primary_error is not None:
            raise primary_error
        assert mine is not None
        return mine

    def _compare(
        self,
        topic: Topic,
        mine: Decoded | None,
        theirs: Decoded | None,
        primary_error: ContractError | None,
        shadow_error: str | None,
    ) -> list[FieldDiff]:
        if mine is None and theirs is None:
            return []
        if mine is None:
            return [(DECODE_FIELD, f"refused ({primary_error})", "decoded")]
        if theirs is None:
            return [(DECODE_FIELD, "decoded", f"refused ({shadow_error})")]
        try:
            return diff_values(
                self.primary.as_dict(topic, mine.message), self.shadow.as_dict(topic, theirs.message)
            )
        except Exception as exc:  # comparison must not fail the message either
            return [(DECODE_FIELD, "decoded", f"not comparable: {type(exc).__name__}: {exc}")]

    def _record(self, topic: Topic, diffs: list[FieldDiff]) -> None:
        self.compared[topic] += 1
        for name, mine, theirs in diffs:
            key = (topic, name)
            self.mismatches[key] += 1
            if self.mismatches[key] <= self.log_limit:
                _log.warning(
                    "shadow.mismatch",
                    topic=topic.value,
                    field=name,
                    primary_path=self.primary.path.value,
                    primary=_short(mine),
                    shadow_path=self.shadow.path.value,
                    shadow=_short(theirs),
                    occurrence=self.mismatches[key],
                )
        if self.on_compare is not None:
            self.on_compare(topic, [name for name, _, _ in diffs])
