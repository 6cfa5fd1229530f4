"""Core's one codec registry: the one place that chooses a service's codec from its settings.

Services receive a codec and never test the flag themselves. Core registers the
Pydantic path with the strict profile; a plug-in adds more through the ``register_*``
functions (the migration adds the legacy path, the lenient profile and shadow mode,
once, from ``migration.install()``). Core never imports a plug-in, so deleting the
migration after cutover deletes its registrations with it and nothing here changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import BaseModel

from core.codec.base import Codec, ShadowCallback
from core.codec.pydantic_codec import CONTRACTS, ContractReader, PydanticCodec, StrictReader
from core.codec_modes import CodecMode, codec_mode, default_profile, mark_available, primary_mode
from core.errors import ConfigError
from core.settings import ServiceSettings
from core.topics import CodecPath, Profile, Topic

__all__ = [
    "CodecFactory",
    "ReaderFactory",
    "ShadowFactory",
    "build_codec",
    "codec_for",
    "codec_for_mode",
    "profile_models",
    "register_path",
    "register_profile",
    "register_shadow",
    "shadow_codec",
]

CodecFactory = Callable[[int], Codec]
"""Builds the codec of a registered path from ``max_bytes``."""

ReaderFactory = Callable[[dict[Topic, type[BaseModel]]], Mapping[Topic, ContractReader]]
"""Builds a profile's reader for each topic from the strict contracts (a profile may read
topics by different rules, e.g. the lenient profile's missing-timestamp rule per topic)."""

VariantFactory = Callable[[dict[Topic, type[BaseModel]]], dict[Topic, type[BaseModel]]]
"""The model a profile validates each topic with, from the strict contracts (schema export)."""

ShadowFactory = Callable[[Codec, Codec, ShadowCallback | None, float], Codec]
"""(primary, shadow, on_compare, sample): shadow mode's codec, comparing ``sample`` of the messages."""
"""Wraps (primary, shadow, on_compare) into the codec of shadow mode."""


def _strict_readers(contracts: dict[Topic, type[BaseModel]]) -> dict[Topic, ContractReader]:
    return {topic: StrictReader(model) for topic, model in contracts.items()}


def _strict_models(contracts: dict[Topic, type[BaseModel]]) -> dict[Topic, type[BaseModel]]:
    return dict(contracts)


_PATHS: dict[CodecPath, CodecFactory] = {}
_PROFILES: dict[Profile, tuple[ReaderFactory, VariantFactory]] = {
    Profile.STRICT: (_strict_readers, _strict_models)
}
_SHADOW: list[ShadowFactory] = []


def register_path(path: CodecPath, factory: CodecFactory) -> None:
    """Make ``path`` (other than the Pydantic one, which core owns) buildable."""
    if path is CodecPath.PYDANTIC:
        raise ValueError("the Pydantic path belongs to core")
    _PATHS[path] = factory
    mark_available(path=path)


def register_profile(profile: Profile, reader: ReaderFactory, variant: VariantFactory) -> None:
    """Make ``profile`` of the Pydantic path buildable: ``reader`` builds its per-topic readers,
    ``variant`` its per-topic models (the schema export)."""
    _PROFILES[profile] = (reader, variant)
    mark_available(profile=profile)


def register_shadow(factory: ShadowFactory) -> None:
    """Make shadow mode (``CONTRACT_SHADOW=true``) buildable."""
    _SHADOW[:] = [factory]
    mark_available(shadow=True)


def profile_models(profile: Profile) -> dict[Topic, type[BaseModel]]:
    """The model that validates each topic under ``profile`` (for schema export); empty when
    that profile is not installed."""
    if profile not in _PROFILES:
        return {}
    return _PROFILES[profile][1](CONTRACTS)


def _missing(variable: str, value: str, hint: str) -> ConfigError:
    return ConfigError(variable, value, _accepted(variable), hint)


def _accepted(variable: str) -> list[str]:
    if variable == "CONTRACT_PROFILE":
        return sorted(p.value for p in _PROFILES)
    if variable == "CONTRACT_SHADOW":
        return ["false"]
    return ["true"]


def build_codec(path: CodecPath, profile: Profile | None = None, *, max_bytes: int = 65_536) -> Codec:
    """The codec for ``path`` (and ``profile`` on the Pydantic path; default: the default profile).

    :class:`ConfigError` if that path or profile is not installed in this process.
    """
    if path is not CodecPath.PYDANTIC:
        if path not in _PATHS:
            raise _missing("USE_PYDANTIC_CONTRACTS", "false", f"the {path.value} path is not installed")
        return _PATHS[path](max_bytes)
    chosen = profile or default_profile()
    if chosen not in _PROFILES:
        raise _missing("CONTRACT_PROFILE", chosen.value, f"the {chosen.value} profile is not installed")
    return PydanticCodec(chosen, dict(_PROFILES[chosen][0](CONTRACTS)), max_bytes)


def shadow_codec(
    primary: Codec, shadow: Codec, on_compare: ShadowCallback | None = None, *, sample: float = 1.0
) -> Codec:
    """``primary`` wrapped with ``shadow`` the way ``CONTRACT_SHADOW=true`` wraps it (the
    benchmarks compare it with the plain codec); :class:`ConfigError` if shadow mode is not installed."""
    if not _SHADOW:
        raise _missing("CONTRACT_SHADOW", "true", "shadow mode is not installed")
    return _SHADOW[0](primary, shadow, on_compare, sample)


def codec_for(settings: ServiceSettings, *, on_shadow: ShadowCallback | None = None) -> Codec:
    """The codec a service with ``settings`` must use, by the one mode resolver
    (:func:`core.codec_modes.codec_mode`).

    In shadow mode it is the shadow codec: the flag-selected codec wrapped with the other
    path's (same profile), reporting each comparison to ``on_shadow``. On the Pydantic path the
    primary codec is a :class:`~core.versions.codec.VersionedCodec`: it reads every declared
    contract version not retired (``RETIRED_VERSIONS_<TOPIC>``), hands the code the version
    :mod:`core.versions.own` names for the service (v1.0 of its input topic in shadow mode) and writes
    ``PRODUCE_VERSION_<TOPIC>``.
    ``CONTRACT_SHADOW_SAMPLE`` below 1 compares that share of the messages only.
    """
    mode, primary_of = codec_mode(settings), primary_mode(settings)
    if mode is CodecMode.SHADOW and not _SHADOW:
        raise _missing("CONTRACT_SHADOW", "true", "shadow mode is not installed")
    primary = codec_for_mode(primary_of, max_bytes=settings.max_message_bytes)
    if primary_of is not CodecMode.LEGACY:
        from core.versions.codec import VersionedCodec  # imports the contracts of every version
        from core.versions.own import own_versions

        writes = {topic: settings.produce_version(topic) for topic in Topic}
        retired = {topic: settings.retired_versions(topic) for topic in Topic}
        # Shadow mode compares the two paths' v1.0 readings: the code gets v1.0 of the topic it
        # reads there, and builds what it writes as without shadow (shadow must change no output).
        own = own_versions(settings.service, writes)
        reads = settings.service.consumes if settings.service is not None else None
        if mode is CodecMode.SHADOW and reads is not None:
            own.pop(reads, None)
        primary = VersionedCodec(
            primary, writes=writes, own=own, max_bytes=settings.max_message_bytes, retired=retired
        )
    if mode is not CodecMode.SHADOW:
        return primary
    other = CodecPath.PYDANTIC if primary_of is CodecMode.LEGACY else CodecPath.LEGACY
    shadow = build_codec(other, settings.contract_profile, max_bytes=settings.max_message_bytes)
    return shadow_codec(primary, shadow, on_shadow, sample=settings.contract_shadow_sample)


def codec_for_mode(mode: CodecMode, *, max_bytes: int = 65_536) -> Codec:
    """The codec of a single (non-shadow) ``mode``: legacy, or the Pydantic path with that profile."""
    if mode is CodecMode.SHADOW:
        raise ValueError("shadow mode wraps two codecs; build it with codec_for(settings)")
    if mode is CodecMode.LEGACY:
        return build_codec(CodecPath.LEGACY, max_bytes=max_bytes)
    return build_codec(CodecPath.PYDANTIC, Profile(mode.value), max_bytes=max_bytes)
