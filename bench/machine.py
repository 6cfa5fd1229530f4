"""What the benchmark ran on: machine, load, versions, date (for BENCHMARKS.md and .json)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psycopg
import redis

__all__ = ["describe_machine", "load_average"]

PACKAGES = ("pydantic", "pydantic-core", "redis", "hiredis", "faststream", "msgspec", "psycopg", "matplotlib")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (other work on the machine shows here)."""
    return os.getloadavg()


def _rtt_us(url: str) -> float:
    client = redis.Redis.from_url(url)
    try:
        client.ping()
        samples = []
        for _ in range(300):
            start = time.perf_counter()
            client.ping()
            samples.append((time.perf_counter() - start) * 1e6)
        return statistics.median(samples)
    finally:
        client.close()


def describe_machine(redis_url: str, pg_url: str) -> dict[str, Any]:
    """Machine, servers and package versions, with the date and the load average now."""
    client = redis.Redis.from_url(redis_url)
    try:
        redis_version = str(client.info("server").get("redis_version"))
    finally:
        client.close()
    try:
        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            pg_version = str(row[0]) if row else "unknown"
    except psycopg.Error:
        pg_version = "unreachable"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(_memory_gb(), 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis_server": redis_version,
        "redis_ping_us": round(_rtt_us(redis_url), 1),
        "postgresql": pg_version,
        "packages": {p: _version(p) for p in PACKAGES},
        "load_average_start": load_average(),
    }
