"""The one place that chooses a service's codec from its settings.

Services receive a codec and never test the flag themselves. After cutover,
deleting the legacy path and the lenient profile removes two entries here.
"""

from __future__ import annotations

from pydantic import BaseModel

from core.codec.base import Codec
from core.codec.pydantic_codec import CONTRACTS, ContractReader, PydanticCodec, StrictReader
from core.settings import ServiceSettings
from core.topics import CodecPath, Profile, Topic
from migration.legacy_codec import LegacyCodec
from migration.lenient import lenient_models, lenient_readers
from migration.shadow import ShadowCallback, ShadowCodec

__all__ = ["build_codec", "codec_for", "profile_models"]


def profile_models(profile: Profile) -> dict[Topic, type[BaseModel]]:
    """The model that validates each topic under ``profile`` (for schema export): the
    strict contracts, or their lenient variants while the lenient profile exists."""
    if profile is Profile.LENIENT:
        return lenient_models(CONTRACTS)
    return dict(CONTRACTS)


def _readers(profile: Profile) -> dict[Topic, ContractReader]:
    if profile is Profile.LENIENT:
        return dict(lenient_readers(CONTRACTS))
    return {topic: StrictReader(model) for topic, model in CONTRACTS.items()}


def build_codec(path: CodecPath, profile: Profile = Profile.LENIENT, *, max_bytes: int = 65_536) -> Codec:
    """The codec for ``path`` (and ``profile`` on the Pydantic path)."""
    if path is CodecPath.LEGACY:
        return LegacyCodec(max_bytes)
    return PydanticCodec(profile, _readers(profile), max_bytes)


def codec_for(settings: ServiceSettings, *, on_shadow: ShadowCallback | None = None) -> Codec:
    """The codec a service with ``settings`` must use.

    With ``CONTRACT_SHADOW=true`` it is a :class:`ShadowCodec`: the flag-selected codec
    wrapped with the other path's (same profile), reporting each comparison to ``on_shadow``.
    """
    path = CodecPath.PYDANTIC if settings.use_pydantic_contracts else CodecPath.LEGACY
    primary = build_codec(path, settings.contract_profile, max_bytes=settings.max_message_bytes)
    if not settings.contract_shadow:
        return primary
    other = CodecPath.LEGACY if path is CodecPath.PYDANTIC else CodecPath.PYDANTIC
    shadow = build_codec(other, settings.contract_profile, max_bytes=settings.max_message_bytes)
    return ShadowCodec(primary, shadow, on_compare=on_shadow)
