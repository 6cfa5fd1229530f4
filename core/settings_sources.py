"""Where service settings come from: one pydantic-settings source, and env files read by python-dotenv.

:class:`EnvLayers` is the one rule for where a variable's value comes from: the process
environment over an env file (a variable set in the environment wins over the file's line).
Every setting a service reads goes through it: the flags and connections
(:class:`~core.settings.ServiceSettings`), a service's own settings (``WS_*``, ``SIGNAL_*``,
``RISK_*``, ``EXECUTION_*``: ``services.config``) and ``METRICS_PORT`` / ``METRICS_ADDR``.

:class:`ServiceEnvSource` is a ``PydanticBaseSettingsSource`` (the library's extension
point) that reads a settings class's fields through :class:`EnvLayers`, scopes variables
per service and records where each value came from. Precedence, highest first: explicit
values (CLI options, passed to the settings class itself), the service-prefixed variable
(``SIGNAL_USE_PYDANTIC_CONTRACTS``), the plain variable, an env file (where a prefixed line
likewise beats a plain one), the default.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dotenv.parser import parse_stream
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from core.errors import ConfigError

__all__ = ["EMPTY_MEANS_UNSET", "EnvLayers", "ServiceEnvSource", "origin_name", "read_env_file"]

EMPTY_MEANS_UNSET = ("redis_url", "database_url", "redis_mode", "dlq_max_payload_bytes")
"""Fields where an empty value means "not configured" (a URL), "detect" (the Redis mode) or
"derived" (the dead-letter payload cap)."""


class EnvLayers(Mapping[str, str]):
    """The variables of ``environ`` (default: the process environment) over those of ``env_file``:
    a variable set in the environment wins over the file's line, as docker compose's
    ``environment:`` wins over its ``env_file:``. As a mapping, what a service sees by name."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = None
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.env_file = env_file
        self.file = read_env_file(env_file) if env_file else {}

    def find(self, *names: str) -> tuple[str, str] | None:
        """The value of the first of ``names`` that is set, and where it was set (``env NAME`` or
        ``file F: NAME``); ``None`` if none is. Every name is looked up in the environment before
        any in the file: a service-prefixed line in the file never beats a plain variable."""
        for name in names:
            if name in self.environ:
                return self.environ[name], f"env {name}"
        for name in names:
            if name in self.file:
                return self.file[name], f"file {self.env_file}: {name}"
        return None

    def __getitem__(self, name: str) -> str:
        found = self.find(name)
        if found is None:
            raise KeyError(name)
        return found[0]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self.environ, *self.file]))

    def __len__(self) -> int:
        return len(self.environ.keys() | self.file.keys())


class ServiceEnvSource(PydanticBaseSettingsSource):
    """The fields of ``settings_cls`` from the environment and an env file (:class:`EnvLayers`),
    scoped to ``service``; :attr:`origins` says, per field, which variable (or file line) gave
    its value, or ``"default"``. A field's variable is its name in capitals after the class's
    ``env_prefix`` (``window`` of ``SignalParams``: ``SIGNAL_WINDOW``)."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        service: str | None,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(settings_cls)
        self._scope = f"{service.upper()}_" if service else None
        self._class_prefix = str(settings_cls.model_config.get("env_prefix") or "")
        self._layers = EnvLayers(environ, env_file)
        self.origins: dict[str, str] = {}

    def variable(self, field_name: str) -> str:
        """The variable that sets ``field_name`` (unscoped): ``SIGNAL_WINDOW`` for ``window``."""
        return f"{self._class_prefix}{field_name}".upper()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The raw value of ``field_name``, the name of where it was found ('' if nowhere), and
        ``False`` (a value is never a complex JSON document here)."""
        var = self.variable(field_name)
        names = (f"{self._scope}{var}", var) if self._scope else (var,)
        found = self._layers.find(*names)
        return (found[0], found[1], False) if found else (None, "", False)

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

    def named(self, field_name: str) -> str:
        """How an error names ``field_name``: the variable that gave its value, ``KEY (in F)`` for
        an env file's line, or the field's own variable when nothing set it."""
        return origin_name(self.origins.get(field_name, ""), self.variable(field_name))


def origin_name(origin: str, default: str) -> str:
    """How an error names a setting given its origin (``"env KEY"``, ``"file F: KEY"``, or ``""``
    when nothing set it): the variable, ``KEY (in F)`` for an env file's line, else ``default``."""
    if origin.startswith("file "):
        where, _, key = origin[5:].rpartition(": ")
        return f"{key} (in {where})"
    return origin[4:] if origin.startswith("env ") else default


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
