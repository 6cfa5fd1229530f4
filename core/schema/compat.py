"""Schema-Registry-style compatibility of two JSON Schemas of one message.

Vocabulary (as Confluent Schema Registry uses it, applied to tolerant readers):

- **BACKWARD** compatible: consumers built on the *new* schema can read messages
  written with the *old* one. Broken by a new required field, a narrowed type,
  bound or enum.
- **FORWARD** compatible: consumers still on the *old* schema can read messages
  written with the *new* one. Broken by a removed required field, a widened type,
  bound or enum (an added enum value).
- **FULL**: both; **NONE**: neither.

The classifier works on plain JSON-Schema dicts (as Pydantic emits them: ``$ref``
into ``$defs``, ``anyOf`` with ``null`` for optional values), so it can compare a
committed snapshot with a fresh export without importing any model. Where it
cannot prove a direction safe (a changed regex, a changed union) it reports the
change as breaking both ways: a false alarm costs a version bump, a missed one
costs lost messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from core.schema.domain import Domain, Resolver, Schema, bound_text, branch_key, canonical, covers, tighter

__all__ = ["Change", "ChangeKind", "Compatibility", "Reader", "compare", "overall"]


class Reader(StrEnum):
    """Who fails to read messages after a breaking change."""

    NEW_CONSUMERS = "new consumers reading old messages"
    OLD_CONSUMERS = "old consumers reading new messages"


class Compatibility(StrEnum):
    """Which readers a change (or a set of changes) keeps working."""

    FULL = "FULL"
    BACKWARD = "BACKWARD"
    FORWARD = "FORWARD"
    NONE = "NONE"

    @classmethod
    def of(cls, *, backward: bool, forward: bool) -> Compatibility:
        """The level for the two directions that stay readable."""
        if backward and forward:
            return cls.FULL
        if backward:
            return cls.BACKWARD
        return cls.FORWARD if forward else cls.NONE

    @property
    def backward(self) -> bool:
        """New consumers can still read old messages."""
        return self in (Compatibility.FULL, Compatibility.BACKWARD)

    @property
    def forward(self) -> bool:
        """Old consumers can still read new messages."""
        return self in (Compatibility.FULL, Compatibility.FORWARD)

    @property
    def broken_readers(self) -> tuple[Reader, ...]:
        """The readers this level leaves behind (empty for FULL)."""
        out: list[Reader] = []
        if not self.backward:
            out.append(Reader.NEW_CONSUMERS)
        if not self.forward:
            out.append(Reader.OLD_CONSUMERS)
        return tuple(out)


class ChangeKind(StrEnum):
    """What changed about a field (or the whole message)."""

    FIELD_ADDED = "field added"
    FIELD_REMOVED = "field removed"
    MADE_REQUIRED = "made required"
    MADE_OPTIONAL = "made optional"
    TYPE = "type changed"
    NULLABLE = "null allowed changed"
    VALUES = "allowed values changed"
    BOUND = "bound changed"
    LENGTH = "length bound changed"
    PATTERN = "pattern changed"
    UNKNOWN_FIELDS = "unknown fields policy changed"
    RULES = "cross-field rules changed"
    ANNOTATION = "documentation changed"


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two schemas and the readers it keeps working."""

    field: str
    kind: ChangeKind
    detail: str
    compatibility: Compatibility

    @property
    def breaking(self) -> bool:
        """True unless both old and new consumers keep reading."""
        return self.compatibility is not Compatibility.FULL

    def explain(self) -> str:
        """One sentence for a person: what changed and who it breaks."""
        where = f"field {self.field!r}" if self.field else "the message"
        text = f"{where}: {self.kind.value} ({self.detail}) -> {self.compatibility.value}"
        broken = self.compatibility.broken_readers
        if broken:
            text += "; breaks " + " and ".join(r.value for r in broken)
        return text


def overall(changes: list[Change]) -> Compatibility:
    """The compatibility of a set of changes: what every one of them keeps."""
    return Compatibility.of(
        backward=all(c.compatibility.backward for c in changes),
        forward=all(c.compatibility.forward for c in changes),
    )


def compare(old: Schema, new: Schema) -> list[Change]:
    """Every change from ``old`` to ``new`` (two object schemas), classified."""
    return list(_Comparer(old, new).objects(old, new, ""))


class _Comparer:
    """Walks two schemas side by side; resolves ``$ref`` within each document."""

    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self._old = Resolver(old_root)
        self._new = Resolver(new_root)

    def objects(self, old: Schema, new: Schema, prefix: str) -> Iterator[Change]:
        """Changes between two object schemas: fields, presence, unknown-field policy."""
        old, new = self._old.resolve(old), self._new.resolve(new)
        old_props: Mapping[str, Schema] = old.get("properties", {})
        new_props: Mapping[str, Schema] = new.get("properties", {})
        old_req, new_req = set(old.get("required", ())), set(new.get("required", ()))
        if not prefix and old.get("description") != new.get("description"):
            yield Change("", ChangeKind.ANNOTATION, "description", Compatibility.FULL)
        yield from _rules(old, new, prefix.rstrip("."))
        yield from self._extras(old, new, prefix)
        for name in [n for n in new_props if n not in old_props]:
            if name in new_req:
                yield Change(prefix + name, ChangeKind.FIELD_ADDED, "required", Compatibility.FORWARD)
            else:
                yield Change(prefix + name, ChangeKind.FIELD_ADDED, "optional", Compatibility.FULL)
        for name in [n for n in old_props if n not in new_props]:
            if name in old_req:
                yield Change(prefix + name, ChangeKind.FIELD_REMOVED, "was required", Compatibility.BACKWARD)
            else:
                yield Change(prefix + name, ChangeKind.FIELD_REMOVED, "was optional", Compatibility.FULL)
        for name in [n for n in old_props if n in new_props]:
            path = prefix + name
            if name in new_req and name not in old_req:
                yield Change(path, ChangeKind.MADE_REQUIRED, "no default", Compatibility.FORWARD)
            elif name in old_req and name not in new_req:
                yield Change(path, ChangeKind.MADE_OPTIONAL, "has a default", Compatibility.BACKWARD)
            yield from self.values(old_props[name], new_props[name], path)

    def _extras(self, old: Schema, new: Schema, prefix: str) -> Iterator[Change]:
        was_open = old.get("additionalProperties", True) is not False
        is_open = new.get("additionalProperties", True) is not False
        if was_open and not is_open:
            detail = "unknown fields now refused"
            yield Change(prefix.rstrip("."), ChangeKind.UNKNOWN_FIELDS, detail, Compatibility.FORWARD)
        elif is_open and not was_open:
            detail = "unknown fields now allowed"
            yield Change(prefix.rstrip("."), ChangeKind.UNKNOWN_FIELDS, detail, Compatibility.BACKWARD)

    def values(self, old_schema: Schema, new_schema: Schema, path: str) -> Iterator[Change]:
        """Changes to the set of values one field accepts."""
        old, new = self._old.domain(old_schema), self._new.domain(new_schema)
        if old.union is not None or new.union is not None:
            yield from _union_change(old, new, path)
        elif old.types != new.types:
            detail = f"{'|'.join(sorted(old.types)) or 'any'} -> {'|'.join(sorted(new.types)) or 'any'}"
            yield _widen_or_narrow(
                path, ChangeKind.TYPE, detail, covers(new.types, old.types), covers(old.types, new.types)
            )
        if old.nullable != new.nullable:
            detail = "null now allowed" if new.nullable else "null now refused"
            yield _widen_or_narrow(path, ChangeKind.NULLABLE, detail, new.nullable, old.nullable)
        yield from _value_set_change(old, new, path)
        yield from _bound_changes(old, new, path)
        if old.pattern != new.pattern:
            detail = f"{old.pattern or 'none'} -> {new.pattern or 'none'}"
            yield _widen_or_narrow(path, ChangeKind.PATTERN, detail, new.pattern is None, old.pattern is None)
        outer_old, outer_new = self._old.resolve(old_schema), self._new.resolve(new_schema)
        for key in ("description", "default"):
            if outer_old.get(key) != outer_new.get(key):
                yield Change(path, ChangeKind.ANNOTATION, key, Compatibility.FULL)
        if "object" in old.types and "object" in new.types:
            yield from self.objects(old.node, new.node, f"{path}.")
        if "array" in old.types and "array" in new.types and "items" in old.node and "items" in new.node:
            yield from self.values(old.node["items"], new.node["items"], f"{path}[]")


def _widen_or_narrow(path: str, kind: ChangeKind, detail: str, backward: bool, forward: bool) -> Change:
    return Change(path, kind, detail, Compatibility.of(backward=backward, forward=forward))


def _rules(old: Schema, new: Schema, path: str) -> Iterator[Change]:
    """``allOf`` rules (if/then): added ones narrow, removed ones widen, edited ones both."""
    before = {canonical(r) for r in old.get("allOf", ())}
    after = {canonical(r) for r in new.get("allOf", ())}
    if before != after:
        detail = f"{len(after - before)} added, {len(before - after)} removed"
        yield _widen_or_narrow(path, ChangeKind.RULES, detail, after <= before, before <= after)


def _union_change(old: Domain, new: Domain, path: str) -> Iterator[Change]:
    old_set = old.union if old.union is not None else frozenset([branch_key(old.node)])
    new_set = new.union if new.union is not None else frozenset([branch_key(new.node)])
    if old_set != new_set:
        detail = f"{len(old_set)} -> {len(new_set)} alternatives"
        yield _widen_or_narrow(path, ChangeKind.TYPE, detail, old_set <= new_set, new_set <= old_set)


def _value_set_change(old: Domain, new: Domain, path: str) -> Iterator[Change]:
    if old.values == new.values:
        return
    if old.values is None or new.values is None:
        detail = "values now restricted" if old.values is None else "values no longer restricted"
        yield _widen_or_narrow(path, ChangeKind.VALUES, detail, new.values is None, old.values is None)
        return
    added, removed = sorted(new.values - old.values), sorted(old.values - new.values)
    parts = [f"+{v}" for v in added] + [f"-{v}" for v in removed]
    yield _widen_or_narrow(path, ChangeKind.VALUES, " ".join(parts), not removed, not added)


def _bound_changes(old: Domain, new: Domain, path: str) -> Iterator[Change]:
    pairs = (
        (ChangeKind.BOUND, "minimum", old.lower, new.lower, True),
        (ChangeKind.BOUND, "maximum", old.upper, new.upper, False),
        (ChangeKind.LENGTH, "minLength", old.min_length, new.min_length, True),
        (ChangeKind.LENGTH, "maxLength", old.max_length, new.max_length, False),
    )
    for kind, name, before, after, lower in pairs:
        if before == after:
            continue
        detail = f"{name} {bound_text(name, before, lower=lower)} -> {bound_text(name, after, lower=lower)}"
        narrowed = tighter(after, before, lower=lower)
        widened = tighter(before, after, lower=lower)
        yield _widen_or_narrow(path, kind, detail, not narrowed, not widened)
