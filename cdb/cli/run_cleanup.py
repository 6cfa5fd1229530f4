"""What ``cdb run`` leaves behind on real servers, and removing it (unless ``--keep``).

A run on a real Redis writes its streams, groups and live-state keys under its key
prefix; execution writes order results to a PostgreSQL schema ``run_<id>`` or to a
SQLite file ``var/runs/<id>.sqlite3``. By default they go when the run ends. Keys are
only removed under a prefix the run made up itself (``cdb-run-<id>:``): a prefix given
with ``--prefix`` may hold someone else's keys, so those are kept and named.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.redis.modes import AsyncClient
from core.topics import KeySpace

__all__ = ["Leftovers", "remove_keys"]


@dataclass
class Leftovers:
    """Where one run's data is; ``removed`` lists what :meth:`clean` took away."""

    prefix: str
    own_prefix: bool
    real_redis: bool
    schema: str | None
    sqlite: Path | None
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def note_kept(self, keys: int) -> None:
        """Record what stays (``--keep``, or keys under a prefix the user chose)."""
        if self.real_redis and keys:
            self.kept.append(f"{keys} Redis keys under prefix {self.prefix!r}")
        if self.schema:
            self.kept.append(f"PostgreSQL schema {self.schema}")
        if self.sqlite and self.sqlite.exists():
            self.kept.append(f"SQLite file {self.sqlite}")

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {"removed": self.removed, "kept": self.kept}


async def remove_keys(redis: AsyncClient, prefix: str) -> int:
    """Delete every key under ``prefix`` (SCAN + UNLINK, one key at a time: cluster-safe)."""
    removed = 0
    async for key in redis.scan_iter(match=KeySpace(prefix).all_keys_pattern(), count=1000):
        removed += int(await redis.unlink(key))
    return removed


async def count_keys(redis: AsyncClient, prefix: str) -> int:
    """How many keys are under ``prefix``."""
    return len([k async for k in redis.scan_iter(match=KeySpace(prefix).all_keys_pattern(), count=1000)])


def remove_file(path: Path) -> bool:
    """Delete ``path`` (and SQLite's -wal/-shm companions); True when it existed."""
    existed = path.exists()
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
    return existed
