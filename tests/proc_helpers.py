"""Real ``cdb service NAME`` processes for the stop and resume tests: start, signal, wait.

Each process gets a clean environment (no setting leaks in from the test process) plus
what the test gives; its stderr (JSON logs) goes to a file shown when an assertion fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.ops_helpers import CDB, CLEAN_ENV, ROOT, cdb_json

__all__ = ["ServiceProc", "poll", "status_rows"]

T = TypeVar("T")

STOP_BUDGET_S = 2.0
"""A clean stop must end the process within this (Docker's grace period is longer)."""


def poll(
    check: Callable[[], T | None], *, timeout_s: float = 60.0, every_s: float = 0.05, what: str = ""
) -> T:
    """Call ``check`` until it returns something truthy; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s}s waiting for {what or check}")
        time.sleep(every_s)


def status_rows(redis_url: str, prefix: str) -> list[dict[str, Any]]:
    """``cdb status --json``'s instances under ``prefix``."""
    rows: list[dict[str, Any]] = cdb_json("status", REDIS_URL=redis_url, KEY_PREFIX=prefix)["instances"]
    return rows


@dataclass
class ServiceProc:
    """One ``cdb service NAME`` process."""

    name: str
    env: dict[str, str]
    log_dir: Path
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    stop_times: list[float] = field(default_factory=list)

    @property
    def instance(self) -> str:
        """Its INSTANCE (the name in live status)."""
        return self.env["INSTANCE"]

    def start(self, **env: str) -> ServiceProc:
        """Start it (again), with ``env`` on top of its environment."""
        self.env.update(env)
        base = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV and not k.startswith("WS_")}
        log = (self.log_dir / f"{self.instance}.log").open("ab")
        self.proc = subprocess.Popen(
            [str(CDB), "service", self.name, *self.args],
            cwd=ROOT,
            env={**base, "PYTHONUNBUFFERED": "1", **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def log(self) -> str:
        """What the process wrote (JSON log lines)."""
        path = self.log_dir / f"{self.instance}.log"
        return path.read_text(encoding="utf-8", errors="replace")[-4000:] if path.exists() else ""

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; wait for the exit (at most :data:`STOP_BUDGET_S`); (exit code, seconds)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_BUDGET_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            ignored = f"{self.instance} ignored SIGTERM for {STOP_BUDGET_S}s"
            raise AssertionError(f"{ignored}:\n{self.log()}") from None
        took = time.monotonic() - started
        self.stop_times.append(took)
        return code, took

    def kill(self) -> int:
        """SIGKILL (a crash: nothing runs after it); the exit code."""
        assert self.proc is not None
        self.proc.kill()
        return self.proc.wait()

    def close(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
