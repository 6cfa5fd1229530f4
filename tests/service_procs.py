"""Real service processes for the observability tests: ``cdb service NAME`` as a subprocess.

Each process gets its own env file (the operator's ``env/<service>.env``), its own
``METRICS_PORT`` (a free one) and the test's key prefix on the real Redis, so a
flip is what an operator does: edit the env file, stop the process, start it again.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.topics import KeySpace, ServiceName
from harness.local_redis import free_port
from tests.proc_helpers import read_log, spawn_cdb, stop_gracefully

__all__ = ["ServiceProcs", "free_port", "scrape", "service_procs"]


def scrape(port: int, timeout_s: float = 10.0) -> str:
    """The text of ``http://127.0.0.1:<port>/metrics``, waiting for the server to come up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                return str(reply.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@dataclass
class ServiceProcs:
    """The four services as processes under ``keys``; :meth:`close` stops what is left."""

    redis_url: str
    keys: KeySpace
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[ServiceName, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[ServiceName, int] = field(default_factory=dict)

    def env_file(self, service: ServiceName) -> Path:
        """The env file of ``service`` (what the operator edits)."""
        return self.workdir / f"{service.value}.env"

    def write_flags(self, service: ServiceName, *, pydantic: bool, profile: str = "lenient") -> None:
        """Write ``service``'s env file with its migration flags."""
        text = f"USE_PYDANTIC_CONTRACTS={'true' if pydantic else 'false'}\nCONTRACT_PROFILE={profile}\n"
        self.env_file(service).write_text(text, encoding="utf-8")

    def start(self, service: ServiceName, **env: str) -> None:
        """Start ``service`` from its env file (write it first with :meth:`write_flags`)."""
        port = self.ports.setdefault(service, free_port())
        full = {
            "REDIS_URL": self.redis_url,
            "KEY_PREFIX": self.keys.prefix,
            "INSTANCE": f"{service.value}-1",
            "METRICS_PORT": str(port),
            "CONSUMER_BLOCK_MS": "50",
            "WS_REPLAY_PACE": "0",
            **self.extra_env,
            **env,
        }
        args = ["service", service.value, "--env-file", str(self.env_file(service))]
        self.procs[service] = spawn_cdb(args, full, self.workdir / f"{service.value}.log", cwd=self.workdir)

    def stop(self, service: ServiceName, timeout_s: float = 20.0) -> int:
        """SIGTERM ``service`` and wait for it; returns its exit code."""
        return stop_gracefully(self.procs.pop(service), timeout_s)

    def log(self, service: ServiceName) -> str:
        """What ``service`` wrote so far."""
        return read_log(self.workdir / f"{service.value}.log")

    def close(self) -> None:
        """Stop every process still running."""
        for service in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(service)


@contextlib.contextmanager
def service_procs(redis_url: str, keys: KeySpace, workdir: Path, **extra_env: str) -> Iterator[ServiceProcs]:
    """:class:`ServiceProcs` that are stopped when the block ends."""
    procs = ServiceProcs(redis_url, keys, workdir, dict(extra_env))
    try:
        yield procs
    finally:
        procs.close()
