"""Boundary checks of the legacy path, derived from the v1.0 contracts' JSON Schema.

The legacy dataclasses do no validation by design (they are the "before" side).
Without a guard a NaN price or an unknown side would pass the legacy path and
poison business logic, so the legacy codec applies the contract's own bounds to
the fields the legacy class has: JSON type, finiteness, numeric bounds, string
length and enum membership, and then the contract's cross-field rules (the
``if``/``then`` rules of :mod:`core.domain.rules`: a LIMIT order needs a price, a
fill needs a size and a price, a REJECTED/CANCELLED result carries no fill).
Contract fields the legacy class does not have (``api_version``, ``timestamp``
on most topics, ``trade_id``) are checked only when present, under the same rule
as everywhere (null only where the contract allows it): a legacy consumer must
still refuse ``"v2.0"`` or a timestamp in seconds from a newer producer.
Regular-expression patterns are not checked here; shadow mode shows where that
difference matters.

A refusal names the error type the Pydantic path gives for the same value (``int_type`` for
a null integer, ``enum`` for a number where a side belongs, ``literal_error`` for a wrong
``api_version``, ...), so ``cdb_validation_errors_total{reason}`` keeps its reasons when a
service flips paths. Deleted with the legacy path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from core.domain.rules import cross_field_rules
from core.errors import ErrorDetail

__all__ = ["CrossFieldRule", "FieldRule", "LegacyGuard"]

_TYPE_ERRORS = {
    "number": ("float_type", "Input should be a valid number"),
    "integer": ("int_type", "Input should be a valid integer"),
    "string": ("string_type", "Input should be a valid string"),
    "boolean": ("bool_type", "Input should be a valid boolean"),
}
"""Per JSON type, the error (Pydantic's type and words) of a value of another type or null."""
_JSON_TYPES = frozenset(_TYPE_ERRORS)


@dataclass(frozen=True, slots=True)
class FieldRule:
    """What one field must be, taken from the contract's schema."""

    name: str
    kind: str
    nullable: bool = False
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    choices: frozenset[str] | None = None
    required: bool = True
    literal: bool = False
    """The choices are a ``Literal`` of the contract (``api_version``), not an enum class."""

    def check(self, value: Any) -> ErrorDetail | None:
        """The first way ``value`` breaks this rule, or ``None``; its type is the one the
        Pydantic path reports for the same value."""
        if value is None and self.nullable:
            return None
        if self.choices is not None:  # any non-member, null and non-strings included
            return None if type(value) is str and value in self.choices else self._not_a_choice(value)
        if value is None:
            return self._type_error(value)
        if self.kind in ("number", "integer"):
            return self._check_number(value)
        if self.kind == "boolean":
            return None if isinstance(value, bool) else self._type_error(value)
        if not isinstance(value, str):
            return self._type_error(value)
        if self.min_length is not None and len(value) < self.min_length:
            return self._err(
                "string_too_short",
                f"String should have at least {self.min_length} characters",
                value,
            )
        if self.max_length is not None and len(value) > self.max_length:
            return self._err(
                "string_too_long", f"String should have at most {self.max_length} characters", value
            )
        return None

    def _check_number(self, value: Any) -> ErrorDetail | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self._type_error(value)
        if self.kind == "integer" and not isinstance(value, int):
            return self._type_error(value)
        if self.kind == "number" and not _is_finite(value):
            return self._err("finite_number", "Input should be a finite number", value)
        if self.exclusive_minimum is not None and not value > self.exclusive_minimum:
            return self._err("greater_than", f"Input should be greater than {self.exclusive_minimum}", value)
        if self.minimum is not None and value < self.minimum:
            return self._err("greater_than_equal", f"Input should be >= {self.minimum}", value)
        if self.maximum is not None and value > self.maximum:
            return self._err("less_than_equal", f"Input should be <= {self.maximum}", value)
        return None

    def _type_error(self, value: Any) -> ErrorDetail:
        kind, msg = _TYPE_ERRORS[self.kind]
        return self._err(kind, msg, value)

    def _not_a_choice(self, value: Any) -> ErrorDetail:
        assert self.choices is not None
        names = [f"'{c}'" for c in sorted(self.choices)]
        expected = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        return self._err("literal_error" if self.literal else "enum", f"Input should be {expected}", value)

    def _err(self, kind: str, msg: str, value: Any) -> ErrorDetail:
        return {"type": kind, "loc": (self.name,), "msg": msg, "input": value}


def _is_finite(value: int | float) -> bool:
    # JSON integers are unbounded; one past the float range would make from_dict's
    # float() (and math.isfinite) raise OverflowError instead of refusing the message.
    # (An "integer" field is never converted to float, so only "number" fields ask.)
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@dataclass(frozen=True, slots=True)
class CrossFieldRule:
    """One ``if``/``then`` rule of :func:`core.domain.rules.cross_field_rules`: when every
    ``when`` field holds one of its values, every ``then`` field present must match its schema
    and every ``required`` field must be present."""

    description: str
    when: tuple[tuple[str, frozenset[Any]], ...]
    then: tuple[tuple[str, dict[str, Any]], ...]
    required: tuple[str, ...] = ()

    @classmethod
    def from_schema(cls, rule: dict[str, Any]) -> CrossFieldRule:
        """Read the restricted ``if``/``then`` form the contracts use (const/enum conditions)."""
        when = []
        for name, cond in rule["if"]["properties"].items():
            values = cond["enum"] if "enum" in cond else [cond["const"]]
            if not all(isinstance(v, str) for v in values):
                raise ValueError(f"cross-field rule on {name!r}: only string (enum) conditions are supported")
            when.append((name, frozenset(values)))
        then = rule["then"]
        return cls(
            description=rule["description"],
            when=tuple(when),
            then=tuple(then.get("properties", {}).items()),
            required=tuple(then.get("required", ())),
        )

    def check(self, obj: dict[str, Any]) -> ErrorDetail | None:
        """A ``value_error`` (as the model validator's) if ``obj`` breaks this rule, else ``None``."""
        for name, values in self.when:  # plain loops, no calls: this runs for every legacy message
            value = obj.get(name)
            if type(value) is not str or value not in values:  # conditions are enum strings
                return None
        broken = False
        for name in self.required:
            if name not in obj:
                broken = True
        for name, schema in self.then:
            if name in obj and not _matches(obj[name], schema):
                broken = True
        if not broken:
            return None
        return {"type": "value_error", "loc": (), "msg": f"Value error, {self.description}", "input": obj}


def _matches(value: Any, schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "null" and value is not None:
        return False
    if kind == "number" and not is_number:
        return False
    if "const" in schema and not (is_number and value == schema["const"]):
        return False
    return not ("exclusiveMinimum" in schema and not (is_number and value > schema["exclusiveMinimum"]))


class LegacyGuard:
    """Checks a decoded JSON object against the rules of one contract."""

    __slots__ = ("cross", "rules")

    def __init__(self, rules: Iterable[FieldRule], cross: Iterable[CrossFieldRule] = ()) -> None:
        self.rules = tuple(rules)
        self.cross = tuple(cross)

    @classmethod
    def from_contract(cls, contract: type[BaseModel], fields: Iterable[str]) -> LegacyGuard:
        """Rules for ``fields`` (the legacy class's fields, required) taken from ``contract``'s
        schema, plus optional rules for the contract's other fields (checked when present)."""
        schema = contract.model_json_schema()
        defs = schema.get("$defs", {})
        props = schema["properties"]
        names = set(fields)
        missing = names - props.keys()
        if missing:
            raise ValueError(f"{contract.__name__} has no field {sorted(missing)}")
        # In the contract's field order, as Pydantic reports them: the first error is the reason
        # counted (api_version first: a newer version's message is refused as such, not for a price).
        rules = [_rule(name, prop, defs, required=name in names) for name, prop in props.items()]
        return cls(rules, [CrossFieldRule.from_schema(r) for r in cross_field_rules(contract)])

    def check(self, obj: dict[str, Any]) -> list[ErrorDetail]:
        """Every rule ``obj`` breaks; a missing key is a ``missing`` error."""
        errors: list[ErrorDetail] = []
        for rule in self.rules:
            if rule.name not in obj:
                if rule.required:
                    errors.append({"type": "missing", "loc": (rule.name,), "msg": "Field required"})
                continue
            err = rule.check(obj[rule.name])
            if err is not None:
                errors.append(err)
        if not errors:  # like a model validator: only once every field is valid
            for cross in self.cross:
                err = cross.check(obj)
                if err is not None:
                    errors.append(err)
        return errors


def _rule(name: str, prop: dict[str, Any], defs: dict[str, Any], *, required: bool = True) -> FieldRule:
    nullable = False
    if "anyOf" in prop:
        options = [p for p in prop["anyOf"] if p.get("type") != "null"]
        nullable = len(options) < len(prop["anyOf"])
        prop = {**prop, **options[0]}
    # Choices written inline are a Literal of the contract; behind a $ref, an enum class.
    literal = "$ref" not in prop
    if "$ref" in prop:
        prop = {**prop, **defs[prop["$ref"].rsplit("/", 1)[-1]]}
    kind = prop.get("type", "string")
    if kind not in _JSON_TYPES:
        raise ValueError(f"no legacy rule for field {name!r} of JSON type {kind!r}")
    choices = prop.get("enum")
    if "const" in prop:
        choices = [prop["const"]]
    return FieldRule(
        name=name,
        kind=kind,
        nullable=nullable,
        minimum=prop.get("minimum"),
        exclusive_minimum=prop.get("exclusiveMinimum"),
        maximum=prop.get("maximum"),
        min_length=prop.get("minLength"),
        max_length=prop.get("maxLength"),
        choices=frozenset(choices) if choices is not None else None,
        required=required,
        literal=literal and choices is not None,
    )
