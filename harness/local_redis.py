"""redis-server processes of our own on free 127.0.0.1 ports: for the matrix's Redis-restart
fault, the test suite and the benchmarks. The shared Redis is never restarted by a tool.

Each server keeps an append-only file fsynced on every write, so a restart keeps every
acknowledged write, as a production Redis with AOF would.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from core.errors import ConfigError

__all__ = ["LocalRedisServer", "free_port", "wait_for_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {timeout_s}s")


class LocalRedisServer:
    """Start, kill and restart one redis-server on a free port (blocking calls; use a thread)."""

    def __init__(self, *, port: int | None = None, extra_args: Sequence[str] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError(
                "redis-server", None, ["redis-server on PATH"], "scripts/ensure-servers.sh installs it"
            )
        self._binary = binary
        self.port = port if port is not None else free_port()
        self.extra_args = tuple(extra_args)
        self.workdir = Path(tempfile.mkdtemp(prefix="cdb-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LocalRedisServer:
        """Start the server (again) on the same port and data directory; waits until it answers."""
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", *self.extra_args]
        self.process = subprocess.Popen(
            [self._binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    stop = kill

    def restart(self, downtime_s: float = 0.5) -> None:
        """Kill, stay down for ``downtime_s`` seconds, start again on the same port."""
        self.kill()
        time.sleep(downtime_s)
        self.start()

    def close(self) -> None:
        """Kill the server and remove its files."""
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
