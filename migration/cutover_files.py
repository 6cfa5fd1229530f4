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

Files change on disk only; a container reads its env file when it is (re)created,
so the printed ``docker compose up -d --no-deps <service>`` commands do the switch.
"""

from __future__ import annotations

import difflib
import getpass
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import CdbError, ConfigError
from core.settings import ServiceSettings, read_env_file
from core.topics import CodecPath, Profile, ServiceName
from core.utils.clock import now_ms, utcnow

__all__ = [
    "BACKUP_DIR",
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
_MANIFEST = "manifest.json"
_LOG = "cutover.log"
_SAVED = "rolled-back-from"


class CutoverFileError(CdbError):
    """The env files cannot be cut over or rolled back as asked (the message says why)."""


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


def rewrite_env(text: str, service: ServiceName, flags: dict[str, str]) -> str:
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


def _resolve(service: ServiceName, data: bytes) -> ServiceSettings:
    """Read ``data`` the way the container does (env_file entries become the environment)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{service.value}.env"
        path.write_bytes(data)
        return ServiceSettings.load(service, environ=read_env_file(path))


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
            settings = _resolve(service, after)
        except ConfigError as exc:
            raise CutoverFileError(f"{path} would not load after the change: {exc}") from exc
        if not settings.use_pydantic_contracts or settings.contract_profile is not Profile.STRICT:
            raise CutoverFileError(f"{path} would not resolve to {CodecPath.PYDANTIC.value}/strict")
        changes.append(FileChange(service, path, before, after))
    return changes


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


def _log(backup: Path, text: str) -> str:
    line = f"{utcnow().isoformat(timespec='seconds')} {text}\n"
    with (backup / _LOG).open("a", encoding="utf-8") as handle:
        handle.write(line)
    return line.rstrip("\n")


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
    root = env_dir / BACKUP_DIR
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
        "verdict": verdict,
        "forced": forced,
        "reason": reason,
        "files": {c.path.name: {"before": _sha(c.before), "after": _sha(c.after)} for c in changes},
        "evidence": evidence,
    }
    (backup / _MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    for change in changes:
        if change.changed:
            _atomic_write(change.path, change.after)
    names = ", ".join(c.path.name for c in changes if c.changed) or "none"
    why = f' forced reason="{reason}"' if forced else ""
    line = _log(backup, f"apply verdict={verdict}{why} user={manifest['user']} changed={names}")
    return backup, line


def latest_backup(env_dir: Path) -> Path:
    """The newest apply's backup directory."""
    root = env_dir / BACKUP_DIR
    found = sorted(p for p in root.iterdir() if (p / _MANIFEST).is_file()) if root.is_dir() else []
    if not found:
        raise CutoverFileError(f"no cutover backup under {root}: nothing to roll back")
    return found[-1]


def plan_rollback(env_dir: Path, backup: Path, *, force: bool = False) -> list[FileChange]:
    """The files rollback would restore from ``backup``; refuses if they changed since apply."""
    manifest = json.loads((backup / _MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("rolled_back"):
        raise CutoverFileError(
            f"the cutover of {backup.name} was already rolled back ({manifest['rolled_back']})"
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
        raise CutoverFileError(
            f"{', '.join(edited)} changed since the cutover of {backup.name}; "
            "rollback would discard those edits (use --force to roll back anyway)"
        )
    return changes


def rollback(env_dir: Path, backup: Path, changes: list[FileChange]) -> str:
    """Save the current files, restore the backed-up ones byte for byte; returns the log line."""
    saved = backup / _SAVED
    saved.mkdir(exist_ok=True)
    for change in changes:
        (saved / change.path.name).write_bytes(change.before)
        if change.changed:
            _atomic_write(change.path, change.after)
    manifest_path = backup / _MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["rolled_back"] = _stamp(now_ms())
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    names = ", ".join(c.path.name for c in changes if c.changed) or "none"
    return _log(backup, f"rollback user={_user()} restored={names} (replaced files in {_SAVED}/)")


def recreate_commands(order: tuple[ServiceName, ...] = RECREATE_ORDER) -> list[str]:
    """The per-container commands that make the new env files take effect, in order."""
    return [f"docker compose up -d --no-deps {s.value}" for s in order]
