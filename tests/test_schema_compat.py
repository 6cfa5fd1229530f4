"""The compatibility classifier on plain JSON-Schema dicts (no models involved).

BACKWARD = new consumers read old messages; FORWARD = old consumers read new
messages; FULL = both; NONE = neither (Schema Registry's vocabulary).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from core.schema.compat import Change, ChangeKind, Compatibility, Reader, compare, overall

pytestmark = pytest.mark.strict_path  # runs in the week-4 deletion rehearsal too (test_week4_deletion)

BASE: dict[str, Any] = {
    "type": "object",
    "title": "Thing",
    "description": "A thing.",
    "$defs": {"Side": {"type": "string", "enum": ["BUY", "SELL"], "title": "Side"}},
    "properties": {
        "api_version": {"const": "v1.0", "type": "string"},
        "symbol": {"type": "string", "minLength": 1, "maxLength": 32, "pattern": "^[A-Z]+$"},
        "price": {"type": "number", "exclusiveMinimum": 0, "description": "Price."},
        "volume": {"type": "number", "minimum": 0},
        "count": {"type": "integer", "minimum": 0, "maximum": 10},
        "side": {"$ref": "#/$defs/Side", "description": "BUY or SELL."},
        "note": {"anyOf": [{"type": "string", "maxLength": 20}, {"type": "null"}], "default": None},
    },
    "required": ["api_version", "symbol", "price", "volume", "count", "side"],
}


def _edit(**edits: Any) -> dict[str, Any]:
    """A copy of BASE; ``properties__x=schema`` sets a field, ``=None`` deletes it."""
    schema = copy.deepcopy(BASE)
    for key, value in edits.items():
        if key.startswith("properties__"):
            name = key.removeprefix("properties__")
            if value is None:
                schema["properties"].pop(name)
            else:
                schema["properties"][name] = value
        elif value is None:
            schema.pop(key, None)
        else:
            schema[key] = value
    return schema


def _only(changes: list[Change], kind: ChangeKind | None = None) -> Change:
    relevant = [c for c in changes if kind is None or c.kind is kind]
    relevant = [c for c in relevant if c.kind is not ChangeKind.ANNOTATION or kind is ChangeKind.ANNOTATION]
    assert len(relevant) == 1, changes
    return relevant[0]


def test_compare__identical_schemas__has_no_changes() -> None:
    assert compare(BASE, copy.deepcopy(BASE)) == []
    assert overall([]) is Compatibility.FULL


def test_compare__new_optional_field__is_full() -> None:
    new = _edit(properties__venue={"type": "string"})
    change = _only(compare(BASE, new))
    assert (change.field, change.kind, change.compatibility) == (
        "venue",
        ChangeKind.FIELD_ADDED,
        Compatibility.FULL,
    )
    assert not change.breaking


def test_compare__new_required_field__breaks_backward_for_new_consumers() -> None:
    new = _edit(properties__venue={"type": "string"}, required=[*BASE["required"], "venue"])
    change = _only(compare(BASE, new))
    assert change.compatibility is Compatibility.FORWARD
    assert change.compatibility.broken_readers == (Reader.NEW_CONSUMERS,)


def test_compare__removed_required_field__breaks_forward_for_old_consumers() -> None:
    new = _edit(properties__volume=None, required=[r for r in BASE["required"] if r != "volume"])
    change = _only(compare(BASE, new))
    assert (change.kind, change.compatibility) == (ChangeKind.FIELD_REMOVED, Compatibility.BACKWARD)
    assert change.compatibility.broken_readers == (Reader.OLD_CONSUMERS,)


def test_compare__removed_optional_field__is_full() -> None:
    change = _only(compare(BASE, _edit(properties__note=None)))
    assert (change.kind, change.compatibility) == (ChangeKind.FIELD_REMOVED, Compatibility.FULL)


def test_compare__optional_field_made_required__breaks_backward() -> None:
    new = _edit(required=[*BASE["required"], "note"])
    assert _only(compare(BASE, new)).compatibility is Compatibility.FORWARD


def test_compare__required_field_made_optional__breaks_forward() -> None:
    new = _edit(required=[r for r in BASE["required"] if r != "symbol"])
    change = _only(compare(BASE, new))
    assert (change.kind, change.compatibility) == (ChangeKind.MADE_OPTIONAL, Compatibility.BACKWARD)


@pytest.mark.parametrize(
    ("field", "schema", "expected"),
    [
        ("price", {"type": "number", "exclusiveMinimum": 1}, Compatibility.FORWARD),  # narrowed
        ("volume", {"type": "number", "exclusiveMinimum": 0}, Compatibility.FORWARD),  # >=0 -> >0
        ("volume", {"type": "number"}, Compatibility.BACKWARD),  # bound dropped: widened
        ("count", {"type": "integer", "minimum": 0, "maximum": 5}, Compatibility.FORWARD),
        ("count", {"type": "integer", "minimum": 0, "maximum": 50}, Compatibility.BACKWARD),
        ("count", {"type": "integer", "minimum": 1, "maximum": 50}, Compatibility.NONE),
        ("price", {"type": "number", "minimum": 0}, Compatibility.BACKWARD),  # >0 -> >=0
    ],
)
def test_compare__numeric_bounds__narrowed_breaks_backward_widened_breaks_forward(
    field: str, schema: dict[str, Any], expected: Compatibility
) -> None:
    changes = compare(BASE, _edit(**{f"properties__{field}": schema}))
    bounds = [c for c in changes if c.kind is ChangeKind.BOUND]
    assert bounds
    assert overall(bounds) is expected


def test_compare__shorter_max_length__breaks_backward() -> None:
    new = _edit(properties__symbol={"type": "string", "minLength": 1, "maxLength": 8, "pattern": "^[A-Z]+$"})
    change = _only(compare(BASE, new), ChangeKind.LENGTH)
    assert change.compatibility is Compatibility.FORWARD
    assert "maxLength <=32 -> <=8" in change.detail


def test_compare__enum_value_added_through_ref__breaks_forward_for_old_consumers() -> None:
    new = _edit()
    new["$defs"]["Side"]["enum"] = ["BUY", "SELL", "HOLD"]
    change = _only(compare(BASE, new), ChangeKind.VALUES)
    assert (change.field, change.compatibility) == ("side", Compatibility.BACKWARD)
    assert '+"HOLD"' in change.detail


def test_compare__enum_value_removed__breaks_backward_for_new_consumers() -> None:
    new = _edit(properties__side={"type": "string", "enum": ["BUY"]})
    change = _only(compare(BASE, new), ChangeKind.VALUES)
    assert change.compatibility is Compatibility.FORWARD
    assert '-"SELL"' in change.detail


def test_compare__literal_changed__breaks_both() -> None:
    new = _edit(properties__api_version={"const": "v2.0", "type": "string"})
    assert _only(compare(BASE, new), ChangeKind.VALUES).compatibility is Compatibility.NONE


@pytest.mark.parametrize(
    ("old_type", "new_type", "expected"),
    [
        ("integer", "number", Compatibility.BACKWARD),
        ("number", "integer", Compatibility.FORWARD),
        ("integer", "string", Compatibility.NONE),
    ],
)
def test_compare__type_change__classified_by_which_side_accepts_more(
    old_type: str, new_type: str, expected: Compatibility
) -> None:
    old = _edit(properties__count={"type": old_type})
    new = _edit(properties__count={"type": new_type})
    assert _only(compare(old, new), ChangeKind.TYPE).compatibility is expected


def test_compare__null_now_allowed__breaks_forward() -> None:
    new = _edit(properties__price={"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]})
    change = _only(compare(BASE, new), ChangeKind.NULLABLE)
    assert change.compatibility is Compatibility.BACKWARD


def test_compare__null_now_refused__breaks_backward() -> None:
    new = _edit(properties__note={"type": "string", "maxLength": 20, "default": None})
    assert _only(compare(BASE, new), ChangeKind.NULLABLE).compatibility is Compatibility.FORWARD


def test_compare__pattern_added_or_edited__is_breaking() -> None:
    edited = _edit(
        properties__symbol={"type": "string", "minLength": 1, "maxLength": 32, "pattern": "^[A-Z/]+$"}
    )
    assert _only(compare(BASE, edited), ChangeKind.PATTERN).compatibility is Compatibility.NONE
    added = _edit(
        properties__price={"type": "number", "exclusiveMinimum": 0, "description": "Price.", "pattern": "x"}
    )
    assert _only(compare(BASE, added), ChangeKind.PATTERN).compatibility is Compatibility.FORWARD


def test_compare__documentation_only__is_full() -> None:
    new = _edit(description="Another text.", properties__price={"type": "number", "exclusiveMinimum": 0})
    changes = compare(BASE, new)
    assert changes
    assert all(c.kind is ChangeKind.ANNOTATION for c in changes)
    assert overall(changes) is Compatibility.FULL


def test_compare__unknown_fields_refused__breaks_backward() -> None:
    change = _only(compare(BASE, _edit(additionalProperties=False)))
    assert (change.kind, change.compatibility) == (ChangeKind.UNKNOWN_FIELDS, Compatibility.FORWARD)


def test_compare__cross_field_rule_added__breaks_backward() -> None:
    rule = {"if": {"properties": {"side": {"const": "SELL"}}}, "then": {"required": ["note"]}}
    change = _only(compare(BASE, _edit(allOf=[rule])))
    assert (change.kind, change.compatibility) == (ChangeKind.RULES, Compatibility.FORWARD)
    assert _only(compare(_edit(allOf=[rule]), BASE)).compatibility is Compatibility.BACKWARD


def test_compare__union_branch_added__breaks_forward() -> None:
    old = _edit(properties__note={"anyOf": [{"type": "string"}, {"type": "integer"}]})
    new = _edit(properties__note={"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]})
    assert _only(compare(old, new), ChangeKind.TYPE).compatibility is Compatibility.BACKWARD


def test_compare__nested_object_field__reported_with_a_dotted_path() -> None:
    inner = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    old = _edit(properties__meta=inner)
    new = _edit(
        properties__meta={
            **inner,
            "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
            "required": ["a", "b"],
        }
    )
    change = _only(compare(old, new))
    assert (change.field, change.kind, change.compatibility) == (
        "meta.b",
        ChangeKind.FIELD_ADDED,
        Compatibility.FORWARD,
    )


def test_overall__opposite_directions__is_none() -> None:
    added = _edit(properties__venue={"type": "string"}, required=[*BASE["required"], "venue"])
    both = copy.deepcopy(added)
    both["$defs"]["Side"]["enum"] = ["BUY", "SELL", "HOLD"]
    assert overall(compare(BASE, both)) is Compatibility.NONE


def test_change_explain__names_the_field_and_the_readers_it_breaks() -> None:
    new = _edit(properties__venue={"type": "string"}, required=[*BASE["required"], "venue"])
    text = _only(compare(BASE, new)).explain()
    assert "'venue'" in text
    assert "new consumers reading old messages" in text
