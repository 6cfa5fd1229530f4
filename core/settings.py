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

import difflib
import os
import socket
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.codec_modes import default_profile, default_use_pydantic
from core.errors import ConfigError
from core.settings_sources import EMPTY_MEANS_UNSET, ServiceEnvSource, origin_name, read_env_file
from core.topics import Profile, RedisMode, ServiceName, Topic
from core.urls import DATABASE_SCHEMES, REDIS_SCHEMES, redact_url, url_problem

__all__ = [
    "BOOL_WORDS",
    "DATABASE_SCHEMES",
    "INSTANCE_PATTERN",
    "MAX_BYTES_LIMIT",
    "REDIS_SCHEMES",
    "ServiceSettings",
    "check_redis_url",
    "read_env_file",
    "redact_url",
    "version_list",
]

BOOL_WORDS = ("true", "false", "1", "0", "yes", "no", "on", "off")
"""Values accepted for a boolean flag (any letter case)."""

MAX_BYTES_LIMIT = 64 * 1024 * 1024
"""Upper bound of the byte-size settings: a message (or a dead letter) past 64 MiB does not
belong in a Redis stream, and one read batch holds CONSUMER_BATCH of them in memory."""

INSTANCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]*$"
"""An instance name: letters, digits and ``. _ : @ + = -``, starting with a letter or digit.
It is part of key names (live status) and of SCAN patterns (``cdb health``), so no blanks
and no glob characters (``* ? [ ] \\``); hostnames and ``<hostname>-<pid>`` qualify."""


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def version_list(text: str) -> list[str]:
    """A comma-separated list of contract versions (``RETIRED_VERSIONS_<TOPIC>``, ``--retired``),
    blanks dropped, in the order given."""
    return [v.strip() for v in text.split(",") if v.strip()]


class ServiceSettings(BaseSettings):
    """Resolved settings of one service instance; build with :meth:`load`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", validate_default=True)

    service: ServiceName | None = Field(default=None, description="Which service these settings are for.")
    use_pydantic_contracts: bool = Field(
        default_factory=default_use_pydantic,
        description="Decode/encode with the v1.0 Pydantic contracts instead of the legacy dataclasses "
        "(default: false while the migration plug-in is installed, else true).",
    )
    contract_profile: Profile = Field(
        default_factory=default_profile,
        description="lenient: fill a missing api_version/timestamp; strict: refuse such messages "
        "(default: lenient while the migration plug-in is installed, else strict).",
    )
    contract_shadow: bool = Field(
        default=False, description="Decode every message on both paths and count differences."
    )
    contract_shadow_sample: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="With CONTRACT_SHADOW: the share of messages decoded twice (1, 0.1 or 1/10), "
        "picked by a hash of the entry id.",
    )
    redis_url: str | None = Field(
        default=None, description="redis://... ; empty = embedded fakeredis (cdb run only)."
    )
    database_url: str | None = Field(
        default=None, description="postgresql://... for order results; empty = SQLite."
    )
    key_prefix: str = Field(default="", description="Prefix of every Redis key, to isolate pipelines.")
    max_message_bytes: int = Field(
        default=65_536,
        ge=256,
        le=MAX_BYTES_LIMIT,
        description="Payloads above this are dead-lettered unparsed.",
    )
    dlq_max_payload_bytes: int | None = Field(
        default=None,
        ge=1_024,
        le=MAX_BYTES_LIMIT,
        description="Raw bytes a dead letter keeps; beyond, only the first ones, the size and a sha256. "
        "Empty: 2 x MAX_MESSAGE_BYTES + 4096.",
    )
    instance: str = Field(
        default_factory=_default_instance,
        min_length=1,
        max_length=128,
        pattern=INSTANCE_PATTERN,
        description="Name of this instance in live status and in its consumer groups.",
    )
    stream_maxlen: int = Field(
        default=1_000_000,
        ge=100,
        le=1_000_000_000,
        description="Approximate MAXLEN of each topic stream (XADD MAXLEN ~).",
    )
    consumer_batch: int = Field(
        default=500, ge=1, le=10_000, description="Stream entries read per XREADGROUP."
    )
    consumer_block_ms: int = Field(
        default=200, ge=1, le=4_000, description="How long one XREADGROUP waits for new entries, in ms."
    )
    reclaim_idle_ms: int = Field(
        default=30_000,
        ge=1_000,
        le=86_400_000,
        description="Pending entries idle this long (ms) are reclaimed (XAUTOCLAIM).",
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Deliveries of a failing entry before it goes to the dead letters.",
    )
    dead_consumer_idle_ms: int = Field(
        default=3_600_000,
        ge=0,
        le=604_800_000,
        description="A consumer idle this long (ms) with nothing pending is removed from its group; "
        "0: never (an instance still removes itself on a clean stop).",
    )
    stop_timeout_ms: int = Field(
        default=5_000,
        ge=500,
        le=600_000,
        description="How long a stop may take (ms) before it is cut short (Redis not answering); "
        "keep it below the container's grace period.",
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
        default=1, ge=1, le=1024, description="Partitions of every topic stream (by symbol); 1 = one stream."
    )
    partition_lease_ms: int = Field(
        default=5_000,
        ge=100,
        le=600_000,
        description="Lease TTL of a partition's owner (ms); bounds a takeover.",
    )
    redis_wait_replicas: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Replicas that must acknowledge each publish (WAIT); 0 = do not wait.",
    )
    redis_wait_timeout_ms: int = Field(
        default=1_000, ge=1, le=60_000, description="How long a publish waits for those replicas (ms)."
    )
    # The contract version this service writes per topic (core/versions/declaration.py); it reads
    # every declared version. Only the produced topic's value matters; each is checked at start.
    produce_version_market_data: str = Field(default="v1.0", description="Version written on market_data.")
    produce_version_signals: str = Field(default="v1.0", description="Version written on signals.")
    produce_version_orders: str = Field(default="v1.0", description="Version written on orders.")
    produce_version_order_results: str = Field(default="v1.0", description="Version on order_results.")

    # Versions retired per topic (docs/changing-a-contract.md, "Retiring the old version"): a
    # consumer dead-letters them (retired_api_version) and no longer reports reading them; a
    # producer may not write one. Written by `cdb versions retire-apply`.
    retired_versions_market_data: str = Field(default="", description="Versions retired on market_data.")
    retired_versions_signals: str = Field(default="", description="Versions retired on signals.")
    retired_versions_orders: str = Field(default="", description="Versions retired on orders.")
    retired_versions_order_results: str = Field(default="", description="Versions retired on order_results.")

    def produce_version(self, topic: Topic) -> str:
        """The contract version this instance writes on ``topic`` (``PRODUCE_VERSION_<TOPIC>``)."""
        return str(getattr(self, f"produce_version_{topic.value}"))

    def retired_versions(self, topic: Topic) -> list[str]:
        """The versions of ``topic`` this instance neither reads nor writes (``RETIRED_VERSIONS_<TOPIC>``,
        comma-separated), in the order given."""
        return version_list(str(getattr(self, f"retired_versions_{topic.value}")))

    @property
    def dlq_payload_limit(self) -> int:
        """Raw bytes a dead letter keeps whole: DLQ_MAX_PAYLOAD_BYTES, or by default twice
        MAX_MESSAGE_BYTES plus 4 KiB, so any message that passed the size check stays whole
        even rendered as a JSON field map (its values' quotes escaped) and replayable."""
        if self.dlq_max_payload_bytes is not None:
            return self.dlq_max_payload_bytes
        return 2 * self.max_message_bytes + 4_096

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

    @field_validator("contract_shadow_sample", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        """``1/10`` means 0.1 (the range check follows)."""
        if isinstance(value, str) and "/" in value:
            top, _, bottom = value.partition("/")
            try:
                return float(top) / float(bottom)
            except (ValueError, ZeroDivisionError):
                raise ValueError("a share such as 1, 0.1 or 1/10") from None
        return value

    @field_validator("contract_profile", "redis_mode", mode="before")
    @classmethod
    def _profile_any_case(cls, value: Any) -> Any:
        """``STRICT`` and ``Lenient`` mean what they say, like the boolean flags' any-case words."""
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("redis_sentinels")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        """Each comma-separated entry is ``host:port`` with a port in 1..65535."""
        for entry in filter(None, (e.strip() for e in value.split(","))):
            host, sep, port = entry.rpartition(":")
            if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"{entry!r} is not host:port")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: str | None) -> str | None:
        """A REDIS_URL redis-py can open: ``redis://``, ``rediss://`` (with a host) or ``unix://``."""
        return _checked_url(value, REDIS_SCHEMES)

    @field_validator("database_url")
    @classmethod
    def _database_url_parses(cls, value: str | None) -> str | None:
        """A DATABASE_URL psycopg can open: ``postgresql://`` (or ``postgres://``)."""
        return _checked_url(value, DATABASE_SCHEMES)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values first, then (inside :meth:`load`) the per-service environment source;
        a bare ``ServiceSettings(...)`` reads nothing but its arguments."""
        source = _ACTIVE_SOURCE.get()
        return (init_settings,) if source is None else (init_settings, source)

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
        source = ServiceEnvSource(cls, service.value if service else None, environ, env_file)
        explicit = _explicit(overrides, cls.model_fields)
        if service is not None:
            explicit["service"] = service
        token = _ACTIVE_SOURCE.set(source)
        try:
            settings = cls(**explicit)
        except ValidationError as exc:
            values, origins = cls.resolve(service, environ=environ, env_file=env_file, overrides=overrides)
            raise _config_error(exc, values, origins) from None
        finally:
            _ACTIVE_SOURCE.reset(token)
        origins = {**source.origins, **{name: "option" for name in explicit if name != "service"}}
        _check_relations(settings, origins)
        return settings

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
        source = ServiceEnvSource(cls, service.value if service else None, environ, env_file)
        values = source()
        origins = dict(source.origins)
        for name, value in _explicit(overrides, cls.model_fields).items():
            values[name], origins[name] = value, "option"
        if service is not None:
            values["service"] = service
        return values, origins


_WHY: dict[str, str] = {
    "max_message_bytes": "a real message needs a few hundred bytes; past 64 MiB it does not belong in Redis",
    "dlq_max_payload_bytes": "a dead letter keeps at least a readable preview, never more than 64 MiB",
    "instance": "it is part of key names and SCAN patterns: no blanks, no glob characters",
    "stream_maxlen": "a shorter stream trims entries consumers have not read yet",
    "consumer_batch": "one read holds the whole batch in memory",
    "consumer_block_ms": "a blocking read must end well before a 5 s socket timeout takes it for a "
    "dead Redis (a false 'Redis down'), and before a clean stop or a lease check is due",
    "reclaim_idle_ms": "a shorter idle time takes entries from a live consumer still handling them",
    "max_deliveries": "past 100 a poison entry keeps a partition busy for minutes",
    "dead_consumer_idle_ms": "0 (never), or at least a minute, so a live consumer is never removed",
    "stop_timeout_ms": "a stop must end inside the container's grace period (10 s), and have time to finish",
    "partition_lease_ms": "a longer lease leaves a dead instance's partitions unread for that long",
    "redis_wait_timeout_ms": "every publish may wait this long",
}


_ACTIVE_SOURCE: ContextVar[ServiceEnvSource | None] = ContextVar("cdb_settings_source", default=None)


def _explicit(overrides: Mapping[str, Any] | None, fields: Mapping[str, object]) -> dict[str, Any]:
    """The overrides actually given (``None`` means "not given"); an empty URL or mode is unset.
    :class:`ConfigError` for a name that is no setting (``fields``): the environment may hold
    anything, but an override is asked for by name, and a misspelt one would be ignored."""
    out = {k: v for k, v in (overrides or {}).items() if v is not None}
    for name in out.keys() - fields.keys():
        near = difflib.get_close_matches(name, list(fields), n=1)
        raise ConfigError(
            "setting", name, sorted(fields), f"did you mean {near[0]!r}?" if near else "no such setting"
        )
    for name in EMPTY_MEANS_UNSET:
        if out.get(name) == "":
            out[name] = None
    return out


def _accepted(name: str) -> tuple[list[str], str]:
    field = ServiceSettings.model_fields[name]
    why = _WHY.get(name, "")
    if field.annotation is bool:
        return list(BOOL_WORDS), "a boolean flag"
    if field.annotation is Profile:
        return [p.value for p in Profile], "the contract profile"
    if name == "redis_mode":
        return [m.value for m in RedisMode], "empty: detected from the server at REDIS_URL"
    if name == "redis_sentinels":
        return ["host:port,host:port"], "the Sentinels' addresses"
    if name == "redis_url":
        return ["redis://[user:password@]host:port/db", "rediss://...", "unix:///path?db=N"], "empty: unset"
    if name == "database_url":
        return ["postgresql://user[:password]@host:port/db"], "empty: SQLite"
    if name == "contract_shadow_sample":
        return ["a number in (0, 1]: 1, 0.1 or 1/10"], "the share of messages shadow mode compares"
    if name == "instance":
        return ["1 to 128 letters, digits or . _ : @ + = -, starting with a letter or digit"], why
    if field.annotation in (int, int | None):
        bounds = [
            f"{op} {getattr(m, attr):_}".replace("_", ",")
            for m in field.metadata
            for attr, op in (("gt", ">"), ("ge", ">="), ("le", "<="))
            if hasattr(m, attr)
        ]
        return [f"an integer {' and '.join(bounds)}" if bounds else "an integer"], why
    return ["a string"], why


def _variable(name: str, origins: Mapping[str, str]) -> str:
    return origin_name(origins.get(name, ""), name.upper())


def _shown(name: str, value: Any) -> Any:
    """What an error may show of a value: a URL without its password."""
    if name in ("redis_url", "database_url") and isinstance(value, str):
        return redact_url(value)
    return value


def _config_error(exc: ValidationError, values: Mapping[str, Any], origins: Mapping[str, str]) -> ConfigError:
    first = exc.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "?"
    accepted, hint = _accepted(name) if name in ServiceSettings.model_fields else (["?"], "")
    if name in ("redis_url", "database_url"):
        # What is wrong with it (e.g. "scheme 'postgresq' is not one of ..."); never the URL itself.
        hint = f"{str(first.get('msg', '')).removeprefix('Value error, ')}; {hint}"
    return ConfigError(_variable(name, origins), _shown(name, values.get(name)), accepted, hint)


def _check_relations(settings: ServiceSettings, origins: Mapping[str, str]) -> None:
    """Bounds between settings, each refused with the variable that breaks it."""
    block, lease = settings.consumer_block_ms, settings.partition_lease_ms
    if 2 * block > lease:
        raise ConfigError(
            _variable("consumer_block_ms", origins),
            block,
            [f"an integer <= PARTITION_LEASE_MS / 2 = {lease // 2}"],
            "a worker checks its partition lease between reads; a read must not outlive half of it",
        )
    if block >= settings.reclaim_idle_ms:
        raise ConfigError(
            _variable("reclaim_idle_ms", origins),
            settings.reclaim_idle_ms,
            [f"an integer > CONSUMER_BLOCK_MS = {block}"],
            "else entries a live consumer is still reading look abandoned",
        )
    _check_produce_versions(settings, origins)
    _check_retired_versions(settings, origins)
    idle = settings.dead_consumer_idle_ms
    if 0 < idle < 60_000:
        raise ConfigError(
            _variable("dead_consumer_idle_ms", origins),
            idle,
            ["0", "an integer >= 60,000"],
            _WHY["dead_consumer_idle_ms"],
        )


def _check_produce_versions(settings: ServiceSettings, origins: Mapping[str, str]) -> None:
    from core.versions.declaration import BASE_VERSION, known_versions  # the contracts load lazily

    for topic in Topic:
        name = f"produce_version_{topic.value}"
        value = settings.produce_version(topic)
        if value not in known_versions(topic):
            raise ConfigError(
                _variable(name, origins),
                value,
                known_versions(topic),
                f"the contract versions declared for {topic.value} (core/versions/declaration.py)",
            )
        # Only the topic this service writes (every topic when none is named): one environment
        # may serve several services (`cdb run`), and another topic's version is its writer's.
        writes = settings.service is None or topic is settings.service.produces
        if writes and value != BASE_VERSION and not settings.use_pydantic_contracts:
            raise ConfigError(
                _variable(name, origins),
                value,
                [BASE_VERSION],
                "the legacy path writes v1.0 only; set USE_PYDANTIC_CONTRACTS=true to write a later version",
            )


def _check_retired_versions(settings: ServiceSettings, origins: Mapping[str, str]) -> None:
    from core.versions.declaration import BASE_VERSION, known_versions, later_versions  # load lazily

    service = settings.service
    for topic in Topic:
        name = f"retired_versions_{topic.value}"
        retired = settings.retired_versions(topic)
        value = getattr(settings, name)
        declared = known_versions(topic)
        if any(v not in declared for v in retired):
            raise ConfigError(
                _variable(name, origins),
                value,
                [f"a comma-separated list of {', '.join(declared)}", "empty"],
                f"the contract versions declared for {topic.value} (core/versions/declaration.py)",
            )
        if service is None or topic not in (service.consumes, service.produces) or not retired:
            continue  # only the topics this service reads or writes constrain it
        if set(declared) <= set(retired):
            raise ConfigError(
                _variable(name, origins),
                value,
                declared,
                f"retiring every version leaves nothing to read on {topic.value}",
            )
        if BASE_VERSION in retired and not settings.use_pydantic_contracts:
            raise ConfigError(
                _variable(name, origins),
                value,
                later_versions(topic),
                f"the legacy path reads and writes {BASE_VERSION} only; "
                "set USE_PYDANTIC_CONTRACTS=true first",
            )
        produce = f"produce_version_{topic.value}"
        if topic is service.produces and settings.produce_version(topic) in retired:
            raise ConfigError(
                _variable(produce, origins),
                settings.produce_version(topic),
                [v for v in declared if v not in retired],
                f"{settings.produce_version(topic)} is retired on {topic.value} "
                f"({_variable(name, origins)}={value}): write a version its consumers still read",
            )


def check_redis_url(url: str, variable: str = "REDIS_URL") -> str:
    """``url`` if redis-py can open it (see :data:`REDIS_SCHEMES`), else a :class:`ConfigError`
    naming ``variable`` that shows the URL without its password; empty passes (unset)."""
    try:
        _checked_url(url or None, REDIS_SCHEMES)
    except ValueError as exc:
        accepted, hint = _accepted("redis_url")
        raise ConfigError(variable, redact_url(url), accepted, f"{exc}; {hint}") from None
    return url


def _checked_url(value: str | None, schemes: tuple[str, ...]) -> str | None:
    # core.urls decides what a usable URL is, and says what is wrong without quoting it.
    if value is None:
        return None
    problem = url_problem(value, schemes)
    if problem is not None:
        raise ValueError(problem)
    return value
