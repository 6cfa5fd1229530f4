"""Where service settings come from: one pydantic-settings source, and env files read by python-dotenv.

:class:`ServiceEnvSource` is a ``PydanticBaseSettingsSource`` (the library's extension
point) that scopes variables per service and records where each value came from.
Precedence, highest first: explicit values (CLI options, passed to the settings class
itself), the service-prefixed variable (``SIGNAL_USE_PYDANTIC_CONTRACTS``), the plain
variable, an env file (where a prefixed line likewise beats a plain one), the default.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv.parser import parse_stream
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from core.errors import ConfigError

__all__ = ["EMPTY_MEANS_UNSET", "ServiceEnvSource", "read_env_file"]

EMPTY_MEANS_UNSET = ("redis_url", "database_url", "redis_mode", "dlq_max_payload_bytes")
"""Fields where an empty value means "not configured" (a URL), "detect" (the Redis mode) or
"derived" (the dead-letter payload cap)."""


class ServiceEnvSource(PydanticBaseSettingsSource):
    """The environment and an env file, scoped to ``service``; :attr:`origins` says, per field,
    which variable (or file line) gave its value, or ``"default"``."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        service: str | None,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(settings_cls)
        self._prefix = f"{service.upper()}_" if service else None
        self._environ = os.environ if environ is None else environ
        self._env_file = env_file
        self._file = read_env_file(env_file) if env_file else {}
        self.origins: dict[str, str] = {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The raw value of ``field_name``, the name of where it was found ('' if nowhere), and
        ``False`` (a value is never a complex JSON document here)."""
        var = field_name.upper()
        scoped = f"{self._prefix}{var}" if self._prefix else None
        if scoped and scoped in self._environ:
            return self._environ[scoped], f"env {scoped}", False
        if var in self._environ:
            return self._environ[var], f"env {var}", False
        if scoped and scoped in self._file:
            return self._file[scoped], f"file {self._env_file}: {scoped}", False
        if var in self._file:
            return self._file[var], f"file {self._env_file}: {var}", False
        return None, "", False

    def __call__(self) -> dict[str, Any]:
        """Every field this source has a value for (``service`` is never read from it)."""
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if name == "service":
                continue
            value, origin, _ = self.get_field_value(field, name)
            if origin:
                values[name] = None if (value == "" and name in EMPTY_MEANS_UNSET) else value
                self.origins[name] = origin
            else:
                self.origins[name] = "default"
        return values


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``KEY=value`` lines of a docker-compose style env file, as python-dotenv (the parser
    pydantic-settings' dotenv support uses) reads them: ``#`` comments (whole-line, or after
    whitespace in an unquoted value), quotes, ``export``. No variable expansion (compose's env
    files have none); :class:`ConfigError` if the file cannot be read or a line is malformed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, ["a readable UTF-8 env file"], str(exc)) from None
    out: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        raw = binding.original.string
        lineno = binding.original.line + raw[: len(raw) - len(raw.lstrip())].count("\n")
        if binding.error or (binding.key is not None and binding.value is None):  # `KEY` with no `=`
            line = raw.strip().splitlines()[0] if raw.strip() else raw
            raise ConfigError(f"{path}:{lineno}", line, ["KEY=value"], "malformed env file line")
        if binding.key is not None:
            out[binding.key] = binding.value or ""
    return out
