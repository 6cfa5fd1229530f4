"""The migration plug-in's one entry point into core: :func:`install`."""

from __future__ import annotations

from core.codec.base import Codec, ShadowCallback
from core.codec.registry import register_path, register_profile, register_shadow
from core.topics import CodecPath, Profile
from migration.legacy_codec import LegacyCodec
from migration.lenient import lenient_models, lenient_readers
from migration.shadow import ShadowCodec

__all__ = ["install"]


def _shadow(primary: Codec, shadow: Codec, on_compare: ShadowCallback | None, sample: float) -> Codec:
    return ShadowCodec(primary, shadow, on_compare=on_compare, sample=sample)


def install() -> None:
    """Register the legacy path, the lenient profile and shadow mode in core's codec registry.

    The application calls it once at start-up (idempotent); after cutover the migration
    is deleted with that call, and the flag defaults fall back to Pydantic + strict.
    """
    register_path(CodecPath.LEGACY, LegacyCodec)
    register_profile(Profile.LENIENT, lenient_readers, lenient_models)
    register_shadow(_shadow)
