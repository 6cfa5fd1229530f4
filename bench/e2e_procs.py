"""The processes and servers of an end-to-end run: the services as ``cdb service NAME``
processes, a PostgreSQL database of the run's own, the key prefix to clean up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import redis.asyncio as aioredis

from core.topics import CodecPath, KeySpace, ServiceName

if TYPE_CHECKING:
    from bench.e2e import Setting

__all__ = [
    "CONSUMERS",
    "Database",
    "clean",
    "rss_mb",
    "service_command",
    "service_env",
    "stop",
    "wait_groups",
]

CONSUMERS = (ServiceName.SIGNAL, ServiceName.RISK, ServiceName.EXECUTION)
STREAM_MAXLEN = 300_000
CHECKOUT = Path(__file__).resolve().parents[1]
# ``cdb service NAME``, run from this checkout's code (PYTHONPATH) whatever the venv has installed.
_CDB = [sys.executable, "-c", "from cdb.cli.main import main; main()"]


def service_command(service: ServiceName) -> list[str]:
    """The command line of ``cdb service <service>``."""
    return [*_CDB, "service", service.value]


def service_env(
    setting: Setting,
    service: ServiceName,
    url: str,
    keys: KeySpace,
    db_url: str,
    *,
    lift_limits: bool = False,
    metrics_port: int = 0,
) -> dict[str, str]:
    """The environment of one service process of ``setting`` (also of its comparator).

    ``lift_limits``: risk's position and exposure limits lifted, so every signal becomes an
    order (~4 % of trades instead of a few hundred a run): a stress of execution, which then
    writes PostgreSQL for each, not the pipeline's normal work. ``metrics_port``: where the
    process serves /metrics (its per-hop latency histogram; 0: nowhere)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    if lift_limits:
        env |= {"RISK_MAX_POSITION_NOTIONAL": "1e15", "RISK_MAX_EXPOSURE_NOTIONAL": "1e15"}
    if metrics_port:
        env["METRICS_PORT"] = str(metrics_port)
    if setting.shadow == "inproc" and service is ServiceName.SIGNAL:
        env["CONTRACT_SHADOW"] = "true"
    return env | {
        "PYTHONPATH": str(CHECKOUT),
        "REDIS_URL": url,
        "KEY_PREFIX": keys.prefix,
        "USE_PYDANTIC_CONTRACTS": "true" if setting.paths[service] is CodecPath.PYDANTIC else "false",
        "CONTRACT_PROFILE": "lenient",
        "INSTANCE": f"bench-{service.value}",
        "STREAM_MAXLEN": str(STREAM_MAXLEN),
        "DATABASE_URL": db_url,
    }


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Database:
    """A PostgreSQL database of the benchmark's own, dropped afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"cdb_bench_{uuid.uuid4().hex[:10]}"
        self.url = f"{admin_url.rsplit('/', 1)[0]}/{self.name}"

    def __enter__(self) -> Database:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


async def clean(client: aioredis.Redis, keys: KeySpace) -> None:
    found = [k async for k in client.scan_iter(match=keys.all_keys_pattern(), count=1_000)]
    for i in range(0, len(found), 500):
        await client.unlink(*found[i : i + 500])


async def wait_groups(client: aioredis.Redis, keys: KeySpace, procs: dict[ServiceName, Any]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for service, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{service.value} exited with {proc.returncode} at start")
        ready = 0
        for service in CONSUMERS:
            topic = service.consumes
            assert topic is not None
            with contextlib.suppress(aioredis.ResponseError):
                groups: list[dict[str, Any]] = await client.xinfo_groups(keys.stream(topic))
                ready += any(g["name"] in (keys.group(service), keys.group(service).encode()) for g in groups)
        if ready == len(CONSUMERS):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the services did not create their consumer groups within 60 s")


def stop(procs: dict[ServiceName, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
