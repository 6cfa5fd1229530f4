"""Contract documents and the compatibility gate: JSON Schema, AsyncAPI, snapshots."""

from core.schema.asyncapi import ASYNCAPI_VERSION, asyncapi_document
from core.schema.compat import Change, ChangeKind, Compatibility, Reader, compare, overall
from core.schema.export import (
    JSON_SCHEMA_DIALECT,
    contract_schema,
    default_contracts_dir,
    exported_files,
    exported_models,
    stale_exports,
    write_exports,
)
from core.schema.gate import GateReport, GateStatus, TopicVerdict, api_version_of, check, write_snapshots
from core.schema.rules import cross_field_rules

__all__ = [
    "ASYNCAPI_VERSION",
    "JSON_SCHEMA_DIALECT",
    "Change",
    "ChangeKind",
    "Compatibility",
    "GateReport",
    "GateStatus",
    "Reader",
    "TopicVerdict",
    "api_version_of",
    "asyncapi_document",
    "check",
    "compare",
    "contract_schema",
    "cross_field_rules",
    "default_contracts_dir",
    "exported_files",
    "exported_models",
    "overall",
    "stale_exports",
    "write_exports",
    "write_snapshots",
]
