"""Service settings: the migration flags and the connections, validated at start-up.

Each service reads plain variables (``USE_PYDANTIC_CONTRACTS``, ...). When several
services run in one process (``cdb run``), a variable prefixed with the service
name (``SIGNAL_USE_PYDANTIC_CONTRACTS``) overrides the plain one for that service
only. Precedence, highest first: explicit overrides (CLI options), the
service-prefixed variable, the plain variable, an env file (where a prefixed line
likewise beats a plain one), the default.

A value that is not a clear boolean or a known choice stops start-up with a
:class:`~core.errors.ConfigError` naming the variable; it never means "legacy".
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.errors import ConfigError
from core.topics import Profile, RedisMode, ServiceName
from core.urls import DATABASE_SCHEMES, REDIS_SCHEMES, redact_url, url_problem

__all__ = ["BOOL_WORDS", "ServiceSettings", "read_env_file", "redact_url"]

BOOL_WORDS = ("true", "false", "1", "0", "yes", "no", "on", "off")
"""Values accepted for a boolean flag (any letter case)."""


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ServiceSettings(BaseSettings):
    """Resolved settings of one service instance; build with :meth:`load`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", validate_default=True)

    service: ServiceName | None = Field(default=None, description="Which service these settings are for.")
    use_pydantic_contracts: bool = Field(
        default=False,
        description="Decode/encode with the v1.0 Pydantic contracts instead of the legacy dataclasses.",
    )
    contract_profile: Profile = Field(
        default=Profile.LENIENT,
        description="lenient: fill a missing api_version/timestamp; strict: refuse such messages.",
    )
    contract_shadow: bool = Field(
        default=False, description="Decode every message on both paths and count differences."
    )
    redis_url: str | None = Field(
        default=None, description="redis://... ; empty = embedded fakeredis (cdb run only)."
    )
    database_url: str | None = Field(
        default=None, description="postgresql://... for order results; empty = SQLite."
    )
    key_prefix: str = Field(default="", description="Prefix of every Redis key, to isolate pipelines.")
    max_message_bytes: int = Field(
        default=65_536, gt=0, description="Payloads above this are dead-lettered unparsed."
    )
    instance: str = Field(
        default_factory=_default_instance, description="Name of this instance in live status."
    )
    stream_maxlen: int = Field(
        default=1_000_000, gt=0, description="Approximate MAXLEN of each topic stream (XADD MAXLEN ~)."
    )
    consumer_batch: int = Field(default=500, gt=0, description="Stream entries read per XREADGROUP.")
    consumer_block_ms: int = Field(
        default=200, gt=0, description="How long one XREADGROUP waits for new entries, in ms."
    )
    reclaim_idle_ms: int = Field(
        default=30_000, gt=0, description="Pending entries idle this long (ms) are reclaimed (XAUTOCLAIM)."
    )
    max_deliveries: int = Field(
        default=5, gt=0, description="Deliveries of a failing entry before it goes to the dead letters."
    )
    redis_mode: RedisMode | None = Field(
        default=None, description="standalone, cluster or sentinel; empty: detected from the server."
    )
    redis_sentinels: str = Field(
        default="", description="Sentinel addresses host:port,host:port (sentinel mode)."
    )
    redis_sentinel_master: str = Field(
        default="", description="Master name the Sentinels monitor; empty: the only one they monitor."
    )
    topic_partitions: int = Field(
        default=1, gt=0, le=1024, description="Partitions of every topic stream (by symbol); 1 = one stream."
    )
    partition_lease_ms: int = Field(
        default=5_000, ge=100, description="Lease TTL of a partition's owner (ms); bounds a takeover."
    )
    redis_wait_replicas: int = Field(
        default=0, ge=0, description="Replicas that must acknowledge each publish (WAIT); 0 = do not wait."
    )
    redis_wait_timeout_ms: int = Field(
        default=1_000, gt=0, description="How long a publish waits for those replicas (ms)."
    )

    @field_validator("*", mode="before")
    @classmethod
    def _bool_words_only(cls, value: Any, info: ValidationInfo) -> Any:
        """A boolean setting given as text must be one of :data:`BOOL_WORDS` (any case):
        pydantic alone would also take ``t``/``y``/``f``/``n``, which the operator was never told."""
        field = cls.model_fields.get(info.field_name or "")
        is_bool = field is not None and field.annotation is bool
        if is_bool and isinstance(value, str) and value.lower() not in BOOL_WORDS:
            raise ValueError(f"not one of {', '.join(BOOL_WORDS)}")
        return value

    @field_validator("contract_profile", "redis_mode", mode="before")
    @classmethod
    def _profile_any_case(cls, value: Any) -> Any:
        """``STRICT`` and ``Lenient`` mean what they say, like the boolean flags' any-case words."""
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("redis_url", "database_url")
    @classmethod
    def _well_formed_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A URL the driver can use (known scheme, a host, a valid port): a malformed one is
        refused here, before a driver could quote it, password and all, in its error."""
        if value is None:
            return None
        schemes = REDIS_SCHEMES if info.field_name == "redis_url" else DATABASE_SCHEMES
        problem = url_problem(value, schemes)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        """Each comma-separated entry is ``host:port`` with a port in 1..65535."""
        for entry in filter(None, (e.strip() for e in value.split(","))):
            host, sep, port = entry.rpartition(":")
            if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"{entry!r} is not host:port")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only explicit values: :meth:`load` resolves the environment itself, so that
        it can scope variables per service and record where each value came from."""
        return (init_settings,)

    @classmethod
    def load(
        cls,
        service: ServiceName | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> ServiceSettings:
        """Resolve and validate the settings of ``service``; :class:`ConfigError` if any is bad."""
        values, origins = cls.resolve(service, environ=environ, env_file=env_file, overrides=overrides)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise _config_error(exc, values, origins) from None

    @classmethod
    def resolve(
        cls,
        service: ServiceName | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The raw value of every set field and where it came from (variable, file, option)."""
        env = os.environ if environ is None else environ
        file_values = read_env_file(env_file) if env_file else {}
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for name in cls.model_fields:
            if name == "service":
                continue
            var = name.upper()
            scoped = f"{service.value.upper()}_{var}" if service else None
            if overrides and name in overrides and overrides[name] is not None:
                values[name], origins[name] = overrides[name], "option"
            elif scoped and scoped in env:
                values[name], origins[name] = env[scoped], f"env {scoped}"
            elif var in env:
                values[name], origins[name] = env[var], f"env {var}"
            elif scoped and scoped in file_values:
                values[name], origins[name] = file_values[scoped], f"file {env_file}: {scoped}"
            elif var in file_values:
                values[name], origins[name] = file_values[var], f"file {env_file}: {var}"
            else:
                origins[name] = "default"
        for name in ("redis_url", "database_url", "redis_mode"):
            if values.get(name) == "":
                values[name] = None  # an empty URL means "not configured"; an empty mode "detect"
        if service is not None:
            values["service"] = service
        return values, origins


def _accepted(name: str) -> tuple[list[str], str]:
    field = ServiceSettings.model_fields[name]
    if field.annotation is bool:
        return list(BOOL_WORDS), "a boolean flag"
    if field.annotation is Profile:
        return [p.value for p in Profile], "the contract profile"
    if name == "redis_mode":
        return [m.value for m in RedisMode], "empty: detected from the server at REDIS_URL"
    if name == "redis_sentinels":
        return ["host:port,host:port"], "the Sentinels' addresses"
    if field.annotation is int:
        bounds = [
            f"{op} {getattr(m, attr)}"
            for m in field.metadata
            for attr, op in (("gt", ">"), ("ge", ">="), ("le", "<="))
            if hasattr(m, attr)
        ]
        return [f"an integer {' and '.join(bounds)}" if bounds else "an integer"], ""
    return ["a string"], ""


def _config_error(exc: ValidationError, values: Mapping[str, Any], origins: Mapping[str, str]) -> ConfigError:
    first = exc.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "?"
    origin = origins.get(name, "")
    variable = origin.split(" ", 1)[1] if origin.startswith(("env ", "file ")) else name.upper()
    if origin.startswith("file "):
        where, _, key = origin[5:].rpartition(": ")
        variable = f"{key} (in {where})"
    accepted, hint = _accepted(name) if name in ServiceSettings.model_fields else (["?"], "")
    value = values.get(name)
    if name in _URL_FIELDS:
        # The value may hold a password: shown redacted, with what is wrong (never the URL).
        value = redact_url(str(value)) if value is not None else None
        accepted = [_URL_FIELDS[name]]
        hint = str(first.get("msg", "")).removeprefix("Value error, ")
    return ConfigError(variable, value, accepted, hint)


_URL_FIELDS = {
    # No square brackets: the text is printed through rich, which reads them as markup.
    "redis_url": "redis://user:password@host:port/db (user, password, port, db optional; or rediss://, unix://)",
    "database_url": "postgresql://user:password@host:port/database (user, password, port optional)",
}


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a docker-compose style env file: ``KEY=value`` lines, ``#`` comments (whole-line,
    or after whitespace in an unquoted value), quotes, ``export``; :class:`ConfigError` if the
    file cannot be read or a line is malformed."""
    try:
        text_lines = FsPath(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, ["a readable UTF-8 env file"], str(exc)) from None
    out: dict[str, str] = {}
    for lineno, line in enumerate(text_lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export "):
            text = text[len("export ") :].lstrip()
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{lineno}", line, ["KEY=value"], "malformed env file line")
        out[key.strip()] = _env_value(value)
    return out


def _env_value(raw: str) -> str:
    # As docker compose reads it, so `cdb flags --env-file` shows what the container gets:
    # a quoted value ends at its closing quote (a comment may follow); in an unquoted one,
    # " #" starts a comment.
    value = raw.strip()
    if value[:1] in ("'", '"'):
        end = value.find(value[0], 1)
        if end > 0:
            return value[1:end]
    for i, char in enumerate(value):
        if char == "#" and i > 0 and value[i - 1] in " \t":
            return value[:i].rstrip()
    return value
