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
  mismatch too: shadow mode must never take a service down;
- a message of a declared contract version later than v1.0 (a v1.1 order, v2.0 of any topic),
  which the legacy path refuses for its version alone, is no disagreement between the paths: it
  is counted apart, by version (:func:`later_version`; ``cdb_shadow_later_version_total``),
  and never as a mismatch (the cutover check reads mismatches). It is the same one rule for
  in-process shadow and the out-of-band comparator, which decodes with this codec.

Most messages agree, so agreement is decided first on the decoded attributes
(:mod:`migration.shadow_plain`): when every shared field holds plainly equal values
(same plain type and equal, finite numbers, an enum and its string) the plain forms
are equal too and nothing else is built. Any other message is compared on its plain
forms by the rules above, so a difference is found and reported exactly as before.

With ``sample`` below 1 (``CONTRACT_SHADOW_SAMPLE``) only the messages
:class:`~core.codec.shadow_sample.ShadowSampler` picks are decoded twice; the others
cost the primary's decode alone and are not counted as compared.

Mismatches are counted by (topic, field), later versions by (topic, version), reported to an
optional callback (the service's metrics, hence live status and Prometheus), and the first few
diffs of each (topic, field) are logged with both values.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any
from zlib import crc32

from core.codec.base import Codec, Decoded, EntryId, FieldMap, Message, RawFieldMap, ShadowCallback
from core.codec.shadow_sample import HASH_SPACE, ShadowSampler
from core.errors import ContractError
from core.logging import get_logger
from core.topics import CodecPath, Profile, Topic
from core.versions.declaration import BASE_VERSION, later_versions
from migration.shadow_plain import plain_fields, plainly_same

__all__ = [
    "ABS_TOL",
    "DECODE_FIELD",
    "REL_TOL",
    "FieldDiff",
    "ShadowCallback",
    "ShadowCodec",
    "diff_values",
    "later_version",
    "same_value",
]

DECODE_FIELD = "<decode>"
"""The pseudo-field of a mismatch where one side decoded and the other refused."""

REL_TOL = 1e-12
"""Relative tolerance when comparing numbers (float formatting, not a difference)."""

ABS_TOL = 1e-12
"""Absolute tolerance when comparing numbers (for values near zero)."""

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


def later_version(topic: Topic, refusal: ContractError | None) -> str | None:
    """The declared version of ``topic`` later than v1.0 that ``refusal`` (the legacy path's)
    refuses the message for, or ``None``: the legacy path reads v1.0 only, so such a message is
    unreadable there by design, not a difference between the paths."""
    if refusal is None:
        return None
    for error in refusal.errors:
        value = error.get("input")
        if error.get("loc") == ("api_version",) and value in later_versions(topic):
            return str(value)
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_LOGGED_VALUE else text[: _MAX_LOGGED_VALUE - 3] + "..."


class ShadowCodec:
    """A codec that decodes with ``primary`` and ``shadow``, returns the primary's result
    and counts field differences. Encoding, building and ``as_dict`` are the primary's.

    ``on_compare`` is told about every compared message (see :data:`ShadowCallback`);
    ``log_limit`` diffs per (topic, field) are logged with both values; ``sample``: the
    share of messages compared (1: all; below 1 picked by entry id, see
    :mod:`core.codec.shadow_sample`).

    What a message not compared costs on top of the primary's decode is one call and the
    sampling decision (a crc32 of the entry id, made here rather than in another call);
    encoding and building cost nothing extra: they *are* the primary's bound methods.
    """

    encode: Callable[[Topic, Message], bytes]
    """The primary's Pub/Sub body (the primary's own method: no extra call)."""
    to_fields: Callable[[Topic, Message], FieldMap]
    """The primary's stream field map."""
    build: Callable[[Topic, Mapping[str, Any]], Message]
    """The primary's outgoing message."""
    as_dict: Callable[[Topic, Message], dict[str, Any]]
    """The primary's plain values of a message."""

    def __init__(
        self,
        primary: Codec,
        shadow: Codec,
        *,
        on_compare: ShadowCallback | None = None,
        log_limit: int = 5,
        sample: float = 1.0,
    ) -> None:
        self.sampler = ShadowSampler(sample)
        self.primary = primary
        self.shadow = shadow
        self.on_compare = on_compare
        self.log_limit = log_limit
        self.compared: Counter[Topic] = Counter()
        self.mismatches: Counter[tuple[Topic, str]] = Counter()
        self.later: Counter[tuple[Topic, str]] = Counter()
        """Messages of a later contract version than the legacy path reads, by (topic, version)."""
        self.encode, self.to_fields = primary.encode, primary.to_fields
        self.build, self.as_dict = primary.build, primary.as_dict
        self._plain: dict[tuple[Topic, type, type], tuple[str, ...] | None] = {}
        """Fields of the quick agreement check per (topic, primary class, shadow class)."""
        # The sampler's rule for a stream entry id, inlined (the hot case: called per entry);
        # other ids (str, or None for a Pub/Sub body) ask the sampler itself.
        self._every = self.sampler.every
        self._threshold = int(self.sampler.rate * HASH_SPACE)

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
        if not self._every and not self._take(entry_id):
            return self.primary.decode(topic, raw, entry_id=entry_id)
        return self._both(topic, self.primary.decode, self.shadow.decode, raw, entry_id)

    def from_fields(self, topic: Topic, fields: RawFieldMap, *, entry_id: EntryId | None = None) -> Decoded:
        """Decode a stream field map on both paths; the primary's result (or error) wins."""
        if not self._every and not (
            crc32(entry_id) < self._threshold if type(entry_id) is bytes else self.sampler.take(entry_id)
        ):
            return self.primary.from_fields(topic, fields, entry_id=entry_id)
        return self._both(topic, self.primary.from_fields, self.shadow.from_fields, fields, entry_id)

    def mismatch_counts(self) -> dict[str, dict[str, int]]:
        """Mismatches so far as ``{topic: {field: count}}`` (for status and tests)."""
        return _by_topic(self.mismatches)

    def later_version_counts(self) -> dict[str, dict[str, int]]:
        """Messages of a later version than the legacy path reads as ``{topic: {version: count}}``."""
        return _by_topic(self.later)

    def _take(self, entry_id: EntryId | None) -> bool:
        if type(entry_id) is bytes:
            return crc32(entry_id) < self._threshold
        return self.sampler.take(entry_id)

    def _both(
        self, topic: Topic, primary: _Decode, shadow: _Decode, payload: Any, entry_id: EntryId | None
    ) -> Decoded:
        refused: ContractError | None = None
        mine: Decoded | None = None
        try:
            mine = primary(topic, payload, entry_id=entry_id)
        except ContractError as exc:
            refused = exc
        theirs: Decoded | None = None
        their_refusal: ContractError | None = None
        why = "no result"
        try:
            theirs = shadow(topic, payload, entry_id=entry_id)
        except ContractError as exc:
            their_refusal, why = exc, f"{exc.reason}: {exc}"
        except Exception as exc:  # a shadow bug is a difference to count, never an outage
            why = f"crash: {type(exc).__name__}: {exc}"
        later = later_version(topic, refused if self.primary.path is CodecPath.LEGACY else their_refusal)
        if later is not None:
            self._record_later(topic, later)
            if refused is not None:
                raise refused
            assert mine is not None
            return mine
        if refused is not None:
            # Both refusing is agreement; the primary's error is the service's either way.
            self._record(topic, [] if theirs is None else [(DECODE_FIELD, f"refused ({refused})", "decoded")])
            raise refused
        assert mine is not None
        if theirs is None:
            self._record(topic, [(DECODE_FIELD, "decoded", f"refused ({why})")])
        else:
            self._record(topic, self._diff(topic, mine.message, theirs.message))
        return mine

    def _diff(self, topic: Topic, mine: Message, theirs: Message) -> list[FieldDiff]:
        key = (topic, type(mine), type(theirs))
        names = self._plain.get(key)  # None: not known yet, or always compared in full
        if names and plainly_same(names, mine, theirs):
            return []  # the common case: every shared field plainly equal (migration.shadow_plain)
        try:
            plain_mine, plain_theirs = self.primary.as_dict(topic, mine), self.shadow.as_dict(topic, theirs)
            diffs = diff_values(plain_mine, plain_theirs)
        except Exception as exc:  # comparison must not fail the message either
            return [(DECODE_FIELD, "decoded", f"not comparable: {type(exc).__name__}: {exc}")]
        if key not in self._plain:  # the first full comparison of this pair of classes
            self._plain[key] = plain_fields(mine, theirs, plain_mine, plain_theirs)
        return diffs

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
            self.on_compare(topic, [name for name, _, _ in diffs] if diffs else (), ())

    def _record_later(self, topic: Topic, version: str) -> None:
        self.compared[topic] += 1
        self.later[(topic, version)] += 1
        if self.later[(topic, version)] == 1:
            _log.info("shadow.later_version", topic=topic.value, version=version, legacy_reads=BASE_VERSION)
        if self.on_compare is not None:
            self.on_compare(topic, (), (version,))


_Decode = Callable[..., Decoded]
"""A codec's ``decode`` or ``from_fields`` (topic, payload, entry_id=...)."""


def _by_topic(counts: Counter[tuple[Topic, str]]) -> dict[str, dict[str, int]]:
    """``counts`` keyed (topic, name) as ``{topic: {name: count}}``, in sorted order."""
    out: dict[str, dict[str, int]] = {}
    for (topic, name), n in sorted(counts.items()):
        out.setdefault(topic.value, {})[name] = n
    return out
