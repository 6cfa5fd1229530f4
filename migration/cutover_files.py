"""``cdb cutover apply / rollback``: the strict flags written into the services' env files.

Apply rewrites ``USE_PYDANTIC_CONTRACTS=true`` and ``CONTRACT_PROFILE=strict`` in
``<env_dir>/<service>.env`` for every service (also a ``<SERVICE>_``-scoped copy of
either variable, which would otherwise win), keeping every other byte of the file.
Before writing, each new file is read back the way the service reads it and must
resolve to pydantic/strict. The originals go to ``<env_dir>/.cutover-backup/<UTC
time>/`` with a ``manifest.json`` (hashes, verdict, reason) and a ``cutover.log``.

Rollback puts the backed-up files back byte for byte. The files it replaces are
saved first (``rolled-back-from/`` in the same backup), and it refuses when they
are not what apply wrote (someone edited them since) unless forced.

The file mechanics (rewrite, backup, manifest, rollback) are core's
(:mod:`core.env_files`), shared with retiring a contract version; this module says
only what the cutover writes and in which order the containers are recreated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import env_files
from core.env_files import BackupKind, EnvFileError, FileChange, resolve_env, rewrite_env
from core.errors import ConfigError
from core.topics import CodecPath, Profile, ServiceName

__all__ = [
    "BACKUP_DIR",
    "CUTOVER",
    "RECREATE_ORDER",
    "STRICT_FLAGS",
    "CutoverFileError",
    "FileChange",
    "apply_changes",
    "latest_backup",
    "plan_cutover",
    "plan_rollback",
    "recreate_commands",
    "rewrite_env",
    "rollback",
]

STRICT_FLAGS = {"USE_PYDANTIC_CONTRACTS": "true", "CONTRACT_PROFILE": "strict"}
"""What apply writes into every service's env file."""

RECREATE_ORDER = (ServiceName.EXECUTION, ServiceName.RISK, ServiceName.SIGNAL, ServiceName.WS)
"""From the end of the pipeline backwards (see the runbook for why)."""

BACKUP_DIR = ".cutover-backup"
CUTOVER = BackupKind(BACKUP_DIR, "cutover.log", "cutover")
"""Where the cutover keeps its backups (never mixed with a version retirement's)."""

CutoverFileError = EnvFileError
"""The env files cannot be cut over or rolled back as asked (the message says why)."""


def plan_cutover(env_dir: Path) -> list[FileChange]:
    """What apply would write, checked to resolve to pydantic/strict; nothing is written."""
    changes = []
    for service in ServiceName:
        path = env_dir / f"{service.value}.env"
        if not path.is_file():
            raise CutoverFileError(f"{path} does not exist: every service needs its env file")
        before = path.read_bytes()
        after = rewrite_env(before.decode("utf-8"), service, STRICT_FLAGS).encode("utf-8")
        try:
            settings = resolve_env(service, after)
        except ConfigError as exc:
            raise CutoverFileError(f"{path} would not load after the change: {exc}") from exc
        if not settings.use_pydantic_contracts or settings.contract_profile is not Profile.STRICT:
            raise CutoverFileError(f"{path} would not resolve to {CodecPath.PYDANTIC.value}/strict")
        changes.append(FileChange(service, path, before, after))
    return changes


def apply_changes(
    env_dir: Path,
    changes: list[FileChange],
    *,
    verdict: str,
    forced: bool,
    reason: str | None,
    evidence: Any,
) -> tuple[Path, str]:
    """Back the files up, write the changed ones, log it; returns (backup dir, log line)."""
    why = f' forced reason="{reason}"' if forced else ""
    record = {"verdict": verdict, "forced": forced, "reason": reason, "evidence": evidence}
    return env_files.apply_changes(
        env_dir, changes, CUTOVER, record=record, summary=f"verdict={verdict}{why}"
    )


def latest_backup(env_dir: Path) -> Path:
    """The newest cutover apply's backup directory."""
    return env_files.latest_backup(env_dir, CUTOVER)


def plan_rollback(env_dir: Path, backup: Path, *, force: bool = False) -> list[FileChange]:
    """The files rollback would restore from ``backup``; refuses if they changed since apply."""
    return env_files.plan_rollback(env_dir, backup, CUTOVER, force=force)


def rollback(env_dir: Path, backup: Path, changes: list[FileChange]) -> str:
    """Save the current files, restore the backed-up ones byte for byte; returns the log line."""
    del env_dir  # the changes carry their paths
    return env_files.rollback(backup, changes, CUTOVER)


def recreate_commands(order: tuple[ServiceName, ...] = RECREATE_ORDER) -> list[str]:
    """The per-container commands that make the new env files take effect, in order."""
    return env_files.recreate_commands(order)
