"""Which codec modes exist in this process, and the one function that picks a service's mode.

Core alone provides the Pydantic path with the strict profile. A plug-in (the migration,
through ``migration.install()``) adds the legacy path, the lenient profile and shadow
mode by registering them in :mod:`core.codec.registry`, which records them here. The
flag defaults follow what exists: with the migration installed they are what they always
were (legacy path, lenient profile); without it, the Pydantic path with the strict profile,
so nothing ever defaults to a path that is not there.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from core.topics import CodecPath, Profile

if TYPE_CHECKING:
    from core.settings import ServiceSettings

__all__ = [
    "CodecMode",
    "available_modes",
    "codec_mode",
    "default_profile",
    "default_use_pydantic",
    "mark_available",
    "mode_available",
    "mode_of",
    "primary_mode",
]


class CodecMode(StrEnum):
    """What a service's codec does, in one word (``cdb flags``, ``cdb status``, the benchmarks)."""

    LEGACY = "legacy"
    LENIENT = "lenient"
    STRICT = "strict"
    SHADOW = "shadow"


_PATHS: set[CodecPath] = {CodecPath.PYDANTIC}
_PROFILES: set[Profile] = {Profile.STRICT}
_SHADOW: list[bool] = [False]


def mark_available(
    *, path: CodecPath | None = None, profile: Profile | None = None, shadow: bool = False
) -> None:
    """Record that a plug-in registered ``path``, ``profile`` or shadow mode (registry only)."""
    if path is not None:
        _PATHS.add(path)
    if profile is not None:
        _PROFILES.add(profile)
    if shadow:
        _SHADOW[0] = True


def mode_available(mode: CodecMode) -> bool:
    """Whether this process can run a codec in ``mode``."""
    if mode is CodecMode.LEGACY:
        return CodecPath.LEGACY in _PATHS
    if mode is CodecMode.SHADOW:
        return _SHADOW[0]
    return Profile(mode.value) in _PROFILES


def available_modes() -> tuple[CodecMode, ...]:
    """Every mode this process can run, in :class:`CodecMode` order."""
    return tuple(mode for mode in CodecMode if mode_available(mode))


def default_use_pydantic() -> bool:
    """The default of ``USE_PYDANTIC_CONTRACTS``: false while the legacy path exists, else true."""
    return CodecPath.LEGACY not in _PATHS


def default_profile() -> Profile:
    """The default of ``CONTRACT_PROFILE``: lenient while that profile exists, else strict."""
    return Profile.LENIENT if Profile.LENIENT in _PROFILES else Profile.STRICT


def codec_mode(settings: ServiceSettings) -> CodecMode:
    """The one mode ``settings`` select: shadow if ``CONTRACT_SHADOW``, legacy without
    ``USE_PYDANTIC_CONTRACTS``, else the contract profile."""
    return CodecMode.SHADOW if settings.contract_shadow else primary_mode(settings)


def primary_mode(settings: ServiceSettings) -> CodecMode:
    """The mode of the codec a service acts on (in shadow mode: the one that is not the shadow)."""
    path = CodecPath.PYDANTIC if settings.use_pydantic_contracts else CodecPath.LEGACY
    return mode_of(path, settings.contract_profile)


def mode_of(path: str, profile: str | None, *, shadow: bool = False) -> CodecMode:
    """The mode of a codec described by its path, profile and shadow flag (as live status
    reports them): the same rule as :func:`codec_mode`."""
    if shadow:
        return CodecMode.SHADOW
    if path == CodecPath.LEGACY.value:
        return CodecMode.LEGACY
    return CodecMode(profile or Profile.STRICT.value)
