"""Which mixes of legacy and Pydantic services the matrix runs, and how a mix is written.

A mix gives each of the four services a :class:`Variant`: the legacy path, the
Pydantic path with the lenient profile, or the Pydantic path with the strict
profile. Written as ``ws=legacy,signal=pydantic,risk=strict,execution=legacy``
(omitted services are legacy) or as its four-letter code ``LPSL`` (ws, signal,
risk, execution in pipeline order).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.errors import ConfigError
from core.topics import CodecPath, Profile, ServiceName

__all__ = ["ALL_LEGACY", "STRICT_MIXES", "Mix", "Variant", "lenient_mixes", "strict_mixes"]


class Variant(StrEnum):
    """How one service decodes and encodes messages in a mix."""

    LEGACY = "legacy"
    PYDANTIC = "pydantic"
    """The Pydantic path with the lenient profile (the migration default)."""
    STRICT = "strict"
    """The Pydantic path with the strict profile (after cutover)."""

    @property
    def path(self) -> CodecPath:
        """The codec path of this variant."""
        return CodecPath.LEGACY if self is Variant.LEGACY else CodecPath.PYDANTIC

    @property
    def profile(self) -> Profile:
        """The profile setting (ignored by the legacy path, which has none)."""
        return Profile.STRICT if self is Variant.STRICT else Profile.LENIENT

    @property
    def code(self) -> str:
        """One letter: L, P or S."""
        return _CODES[self]


_CODES = {Variant.LEGACY: "L", Variant.PYDANTIC: "P", Variant.STRICT: "S"}
_BY_CODE = {code: variant for variant, code in _CODES.items()}
_ALIASES = {
    "lenient": Variant.PYDANTIC,
    "pydantic-lenient": Variant.PYDANTIC,
    "pydantic-strict": Variant.STRICT,
}


@dataclass(frozen=True, slots=True)
class Mix:
    """One variant per service; a value object (hashable, ordered by pipeline position)."""

    ws: Variant = Variant.LEGACY
    signal: Variant = Variant.LEGACY
    risk: Variant = Variant.LEGACY
    execution: Variant = Variant.LEGACY

    def variant(self, service: ServiceName) -> Variant:
        """The variant of ``service``."""
        return {
            ServiceName.WS: self.ws,
            ServiceName.SIGNAL: self.signal,
            ServiceName.RISK: self.risk,
            ServiceName.EXECUTION: self.execution,
        }[service]

    @property
    def code(self) -> str:
        """Four letters in pipeline order, e.g. ``LPPS``."""
        return "".join(self.variant(s).code for s in ServiceName)

    @property
    def strict(self) -> bool:
        """Whether any service runs the strict profile."""
        return any(self.variant(s) is Variant.STRICT for s in ServiceName)

    def overrides(self, service: ServiceName) -> dict[str, Any]:
        """The settings overrides that put ``service`` on its variant."""
        variant = self.variant(service)
        return {
            "use_pydantic_contracts": variant.path is CodecPath.PYDANTIC,
            "contract_profile": variant.profile,
        }

    def __str__(self) -> str:
        return ",".join(f"{s.value}={self.variant(s).value}" for s in ServiceName)

    @classmethod
    def parse(cls, text: str) -> Mix:
        """``ws=legacy,signal=pydantic,...`` (omitted services legacy) or a code like ``LPPS``.

        Raises :class:`ConfigError` naming the accepted values.
        """
        text = text.strip()
        if len(text) == 4 and "=" not in text and all(c in _BY_CODE for c in text.upper()):
            return cls(*(_BY_CODE[c] for c in text.upper()))
        values: dict[str, Variant] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            service = name.strip().lower()
            if not sep or service not in ServiceName.__members__.values():
                raise ConfigError("--mix", text, [f"{s.value}=<variant>" for s in ServiceName] + ["LPSL"])
            values[service] = _variant(value, text)
        if not values:
            raise ConfigError("--mix", text, ["ws=legacy,signal=pydantic,...", "a code like LPSL"])
        return cls(**values)


def _variant(value: str, text: str) -> Variant:
    word = value.strip().lower()
    if word in Variant.__members__.values():
        return Variant(word)
    if word in _ALIASES:
        return _ALIASES[word]
    raise ConfigError("--mix", text, [v.value for v in Variant])


ALL_LEGACY = Mix()
"""The baseline: every service on the legacy path, as before the migration."""


def lenient_mixes() -> list[Mix]:
    """All 16 combinations of legacy and Pydantic (lenient) over the four services, baseline first."""
    pair = (Variant.LEGACY, Variant.PYDANTIC)
    return [Mix(*combo) for combo in itertools.product(pair, repeat=4)]


_P, _S, _L = Variant.PYDANTIC, Variant.STRICT, Variant.LEGACY

STRICT_MIXES: tuple[tuple[Mix, str], ...] = (
    (Mix(_S, _S, _S, _S), "after cutover: every service strict, every producer adds api_version/timestamp"),
    (Mix(_P, _S, _P, _P), "cutover step: signal strict first, behind Pydantic producers"),
    (Mix(_P, _P, _S, _P), "cutover step: risk strict, behind Pydantic producers"),
    (Mix(_P, _P, _P, _S), "cutover step: execution strict, behind Pydantic producers"),
    (Mix(_L, _S, _S, _S), "too early: ws still legacy, signal strict -> market_data dead-lettered"),
    (
        Mix(_S, _L, _S, _S),
        "too early / rollback: signal back on legacy, risk strict -> signals dead-lettered",
    ),
    (
        Mix(_S, _S, _L, _S),
        "too early / rollback: risk back on legacy, execution strict -> orders dead-lettered",
    ),
)
"""The strict-profile mixes the matrix runs, each with why it is in the set (docs/matrix.md)."""


def strict_mixes() -> list[Mix]:
    """The strict-profile mixes of :data:`STRICT_MIXES`."""
    return [mix for mix, _ in STRICT_MIXES]
