"""Real ``cdb service NAME`` processes for the stop and resume tests: start, signal, wait.

Each process gets a clean environment (no setting leaks in from the test process) plus
what the test gives; its stderr (JSON logs) goes to a file shown when an assertion fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.ops_helpers import CDB, CLEAN_ENV, ROOT, cdb_json

__all__ = ["ServiceProc", "poll", "read_log", "spawn_cdb", "status_rows", "stop_gracefully"]

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


def spawn_cdb(
    args: list[str], env: dict[str, str], log: Path, *, cwd: Path = ROOT, drop_ws_env: bool = False
) -> subprocess.Popen[bytes]:
    """``cdb *args`` in a clean environment (nothing leaks in from the test process but the
    basics) plus ``env``; stdout and stderr appended to ``log``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in CLEAN_ENV and not (drop_ws_env and k.startswith("WS_"))
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(CDB), *args], cwd=cwd, env={**base, **env}, stdout=out, stderr=subprocess.STDOUT
        )


def stop_gracefully(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int:
    """SIGCONT (in case it is paused) and SIGTERM, then wait; killed after ``timeout_s``. The exit code."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def read_log(path: Path, *, tail: int | None = None) -> str:
    """What a process wrote to ``path`` so far (the last ``tail`` characters if given)."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return text[-tail:] if tail else text


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
        self.proc = spawn_cdb(
            ["service", self.name, *self.args],
            {"PYTHONUNBUFFERED": "1", **self.env},
            self.log_dir / f"{self.instance}.log",
            drop_ws_env=True,
        )
        return self

    def log(self) -> str:
        """What the process wrote (JSON log lines)."""
        return read_log(self.log_dir / f"{self.instance}.log", tail=4000)

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
