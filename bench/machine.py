"""What the benchmark ran on: machine, load, versions, date (for BENCHMARKS.md and .json)."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psycopg
import redis

__all__ = ["ForeignCpu", "QuietGate", "describe_machine", "fixtures_frozen", "load_average"]

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


def python_speed_ms(rounds: int = 5) -> float:
    """Median milliseconds one core takes for a fixed pure-Python workload (a loop of integer
    additions and dict stores, ~1M bytecode steps): how fast this machine runs the services'
    own kind of code, so runs on different machines can be told apart (the absolute msg/s and
    latency targets are one machine's; instruction counts and ratios travel)."""

    def work() -> int:
        seen: dict[int, int] = {}
        total = 0
        for i in range(200_000):
            total += i & 0xFF
            seen[i & 0x3FF] = total
        return total + len(seen)

    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


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
        "python_speed_ms": round(python_speed_ms(), 1),
        "postgresql": pg_version,
        "packages": {p: _version(p) for p in PACKAGES},
        "load_average_start": load_average(),
    }


def _cpu_times() -> tuple[int, int]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values), idle


class QuietGate:
    """Waits, before each round, until the rest of the machine is (nearly) idle.

    Other engineers' test suites share these 2 cores; a round that starts while one runs
    measures the contention, not the code. Between rounds the benchmark itself runs nothing,
    so the busy share of the CPU over ``probe_s`` is everyone else's. Waits at most
    ``max_wait_s`` (then goes on and records how busy it was).
    """

    def __init__(self, max_wait_s: float, threshold: float = 0.15, probe_s: float = 0.5) -> None:
        self.max_wait_s = max_wait_s
        self.threshold = threshold
        self.probe_s = probe_s
        self.busy: list[float] = []
        self.waited_s = 0.0

    def _busy(self) -> float:
        total1, idle1 = _cpu_times()
        time.sleep(self.probe_s)
        total2, idle2 = _cpu_times()
        span = total2 - total1
        return 1.0 - (idle2 - idle1) / span if span > 0 else 0.0

    def wait(self) -> None:
        """Block until the machine is quiet or ``max_wait_s`` passed."""
        if self.max_wait_s <= 0:
            return
        start = time.monotonic()
        busy = self._busy()
        while busy > self.threshold and time.monotonic() - start < self.max_wait_s:
            time.sleep(1.0)
            busy = self._busy()
        self.waited_s += time.monotonic() - start
        self.busy.append(busy)

    def to_json(self) -> dict[str, Any]:
        """How busy the machine was when each round started, and how long was waited."""
        return {
            "max_wait_s": self.max_wait_s,
            "threshold": self.threshold,
            "busy_at_round_start": [round(b, 3) for b in self.busy],
            "waited_s": round(self.waited_s, 1),
        }


def _process_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of stat)


class ForeignCpu:
    """The share of the machine's CPU used by processes other than ``pids`` over a window
    (other engineers' test suites on the shared cores), from /proc jiffies."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[int, int, int]:
        total, idle = _cpu_times()
        return total, idle, sum(_process_ticks(p) for p in self.pids)

    def share(self) -> float:
        """Foreign busy share of all CPU time since construction (0..1)."""
        total1, idle1, ours1 = self._start
        total2, idle2, ours2 = self._snapshot()
        span = total2 - total1
        if span <= 0:
            return 0.0
        busy = span - (idle2 - idle1)
        return max(0.0, (busy - (ours2 - ours1)) / span)


@contextlib.contextmanager
def fixtures_frozen() -> Iterator[None]:
    """Keep the objects alive so far (the benchmark's pre-built input messages) out of the
    cyclic collector's passes while the block runs, as a service's long-lived objects would
    be after start: otherwise every collection walks tens of thousands of fixture models and
    the rounds that happen to trigger one look slower. Applies to every row alike."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
