"""Retiring a contract version in the services' env files (``cdb versions retire-apply``).

After a GO of :func:`core.versions.retire.retire_check`, retiring ``V`` of topic ``T`` writes,
in the env file of the producer of ``T`` and of every consumer of ``T``:

- ``RETIRED_VERSIONS_<T>`` with ``V`` added: a consumer then dead-letters a ``V`` message
  (``retired_api_version``) and no longer reports reading ``V``, so the live gate refuses any
  producer that would write it again;
- in the producer's file, when it still resolves to a retired version, ``PRODUCE_VERSION_<T>``
  moved to the newest version every running consumer reads (:func:`retire_target`).

Nothing else changes, and a file that already says so is left as it is (re-applying is a
no-op). Each new file is read back the way its service reads it and must load and resolve to
the retirement. The backup, manifest, log and byte-for-byte rollback are :mod:`core.env_files`'s,
kept apart from the strict cutover's (:data:`RETIREMENT`).
"""

from __future__ import annotations

from pathlib import Path

from core.env_files import BackupKind, EnvFileError, FileChange, resolve_env, rewrite_env
from core.errors import ConfigError
from core.settings import ServiceSettings
from core.status import LiveState
from core.topics import ServiceName, Topic
from core.versions.declaration import known_versions, version_key
from core.versions.live import readable_by

__all__ = [
    "RETIREMENT",
    "plan_retirement",
    "produce_flag",
    "retire_services",
    "retire_target",
    "retired_flag",
]

RETIREMENT = BackupKind(".versions-backup", "versions.log", "retirement")
"""Where retirements keep their backups (``<env_dir>/.versions-backup/<UTC time>/``)."""


def retired_flag(topic: Topic) -> str:
    """The variable listing the versions retired on ``topic``."""
    return f"RETIRED_VERSIONS_{topic.value.upper()}"


def produce_flag(topic: Topic) -> str:
    """The variable naming the version a producer writes on ``topic``."""
    return f"PRODUCE_VERSION_{topic.value.upper()}"


def retire_services(topic: Topic) -> list[ServiceName]:
    """The services whose env files a retirement on ``topic`` edits, in recreate order: the
    producer first (it stops writing the version), then the consumers (they stop reading it)."""
    producers = [s for s in ServiceName if s.produces is topic]
    return producers + [s for s in ServiceName if s.consumes is topic]


def retire_target(topic: Topic, version: str, consumers: list[LiveState]) -> str:
    """The newest declared version of ``topic`` other than ``version`` that every one of the
    running ``consumers`` reads (every declared one when none reports); :class:`EnvFileError`
    when there is none."""
    candidates = [v for v in known_versions(topic) if v != version]
    for state in consumers:
        readable = set(readable_by(state, topic))
        candidates = [v for v in candidates if v in readable]
    if not candidates:
        readers = ", ".join(f"{s.service}/{s.instance}" for s in consumers)
        raise EnvFileError(
            f"no version of {topic.value} but {version} is read by every running consumer ({readers}): "
            "nothing for its producer to write instead"
        )
    return max(candidates, key=version_key)


def _flags(
    service: ServiceName, topic: Topic, version: str, now: ServiceSettings, target: str
) -> dict[str, str]:
    retired = now.retired_versions(topic)
    flags: dict[str, str] = {}
    if version not in retired:
        flags[retired_flag(topic)] = ",".join(sorted({*retired, version}, key=version_key))
    if service.produces is topic and now.produce_version(topic) in {*retired, version}:
        flags[produce_flag(topic)] = target
    return flags


def plan_retirement(env_dir: Path, topic: Topic, version: str, target: str) -> list[FileChange]:
    """What retiring ``version`` of ``topic`` writes (a producer writing a retired version moves
    to ``target``), checked by loading each new file as its service would; nothing is written."""
    if version not in known_versions(topic):
        raise EnvFileError(f"{version} is not a declared version of {topic.value}")
    changes = []
    for service in retire_services(topic):
        path = env_dir / f"{service.value}.env"
        if not path.is_file():
            raise EnvFileError(f"{path} does not exist: {service.value} reads or writes {topic.value}")
        before = path.read_bytes()
        try:
            now = resolve_env(service, before)
        except ConfigError as exc:
            raise EnvFileError(f"{path} does not load now: {exc}") from exc
        flags = _flags(service, topic, version, now, target)
        after = rewrite_env(before.decode("utf-8"), service, flags).encode("utf-8") if flags else before
        try:
            settings = resolve_env(service, after)
        except ConfigError as exc:
            raise EnvFileError(f"{path} would not load after the change: {exc}") from exc
        if version not in settings.retired_versions(topic):
            raise EnvFileError(f"{path} would not resolve to {retired_flag(topic)} holding {version}")
        changes.append(FileChange(service, path, before, after))
    return changes
