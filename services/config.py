"""Loading everything a service reads at start: its flags and connections, its own tuning settings
(thresholds, limits, fees, its source) and where it serves /metrics.

Every one of them comes from the same place by the same rule (:class:`core.settings_sources.EnvLayers`):
the process environment over the service's env file. ``cdb service NAME --env-file F`` starts
from :func:`load_start_config`, and ``cdb flags`` checks a file with it, so the two refuse the
same values with the same message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from core.errors import ConfigError
from core.metrics_http import MetricsTarget, metrics_target
from core.settings import ServiceSettings
from core.settings_sources import EnvLayers, ServiceEnvSource
from core.topics import ServiceName
from services.execution.paper import VenueParams
from services.risk.limits import RiskLimits
from services.signal.strategy import SignalParams
from services.ws.sources import WsSourceSettings

__all__ = ["OWN_SETTINGS", "StartConfig", "load_config", "load_start_config"]

T = TypeVar("T", bound=BaseSettings)

OWN_SETTINGS: Mapping[ServiceName, type[BaseSettings]] = {
    ServiceName.WS: WsSourceSettings,
    ServiceName.SIGNAL: SignalParams,
    ServiceName.RISK: RiskLimits,
    ServiceName.EXECUTION: VenueParams,
}
"""The class of each service's own settings (``WS_*``, ``SIGNAL_*``, ``RISK_*``, ``EXECUTION_*``)."""


def load_config(
    cls: type[T],
    environ: Mapping[str, str] | None = None,
    *,
    env_file: str | os.PathLike[str] | None = None,
) -> T:
    """``cls`` resolved from ``environ`` (default: the process environment) over ``env_file``,
    by the rule of the service flags (:class:`~core.settings_sources.ServiceEnvSource`).

    A bad value raises :class:`ConfigError` naming the variable (``KEY (in F)`` for a file's line).
    """
    source = ServiceEnvSource(cls, None, environ, env_file)
    values = source()
    try:
        # model_validate, not cls(): pydantic-settings' own sources would read the environment
        # a second time, by another rule (any letter case, no env file).
        return cls.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "?"
        field = cls.model_fields.get(name)
        accepted = [field.description or "see flags.env.example"] if field else ["?"]
        raise ConfigError(
            source.named(name) if field else name.upper(),
            first.get("input"),
            accepted,
            str(first.get("msg", "")).removeprefix("Value error, "),
        ) from None


@dataclass(frozen=True)
class StartConfig:
    """What one service starts with, every part from its environment over its env file."""

    settings: ServiceSettings
    """Flags, connections, transport (``USE_PYDANTIC_CONTRACTS``, ``REDIS_URL``, ...)."""
    metrics: MetricsTarget
    """Where /metrics is served (``METRICS_PORT``, ``METRICS_ADDR``)."""
    own: BaseSettings
    """The service's own settings: an instance of ``OWN_SETTINGS[service]``."""

    def own_as(self, cls: type[T]) -> T:
        """:attr:`own`, typed as the class the caller knows its service reads."""
        if not isinstance(self.own, cls):
            raise TypeError(f"{type(self.own).__name__} is not {cls.__name__}")
        return self.own


def load_start_config(
    service: ServiceName,
    *,
    environ: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
) -> StartConfig:
    """Every setting ``service`` reads at start, resolved and validated; the first bad one raises
    :class:`ConfigError` naming its variable. Variables no service reads are allowed (ignored)."""
    settings = ServiceSettings.load(service, environ=environ, env_file=env_file)
    # metrics_target reads a mapping by name: the layered view is the environment it sees.
    metrics = metrics_target(EnvLayers(environ, env_file))
    own = load_config(OWN_SETTINGS[service], environ, env_file=env_file)
    return StartConfig(settings, metrics, own)
