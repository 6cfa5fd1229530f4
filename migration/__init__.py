"""The migration plug-in: the legacy path, the lenient profile, shadow mode and the cutover tooling.

:func:`install` registers the codec parts in core's codec registry; the application
calls it once. Deleted after week 4 with that one call (docs/migration-runbook.md).
"""

from migration.cutover import CheckOptions, CutoverReport, Finding, Verdict, check_cutover
from migration.cutover_files import (
    RECREATE_ORDER,
    STRICT_FLAGS,
    CutoverFileError,
    FileChange,
    plan_cutover,
    plan_rollback,
)
from migration.install import install
from migration.legacy_codec import LegacyCodec
from migration.lenient import LENIENT_FIELDS, LenientReader, lenient_variant
from migration.shadow import ShadowCodec

__all__ = [
    "LENIENT_FIELDS",
    "RECREATE_ORDER",
    "STRICT_FLAGS",
    "CheckOptions",
    "CutoverFileError",
    "CutoverReport",
    "FileChange",
    "Finding",
    "LegacyCodec",
    "LenientReader",
    "ShadowCodec",
    "Verdict",
    "check_cutover",
    "install",
    "lenient_variant",
    "plan_cutover",
    "plan_rollback",
]
