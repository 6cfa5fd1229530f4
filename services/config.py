"""Loading a service's own tuning settings (thresholds, limits, fees) from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from core.errors import ConfigError

__all__ = ["load_config"]

T = TypeVar("T", bound=BaseSettings)


def load_config(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """``cls`` resolved from ``environ`` (default: the process environment).

    A bad value raises :class:`ConfigError` naming the environment variable.
    """
    prefix = str(cls.model_config.get("env_prefix", ""))
    try:
        if environ is None:
            return cls()
        wanted = {
            name: environ[f"{prefix}{name}".upper()]
            for name in cls.model_fields
            if f"{prefix}{name}".upper() in environ
        }
        return cls.model_validate(wanted)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "?"
        variable = f"{prefix}{name}".upper()
        field = cls.model_fields.get(name)
        accepted = [field.description or "see flags.env.example"] if field else ["?"]
        raise ConfigError(
            variable, first.get("input"), accepted, str(first.get("msg", "")).removeprefix("Value error, ")
        ) from None
