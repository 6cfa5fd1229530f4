"""The set of values one JSON-Schema field accepts, in parts that can be compared.

Used by :mod:`core.schema.compat`: a field schema as Pydantic emits it (``$ref``
into ``$defs``, ``anyOf`` with ``{"type": "null"}`` for optional values, ``const``
for a one-value ``Literal``) becomes a :class:`Domain` whose parts (types, allowed
values, bounds, lengths, pattern) can each be widened or narrowed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Bound",
    "Domain",
    "Resolver",
    "Schema",
    "bound_text",
    "branch_key",
    "canonical",
    "covers",
    "tighter",
]

Schema = Mapping[str, Any]
"""A JSON-Schema object (or a part of one)."""

# Keywords that document a value without restricting it; a union whose branches
# differ only in these has not changed.
_ANNOTATIONS = frozenset({"title", "description", "examples", "default", "unit", "x-unit", "deprecated"})


@dataclass(frozen=True, slots=True)
class Bound:
    """A numeric or length bound; ``exclusive`` for exclusiveMinimum/Maximum."""

    value: float
    exclusive: bool = False


@dataclass(frozen=True, slots=True)
class Domain:
    """The values one field schema accepts, split into comparable parts."""

    types: frozenset[str]  # JSON types except null; empty means any
    nullable: bool
    values: frozenset[str] | None  # canonical JSON of enum/const members; None = unrestricted
    lower: Bound | None
    upper: Bound | None
    min_length: Bound | None
    max_length: Bound | None
    pattern: str | None
    union: frozenset[str] | None  # canonical JSON of the branches of a non-trivial anyOf
    node: Schema  # the resolved single-branch schema (for nested objects and arrays)


def canonical(value: Any) -> str:
    """A stable JSON text of ``value`` (sorted keys), for set comparisons."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def branch_key(schema: Schema) -> str:
    """A branch of a union as comparable text, its annotations left out."""
    return canonical({k: v for k, v in schema.items() if k not in _ANNOTATIONS})


def covers(wide: frozenset[str], narrow: frozenset[str]) -> bool:
    """Every JSON type in ``narrow`` is accepted by ``wide`` (empty = any type)."""
    if not wide:
        return True
    if not narrow:
        return False
    return all(t in wide or (t == "integer" and "number" in wide) for t in narrow)


def tighter(a: Bound | None, b: Bound | None, *, lower: bool) -> bool:
    """``a`` refuses some value that ``b`` accepts (``None`` is no bound)."""
    if a is None:
        return False
    if b is None:
        return True
    if a.value != b.value:
        return a.value > b.value if lower else a.value < b.value
    return a.exclusive and not b.exclusive


def bound_text(name: str, bound: Bound | None, *, lower: bool) -> str:
    """``>0``, ``<=1``, or ``no minimum``: a bound as a person reads it."""
    if bound is None:
        return f"no {name}"
    op = (">" if lower else "<") + ("" if bound.exclusive else "=")
    return f"{op}{bound.value:g}"


def _bound(schema: Schema, inclusive: str, exclusive: str) -> Bound | None:
    lower = inclusive.startswith("min")
    found = [Bound(float(schema[inclusive]))] if inclusive in schema else []
    if exclusive in schema:
        found.append(Bound(float(schema[exclusive]), exclusive=True))
    best: Bound | None = None
    for candidate in found:
        if best is None or tighter(candidate, best, lower=lower):
            best = candidate
    return best


def _types_of(schema: Schema) -> frozenset[str]:
    declared = schema.get("type")
    if declared is None:
        return frozenset()
    names = [declared] if isinstance(declared, str) else list(declared)
    return frozenset(n for n in names if n != "null")


def _declares_null(schema: Schema) -> bool:
    declared = schema.get("type")
    return declared == "null" or (isinstance(declared, list) and "null" in declared)


class Resolver:
    """Resolves local ``$ref`` pointers of one schema document."""

    def __init__(self, root: Schema) -> None:
        self._root = root

    def resolve(self, schema: Schema) -> Schema:
        """``schema`` with its ``$ref`` replaced by the target (sibling keys win)."""
        for _ in range(32):  # bounded: a cyclic $ref must not hang the check
            if "$ref" not in schema:
                return schema
            ref = str(schema["$ref"])
            target: Any = self._root
            if ref.startswith("#/"):
                for part in ref[2:].split("/"):
                    target = target[part.replace("~1", "/").replace("~0", "~")]
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **siblings}
        return schema

    def domain(self, schema: Schema) -> Domain:
        """The comparable parts of the values ``schema`` accepts."""
        schema = self.resolve(schema)
        branches = [self.resolve(b) for b in schema.get("anyOf", schema.get("oneOf", ()))]
        nullable = _declares_null(schema)
        union: frozenset[str] | None = None
        node = schema
        if branches:
            real = [b for b in branches if b.get("type") != "null"]
            nullable = nullable or len(real) < len(branches)
            if len(real) == 1:
                outer = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
                node = {**outer, **real[0]}
            else:
                union = frozenset(branch_key(b) for b in real)
        values: frozenset[str] | None = None
        if "const" in node:
            values = frozenset([canonical(node["const"])])
        elif "enum" in node:
            members = [m for m in node["enum"] if m is not None]
            nullable = nullable or len(members) < len(node["enum"])
            values = frozenset(canonical(m) for m in members)
        return Domain(
            types=_types_of(node) if union is None else frozenset(),
            nullable=nullable,
            values=values,
            lower=_bound(node, "minimum", "exclusiveMinimum"),
            upper=_bound(node, "maximum", "exclusiveMaximum"),
            min_length=_bound(node, "minLength", "-"),
            max_length=_bound(node, "maxLength", "-"),
            pattern=node.get("pattern"),
            union=union,
            node=node,
        )
