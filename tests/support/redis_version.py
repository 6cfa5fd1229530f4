"""The version of the locally installed redis-server (for rules that depend on it)."""

from __future__ import annotations

import shutil
import subprocess

__all__ = ["local_redis_version"]


def local_redis_version() -> tuple[int, int]:
    """``(major, minor)`` of the ``redis-server`` binary the throwaway servers run."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; scripts/ensure-servers.sh installs it")
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True, timeout=30).stdout
    version = out.split("v=")[1].split()[0]
    major, minor = (int(p) for p in version.split(".")[:2])
    return major, minor
