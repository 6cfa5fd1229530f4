"""A compose project of the real stack in a scratch directory, driven the way an operator drives it.

The committed docker-compose.yml, env/ and deploy/ are copied into a temporary project
directory (the runbook edits env files; the checkout's must not change), given a fresh `.env`
(random passwords, free host ports, the images scripts/stack.sh resolved) and run under a
project name of their own, so a run never touches another stack on the same engine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.local_redis import free_ports

ROOT = Path(__file__).resolve().parents[1]
STACK_ENV = ROOT / "var" / "stack.env"
ROLES = ("WS", "SIGNAL", "RISK", "EXECUTION", "OPERATOR", "REPLAY")


def docker_available() -> bool:
    """Whether a Docker engine answers here."""
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def compose_command() -> list[str]:
    """`docker compose` (v2) when the plugin exists, else Debian's `docker-compose` 1.29."""
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return ["docker", "compose"] if v2.returncode == 0 else ["docker-compose"]


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of ``path`` (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def set_env_value(path: Path, key: str, value: str) -> None:
    """Set ``key=value`` in an env file the way an operator's editor would (other lines kept)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = [f"{key}={value}" if ln.split("=", 1)[0].strip() == key else ln for ln in lines]
    if not any(ln.split("=", 1)[0].strip() == key for ln in lines):
        out.append(f"{key}={value}")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


@dataclass
class Stack:
    """One compose project: its directory, name, passwords and ports, and a transcript of the run."""

    directory: Path
    project: str
    env: dict[str, str]
    transcript: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, directory: Path, extra_env: dict[str, str] | None = None) -> Stack:
        """Copy the compose files into ``directory`` and write its `.env`."""
        for name in ("docker-compose.yml", "env", "deploy"):
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, directory / name, ignore=shutil.ignore_patterns(".cutover-backup"))
            else:
                shutil.copy2(src, directory / name)
        env = {f"CDB_ACL_{role}_PASSWORD": secrets.token_hex(16) for role in ROLES}
        env["CDB_POSTGRES_PASSWORD"] = secrets.token_hex(16)
        ports = free_ports(3)  # chosen at once: three distinct ports
        env |= dict(
            zip(("CDB_REDIS_PORT", "CDB_POSTGRES_PORT", "CDB_PROMETHEUS_PORT"), map(str, ports), strict=True)
        )
        if STACK_ENV.exists():
            env.update(read_env(STACK_ENV))
        env.update(extra_env or {})
        (directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
        return cls(directory, f"cdbstack{secrets.token_hex(4)}", env)

    # -- running things -------------------------------------------------------------------------

    def note(self, text: str) -> None:
        """Add a line to the transcript (what an operator would see)."""
        self.transcript.append(text)

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the project directory; its output goes to the transcript."""
        done = subprocess.run(
            list(argv),
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **self.operator_env()},
        )
        shown = " ".join(argv)
        self.note(f"$ {shown}\n{(done.stdout + done.stderr).rstrip()}".rstrip())
        if check and done.returncode != 0:
            raise AssertionError(f"{shown} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def compose(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """`docker compose -p <project> ARGS` in the project directory."""
        return self.run([*compose_command(), "-p", self.project, *args], check=check, timeout=timeout)

    def cdb(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The operator's `cdb` on the host, logged in as cdb-operator."""
        return self.run(
            [str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "cdb"), *args], check=check
        )

    def operator_env(self) -> dict[str, str]:
        """REDIS_URL (operator user) and DATABASE_URL for tools run on the host."""
        password = self.env["CDB_ACL_OPERATOR_PASSWORD"]
        pg = self.env["CDB_POSTGRES_PASSWORD"]
        return {
            "REDIS_URL": f"redis://cdb-operator:{password}@127.0.0.1:{self.env['CDB_REDIS_PORT']}/0",
            "DATABASE_URL": f"postgresql://cdb:{pg}@127.0.0.1:{self.env['CDB_POSTGRES_PORT']}/cdb",
            "COLUMNS": "160",
        }

    def container_ids(self) -> dict[str, str]:
        """Service name -> container id of the project's running containers."""
        out = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        ids: dict[str, str] = {}
        for cid in out:
            name = subprocess.run(
                ["docker", "inspect", "-f", '{{index .Config.Labels "com.docker.compose.service"}}', cid],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            ids[name] = cid
        return ids

    def health(self) -> dict[str, str]:
        """Service name -> docker health status of its container."""
        states: dict[str, str] = {}
        for service, cid in self.container_ids().items():
            states[service] = subprocess.run(
                [
                    "docker",
                    "inspect",
                    "-f",
                    "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
                    cid,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        return states

    def status(self) -> dict[str, Any]:
        """`cdb status --json` as parsed JSON (quietly: not in the transcript)."""
        done = subprocess.run(
            [str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "cdb"), "status", "--json"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **self.operator_env()},
        )
        if done.returncode != 0:
            return {"instances": []}
        parsed: dict[str, Any] = json.loads(done.stdout)
        return parsed

    def live(self) -> dict[str, dict[str, Any]]:
        """Service -> its newest live (not stale, not stopped) instance as `cdb status --json` shows it."""
        newest: dict[str, dict[str, Any]] = {}
        for inst in self.status().get("instances", []):
            if inst.get("stale") or inst.get("state", "live") not in ("live", None):
                continue
            if inst["service"] not in newest or inst["started_ms"] > newest[inst["service"]]["started_ms"]:
                newest[inst["service"]] = inst
        return newest


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.5) -> float:
    """Poll ``check`` until true; the seconds it took. Fails naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
