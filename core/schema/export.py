"""JSON Schema of every contract (strict and lenient) and the files ``cdb schema export`` writes.

Everything is derived from the models (types first: the structure of a message is
declared once, in :mod:`core.domain.contracts`), so the committed ``contracts/``
tree can be regenerated and compared byte for byte. The only hand-written part is
:func:`core.schema.rules.cross_field_rules`: the two model validators a per-field schema cannot
express, checked against the codec by the test suite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.codec.registry import profile_models
from core.schema.asyncapi import asyncapi_document
from core.schema.rules import cross_field_rules
from core.topics import KeySpace, Profile

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "contract_schema",
    "default_contracts_dir",
    "dumps",
    "exported_files",
    "exported_models",
    "stale_exports",
    "write_exports",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The JSON Schema dialect Pydantic emits and the exported files declare."""

_SCHEMA_DIR = "json-schema"
_ASYNCAPI_FILE = "asyncapi.json"


def contract_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The standalone JSON Schema (2020-12) that accepts what ``model`` validates.

    Finite floats: every float field has ``maximum`` = the largest float (its minimum is
    >= 0), so ``1e309`` (read as infinity) is refused; ``NaN``/``Infinity`` are not JSON
    (RFC 8259), a conforming parser refuses them before any schema. Integer timestamps:
    ``"type": "integer"``; the codec also refuses ``1.0``/``1.7e12`` forms, which JSON
    Schema's data model cannot tell from ``1`` unless numbers are read exactly (a fraction or
    exponent read as a decimal, not an integer: ``json.loads(parse_float=Decimal)``), which
    is how the test suite compares the two (``tests/test_schema_agreement.py``).
    """
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema(mode="validation")}
    rules = cross_field_rules(model)
    if rules:
        schema["allOf"] = rules
    return schema


def exported_models() -> dict[str, type[BaseModel]]:
    """Every exported model by file stem: each topic's strict contract, then its lenient variant
    (taken from the codec registry, the one place that knows the migration profile)."""
    strict, lenient = profile_models(Profile.STRICT), profile_models(Profile.LENIENT)
    out: dict[str, type[BaseModel]] = {}
    for topic, model in strict.items():
        out[model.__name__] = model
        if topic in lenient:
            out[lenient[topic].__name__] = lenient[topic]
    return out


def dumps(value: Any) -> str:
    """The stable text form of an exported JSON file (2-space indent, trailing newline)."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def exported_files(keys: KeySpace | None = None) -> dict[str, str]:
    """Every file of the export, by path relative to the contracts directory."""
    files = {f"{_SCHEMA_DIR}/{name}.json": dumps(contract_schema(m)) for name, m in exported_models().items()}
    files[_ASYNCAPI_FILE] = dumps(asyncapi_document(keys or KeySpace()))
    from core.versions.schema import version_files  # every declared contract version

    files.update((rel, dumps(schema)) for rel, schema in version_files().items())
    return files


def default_contracts_dir() -> Path:
    """``contracts/`` of the source checkout this package runs from, else of the working directory."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "contracts"
    return Path.cwd() / "contracts"


def stale_exports(root: Path) -> list[str]:
    """Relative paths under ``root`` that a fresh export would change, add or delete."""
    fresh = exported_files()
    stale = [rel for rel, text in fresh.items() if _read(root / rel) != text]
    for folder, pattern in ((_SCHEMA_DIR, "*.json"), ("versions", "*/*.json")):
        if (root / folder).is_dir():
            extra = (p.relative_to(root).as_posix() for p in sorted((root / folder).glob(pattern)))
            stale.extend(rel for rel in extra if rel not in fresh)
    return sorted(stale)


def write_exports(root: Path) -> list[str]:
    """Write the export under ``root`` (deleting schema files of models that no longer exist);
    returns the relative paths that changed."""
    changed = stale_exports(root)
    fresh = exported_files()
    for rel in changed:
        target = root / rel
        if rel in fresh:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(fresh[rel], encoding="utf-8")
        else:
            target.unlink()
    return changed


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
