"""Rewriting the services' env files with a backup, and restoring them byte for byte.

One mechanism for every operator switch that edits ``<env_dir>/<service>.env``: the strict
cutover (``cdb cutover apply / rollback``, the migration plug-in) and retiring a contract
version (``cdb versions retire-apply / retire-rollback``). Each switch names its own
:class:`BackupKind` (backup directory, log file, what the log calls it), so the two never
restore each other's files.

:func:`rewrite_env` sets variables keeping every other byte of a file. :func:`apply_changes`
saves the originals to ``<env_dir>/<kind.directory>/<UTC time>/`` with a ``manifest.json``
(hashes and the caller's record) and a log, then writes the new files atomically.
:func:`plan_rollback` and :func:`rollback` put the saved files back byte for byte, keeping the
files they replace (``rolled-back-from/``), and refuse when those are not what apply wrote
(someone edited them since) unless forced.

Files change on disk only; a container reads its env file when it is (re)created, so each
switch prints the ``docker compose up -d --no-deps <service>`` commands that do it.
"""

from __future__ import annotations

import difflib
import getpass
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import CdbError
from core.settings import ServiceSettings, read_env_file
from core.topics import ServiceName
from core.utils.clock import now_ms, utcnow

__all__ = [
    "BackupKind",
    "EnvFileError",
    "FileChange",
    "apply_changes",
    "latest_backup",
    "plan_rollback",
    "read_manifest",
    "recreate_commands",
    "resolve_env",
    "rewrite_env",
    "rollback",
]

_MANIFEST = "manifest.json"
_SAVED = "rolled-back-from"


class EnvFileError(CdbError):
    """The env files cannot be changed or rolled back as asked (the message says why)."""


@dataclass(frozen=True)
class BackupKind:
    """Where one kind of switch keeps its backups and what its messages call it."""

    directory: str
    """Directory under the env dir holding one backup per apply (``.cutover-backup``)."""
    log: str
    """Log file inside each backup (``cutover.log``)."""
    noun: str
    """What the messages call one apply (``cutover``)."""


@dataclass(frozen=True)
class FileChange:
    """One env file: its bytes now and the bytes it would get."""

    service: ServiceName
    path: Path
    before: bytes
    after: bytes

    @property
    def changed(self) -> bool:
        """True when writing would change the file."""
        return self.before != self.after

    def diff(self, to_label: str = "after") -> str:
        """A unified diff from the current file to the new one (empty when unchanged)."""
        return "".join(
            difflib.unified_diff(
                self.before.decode("utf-8").splitlines(keepends=True),
                self.after.decode("utf-8").splitlines(keepends=True),
                fromfile=str(self.path),
                tofile=f"{self.path} ({to_label})",
            )
        )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rewrite_env(text: str, service: ServiceName, flags: Mapping[str, str]) -> str:
    """``text`` with each of ``flags`` set: every ``KEY=`` or ``<SERVICE>_KEY=`` line gets the
    new value (an ``export`` prefix and the line ending kept); a missing plain key is appended."""
    scoped = {f"{service.value.upper()}_{k}": v for k, v in flags.items()}
    wanted = {**flags, **scoped}
    seen: set[str] = set()
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        match = re.match(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)(\s*=)", line)
        if match and match.group(2) in wanted:
            body = line.rstrip("\r\n")
            ending = line[len(body) :]
            out.append(f"{match.group(1)}{match.group(2)}{match.group(3)}{wanted[match.group(2)]}{ending}")
            seen.add(match.group(2))
        else:
            out.append(line)
    missing = [k for k in flags if k not in seen]
    if missing and out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    out.extend(f"{k}={flags[k]}\n" for k in missing)
    return "".join(out)


def resolve_env(service: ServiceName, data: bytes) -> ServiceSettings:
    """The settings ``service`` resolves from an env file holding ``data``, read the way the
    container reads it (its entries become the environment); :class:`ConfigError` if invalid."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{service.value}.env"
        path.write_bytes(data)
        return ServiceSettings.load(service, environ=read_env_file(path))


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%S") + f"{ms % 1000:03d}Z"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return "unknown"


def _log(backup: Path, kind: BackupKind, text: str) -> str:
    line = f"{utcnow().isoformat(timespec='seconds')} {text}\n"
    with (backup / kind.log).open("a", encoding="utf-8") as handle:
        handle.write(line)
    return line.rstrip("\n")


def apply_changes(
    env_dir: Path,
    changes: list[FileChange],
    kind: BackupKind,
    *,
    record: Mapping[str, Any],
    summary: str,
) -> tuple[Path, str]:
    """Back the files up, write the changed ones, log it; returns (backup dir, log line).

    ``record`` goes into the manifest beside the file hashes (the verdict, its evidence, ...);
    ``summary`` into the log line (``apply <summary> user=... changed=...``)."""
    root = env_dir / kind.directory
    stamp = _stamp(now_ms())
    backup = root / stamp
    n = 1
    while backup.exists():
        n += 1
        backup = root / f"{stamp}-{n}"
    backup.mkdir(parents=True)
    for change in changes:
        (backup / change.path.name).write_bytes(change.before)
    manifest = {
        "created": stamp,
        "user": _user(),
        **record,
        "files": {c.path.name: {"before": _sha(c.before), "after": _sha(c.after)} for c in changes},
    }
    (backup / _MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    for change in changes:
        if change.changed:
            _atomic_write(change.path, change.after)
    names = ", ".join(c.path.name for c in changes if c.changed) or "none"
    line = _log(backup, kind, f"apply {summary} user={manifest['user']} changed={names}")
    return backup, line


def latest_backup(env_dir: Path, kind: BackupKind) -> Path:
    """The newest apply's backup directory of ``kind``."""
    root = env_dir / kind.directory
    found = sorted(p for p in root.iterdir() if (p / _MANIFEST).is_file()) if root.is_dir() else []
    if not found:
        raise EnvFileError(f"no {kind.noun} backup under {root}: nothing to roll back")
    return found[-1]


def read_manifest(backup: Path) -> dict[str, Any]:
    """The manifest apply wrote into ``backup``."""
    data: dict[str, Any] = json.loads((backup / _MANIFEST).read_text(encoding="utf-8"))
    return data


def plan_rollback(env_dir: Path, backup: Path, kind: BackupKind, *, force: bool = False) -> list[FileChange]:
    """The files rollback would restore from ``backup``; refuses if they changed since apply."""
    manifest = read_manifest(backup)
    if manifest.get("rolled_back"):
        raise EnvFileError(
            f"the {kind.noun} of {backup.name} was already rolled back ({manifest['rolled_back']})"
        )
    changes = []
    edited = []
    for name, sums in manifest["files"].items():
        path = env_dir / name
        now = path.read_bytes() if path.exists() else b""
        if _sha(now) != sums["after"]:
            edited.append(name)
        service = ServiceName(name.removesuffix(".env"))
        changes.append(FileChange(service, path, now, (backup / name).read_bytes()))
    if edited and not force:
        raise EnvFileError(
            f"{', '.join(edited)} changed since the {kind.noun} of {backup.name}; "
            "rollback would discard those edits (use --force to roll back anyway)"
        )
    return changes


def rollback(backup: Path, changes: list[FileChange], kind: BackupKind) -> str:
    """Save the current files, restore the backed-up ones byte for byte; returns the log line."""
    saved = backup / _SAVED
    saved.mkdir(exist_ok=True)
    for change in changes:
        (saved / change.path.name).write_bytes(change.before)
        if change.changed:
            _atomic_write(change.path, change.after)
    manifest = read_manifest(backup)
    manifest["rolled_back"] = _stamp(now_ms())
    (backup / _MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    names = ", ".join(c.path.name for c in changes if c.changed) or "none"
    return _log(backup, kind, f"rollback user={_user()} restored={names} (replaced files in {_SAVED}/)")


def recreate_commands(order: Iterable[ServiceName]) -> list[str]:
    """The per-container commands that make the new env files take effect, in ``order``."""
    return [f"docker compose up -d --no-deps {s.value}" for s in order]
