"""Migration-only code: the lenient profile and the cutover tooling; deleted after week 4."""

from migration.cutover import CheckOptions, CutoverReport, Finding, Verdict, check_cutover
from migration.cutover_files import (
    RECREATE_ORDER,
    STRICT_FLAGS,
    CutoverFileError,
    FileChange,
    plan_cutover,
    plan_rollback,
)
from migration.lenient import LENIENT_FIELDS, LenientReader, lenient_variant

__all__ = [
    "LENIENT_FIELDS",
    "RECREATE_ORDER",
    "STRICT_FLAGS",
    "CheckOptions",
    "CutoverFileError",
    "CutoverReport",
    "FileChange",
    "Finding",
    "LenientReader",
    "Verdict",
    "check_cutover",
    "lenient_variant",
    "plan_cutover",
    "plan_rollback",
]
