"""The JSON Schema of every declared contract version, derived from the declaration.

Written by ``cdb schema export`` under ``contracts/versions/<topic>/<version>.json``. Each file
is the version's model schema plus the topic's cross-field rules (:mod:`core.domain.rules`, the
same in every version; on a decimal version stated for decimal strings) and, as
``x-cdb-changes``, the declared changes from the previous version. Not expressible in JSON
Schema and so checked by the codec alone: ``filled_quantity <= ordered_quantity`` (v1.1+).
"""

from __future__ import annotations

from typing import Any

from core.domain.rules import cross_field_rules
from core.topics import Topic
from core.versions.changes import ValueConverted
from core.versions.declaration import BASE_VERSION, VERSIONS
from core.versions.fields import POSITIVE_DECIMAL_PATTERN

__all__ = ["VERSIONS_DIR", "version_changes", "version_files", "version_rules", "version_schema"]

VERSIONS_DIR = "versions"
"""The directory under ``contracts/`` holding one schema per topic and version."""

_ZERO_PATTERN = r"^0(\.0+)?$"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _is_decimal(prop: dict[str, Any]) -> bool:
    branches = prop.get("anyOf", [prop])
    return any(b.get("type") == "string" and "pattern" in b for b in branches)


def _decimal_rule(rule: dict[str, Any], decimals: set[str]) -> dict[str, Any]:
    then = dict(rule["then"])
    props = {}
    for name, check in then.get("properties", {}).items():
        if name not in decimals:
            props[name] = check
        elif check == {"type": "number"}:
            props[name] = {"type": "string"}
        elif check == {"exclusiveMinimum": 0}:
            props[name] = {"pattern": POSITIVE_DECIMAL_PATTERN}
        elif check == {"const": 0}:
            props[name] = {"pattern": _ZERO_PATTERN}
        else:
            props[name] = check
    then["properties"] = props
    return {**rule, "then": then}


def version_rules(topic: Topic, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The topic's cross-field rules for a version whose model schema is ``body`` (a decimal
    field's checks stated for decimal strings)."""
    decimals = {name for name, prop in body.get("properties", {}).items() if _is_decimal(prop)}
    return [_decimal_rule(r, decimals) for r in cross_field_rules(VERSIONS[topic].model(BASE_VERSION))]


def version_changes(topic: Topic, version: str) -> dict[str, Any] | None:
    """``x-cdb-changes`` of ``version``: the declared changes from the version before it (and
    the exact rounding of a converted value); ``None`` for the oldest version."""
    step = next((s for s in VERSIONS[topic].steps if s.newer == version), None)
    if step is None:
        return None
    changes: dict[str, Any] = {
        "from": step.older,
        "breaking": step.breaking,
        "changes": [c.describe() for c in step.changes],
    }
    roundings = sorted({c.rounding for c in step.changes if isinstance(c, ValueConverted)})
    if roundings:
        changes["rounding"] = roundings
    return changes


def version_schema(topic: Topic, version: str) -> dict[str, Any]:
    """The standalone JSON Schema (2020-12) of ``version`` of ``topic``."""
    body = VERSIONS[topic].model(version).model_json_schema(mode="validation")
    schema: dict[str, Any] = {"$schema": _DIALECT, **body}
    rules = version_rules(topic, body)
    if rules:
        schema["allOf"] = rules
    changes = version_changes(topic, version)
    if changes is not None:
        schema["x-cdb-changes"] = changes
    return schema


def version_files() -> dict[str, dict[str, Any]]:
    """Every version's schema by path relative to ``contracts/``."""
    return {
        f"{VERSIONS_DIR}/{topic.value}/{version}.json": version_schema(topic, version)
        for topic, declared in VERSIONS.items()
        for version in declared.versions
    }
