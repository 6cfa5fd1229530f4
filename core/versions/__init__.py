"""Contract versions as data: the declaration, converters, per-version schemas and the live gate."""

from core.versions.changes import (
    Change,
    ConversionError,
    EnumValueAdded,
    FieldAdded,
    FieldRemoved,
    FieldRenamed,
    ValueConverted,
)
from core.versions.convert import convert, convert_values, version_of
from core.versions.declaration import BASE_VERSION, VERSIONS, TopicVersions, VersionStep, known_versions

__all__ = [
    "BASE_VERSION",
    "VERSIONS",
    "Change",
    "ConversionError",
    "EnumValueAdded",
    "FieldAdded",
    "FieldRemoved",
    "FieldRenamed",
    "TopicVersions",
    "ValueConverted",
    "VersionStep",
    "convert",
    "convert_values",
    "known_versions",
    "version_of",
]
