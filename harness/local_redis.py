"""redis-server processes of our own on free 127.0.0.1 ports: for the matrix's Redis-restart
fault, the test suite and the benchmarks. The shared Redis is never restarted by a tool.

Each server keeps an append-only file fsynced on every write, so a restart keeps every
acknowledged write, as a production Redis with AOF would.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.errors import ConfigError

__all__ = [
    "LocalRedisServer",
    "ServerDiedError",
    "free_port",
    "free_ports",
    "wait_for_server",
]


_READY = "Ready to accept connections"
"""What redis-server logs once it listens and has loaded its data."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now (held all
    at once while chosen: asked one at a time, the OS may hand out the same port twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


class ServerDiedError(RuntimeError):
    """A server process exited before it answered on its port (its log's last lines say why)."""


def wait_for_server(
    process: subprocess.Popen[bytes], port: int, timeout_s: float = 10.0, *, log: Path | None = None
) -> None:
    """Block until the server ``process`` itself is ready on ``port``, not merely something
    listening there (another process may hold the port): its ``log`` (of this start only) says
    it accepts connections, or, without one, INFO names its pid (a Sentinel; a server with ACL
    users answers no anonymous INFO, so it is waited for by its log). Raises
    :class:`ServerDiedError` as soon as it has exited, ``TimeoutError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    # No retries of its own: each pass of the loop is one try, between checks of the process.
    once = Retry(NoBackoff(), 0)
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5, retry=once)

    def ready() -> bool:
        if log is not None:
            return _READY in log.read_text(encoding="utf-8", errors="replace")
        with contextlib.suppress(redis.RedisError):
            return int(client.info("server")["process_id"]) == process.pid
        return False

    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerDiedError(f"the server for port {port} exited with code {process.returncode}")
            if ready():
                return
            time.sleep(0.02)
    finally:
        client.close()
    raise TimeoutError(f"server pid {process.pid} was not ready on 127.0.0.1:{port} within {timeout_s}s")


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
        self._started = False  # once it has answered: a failed restart keeps its data

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        """The server's own log (what it printed: a failed bind says so here)."""
        return self.workdir / "redis.log"

    def start(self) -> LocalRedisServer:
        """Start the server (again) on the same port and data directory; waits until it answers.
        If it exits first, or does not answer in time, the error quotes the end of its log (a
        port taken meanwhile, say); a first start that fails leaves nothing behind (the caller
        never got the server to close)."""
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", *self.extra_args]
        with self.log.open("wb") as log:  # this start's log only: wait_for_server reads it
            self.process = subprocess.Popen([self._binary, *args], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_server(self.process, self.port, log=self.log)
        except (ServerDiedError, TimeoutError) as exc:
            self.kill()
            error = type(exc)(f"redis-server: {exc}; its log ends: {self._log_tail()}")
            if not self._started:
                self.close()
            raise error from None
        self._started = True
        return self

    def _log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty)"

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
