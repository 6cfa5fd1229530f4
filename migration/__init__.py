"""Migration-only code: the lenient profile and the cutover tooling; deleted after week 4."""

from migration.lenient import LENIENT_FIELDS, LenientReader, lenient_variant

__all__ = ["LENIENT_FIELDS", "LenientReader", "lenient_variant"]
