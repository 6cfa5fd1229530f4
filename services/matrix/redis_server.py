"""A redis-server process of the matrix's own, for the Redis-restart fault.

The shared Redis must never be restarted by a test tool, so a mix under that
fault runs on a throwaway server on a free 127.0.0.1 port, with an append-only
file fsynced on every write: a restart keeps every acknowledged write, as a
production Redis with AOF would.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from core.errors import ConfigError

__all__ = ["LocalRedisServer"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"redis-server did not answer on 127.0.0.1:{port} within {timeout_s}s")


class LocalRedisServer:
    """Start, kill and restart one redis-server on a free port (blocking calls; use a thread)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError(
                "redis-server", None, ["redis-server on PATH"], "needed for --fault redis-restart"
            )
        self._binary = binary
        self.port = _free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="cdb-matrix-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LocalRedisServer:
        """Start the server (again) on the same port and data directory; waits until it answers."""
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        self._process = subprocess.Popen(
            [self._binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(self.port, 10.0)
        return self

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def close(self) -> None:
        """Kill the server and remove its files."""
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
