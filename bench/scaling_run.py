"""One case of ``python -m bench.scaling``: a Redis topology, a partition count, N instances per
consuming service, all as real processes; end-to-end market_data capacity and latency.

Layout per case: the Redis (one throwaway redis-server, or a 3-primary cluster of throwaway
servers; no AOF on either, so the engine is measured, not fsync), a PostgreSQL database of
its own (execution's store, shared by its instances), ``instances`` processes of each of
signal, risk and execution (``cdb service NAME``, flags from the environment, all on the
Pydantic lenient path), and ws in the benchmark process (:class:`bench.e2e_load.Feed`:
fresh trades over 320 symbols, so every partition gets work).

1. **capacity**: ws publishes as fast as signal keeps up (at most ``LAG_CAP`` ahead) for
   ``seconds``; the figure is market_data entries signal's group finished per second (all
   partitions), per-second samples after a warm-up.
2. **latency**: ws publishes at a fixed ``rate`` for ``seconds``; after the drain, latency
   of every trade after the warm-up is read from the streams: trade ms -> signal entry id
   ms, and trade ms -> order_result entry id ms (one clock: this machine's).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from redis.exceptions import ResponseError

from bench.e2e_load import Feed
from bench.stats import Figure, percentile
from core.redis.connection import open_target
from core.redis.modes import AsyncClient, RedisTarget
from core.settings import ServiceSettings
from core.topics import KeySpace, RedisMode, ServiceName, Topic
from harness.local_redis import LocalRedisServer
from harness.local_topologies import LocalRedisCluster
from services.runtime import ServiceContext
from services.ws.service import WsService

__all__ = ["Case", "CaseResult", "run_case"]

CONSUMERS = (ServiceName.SIGNAL, ServiceName.RISK, ServiceName.EXECUTION)
LAG_CAP = 20_000
BURST = 1_000
TICK_S = 0.002
WARMUP_S = 2.0
STREAM_MAXLEN = 300_000
CHECKOUT = Path(__file__).resolve().parents[1]
_CDB = [sys.executable, "-c", "from cdb.cli.main import main; main()"]


@dataclass(frozen=True)
class Case:
    """Where and how wide: ``cluster`` or ``standalone``, partitions, instances per service."""

    topology: str
    partitions: int
    instances: int

    @property
    def name(self) -> str:
        """e.g. ``cluster3 p4 x2``."""
        where = "cluster (3 primaries)" if self.topology == "cluster" else "standalone"
        return f"{where}, {self.partitions} partition(s), {self.instances} instance(s)/service"


@dataclass
class CaseResult:
    """What one case achieved."""

    case: Case
    capacity: Figure = field(default_factory=Figure)
    offered: float = 0.0
    signal_ms: list[int] = field(default_factory=list)
    result_ms: list[int] = field(default_factory=list)
    drained: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def p(self, which: str, q: float) -> float:
        """Percentile ``q`` of the ``which`` (``signal``/``result``) latencies, ms."""
        return percentile(sorted(self.signal_ms if which == "signal" else self.result_ms), q)

    def to_json(self) -> dict[str, Any]:
        """Plain values for the record."""
        return {
            "case": self.case.name,
            "capacity_msg_s": self.capacity.to_json(),
            "offered_msg_s": self.offered,
            "latency_ms": {
                w: {f"p{q}": self.p(w, q) for q in (50, 99)} | {"samples": len(getattr(self, f"{w}_ms"))}
                for w in ("signal", "result")
            },
            "drained": self.drained,
            "counts": self.counts,
        }


class _Progress:
    """Samples what signal's group finished on market_data, summed over partitions."""

    def __init__(self, client: AsyncClient, keys: KeySpace) -> None:
        self.client, self.keys = client, keys
        self.samples: list[tuple[float, int]] = []

    async def groups(self, service: ServiceName) -> list[dict[str, Any]]:
        topic = service.consumes
        assert topic is not None
        out: list[dict[str, Any]] = []
        for stream in self.keys.streams(topic):
            with contextlib.suppress(ResponseError):
                infos: list[dict[str, Any]] = await self.client.xinfo_groups(stream)
                out += [g for g in infos if _text(g["name"]) == self.keys.group(service)]
        return out

    async def done(self) -> int:
        groups = await self.groups(ServiceName.SIGNAL)
        return sum(int(g.get("entries-read") or 0) - int(g["pending"]) for g in groups)

    async def sample(self) -> int:
        done = await self.done()
        self.samples.append((time.monotonic(), done))
        return done

    def rates(self, since: float, until: float) -> list[float]:
        marks: list[tuple[float, int]] = []
        for t, d in self.samples:
            if since <= t <= until and (not marks or t - marks[-1][0] >= 1.0):
                marks.append((t, d))
        return [(d2 - d1) / (t2 - t1) for (t1, d1), (t2, d2) in itertools.pairwise(marks)]

    async def idle(self) -> bool:
        for service in CONSUMERS:
            for g in await self.groups(service):
                if int(g.get("lag") or 0) + int(g["pending"]):
                    return False
        return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _env(case: Case, url: str, keys: KeySpace, db_url: str, instance: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    return env | {
        "PYTHONPATH": str(CHECKOUT),
        "REDIS_URL": url,
        "REDIS_MODE": "cluster" if case.topology == "cluster" else "standalone",
        "KEY_PREFIX": keys.prefix,
        "TOPIC_PARTITIONS": str(case.partitions),
        "USE_PYDANTIC_CONTRACTS": "true",
        "INSTANCE": instance,
        "STREAM_MAXLEN": str(STREAM_MAXLEN),
        "DATABASE_URL": db_url,
    }


def _start_servers(case: Case) -> tuple[str, Any]:
    if case.topology == "cluster":
        cluster = LocalRedisCluster(3, durable=False).start()
        return cluster.url, cluster
    server = LocalRedisServer(extra_args=["--appendonly", "no"]).start()
    return server.url, server


async def _wait_ready(progress: _Progress, procs: list[subprocess.Popen[bytes]], case: Case) -> None:
    """Every consuming service has its group on every partition (and, with several instances,
    each instance took its share: a partition's first owner may hand it over once)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a service process exited at start (see its log)")
        ready = [len(await progress.groups(s)) == case.partitions for s in CONSUMERS]
        if all(ready):
            await asyncio.sleep(6.0 if case.instances > 1 else 0.5)  # leases settle (TTL 5 s)
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the services did not create their groups within 60 s")


async def _capacity(feed: Feed, progress: _Progress, seconds: float, result: CaseResult) -> None:
    start = time.monotonic()
    while time.monotonic() < start + seconds:
        done = await progress.sample()
        if feed.sent - done >= LAG_CAP:
            await asyncio.sleep(0.005)
            continue
        await feed.publish(500)
    await progress.sample()
    result.capacity = Figure(progress.rates(start + min(WARMUP_S, seconds / 5), start + seconds + 1))


async def _latency(feed: Feed, rate: float, seconds: float, result: CaseResult) -> tuple[int, int]:
    start = time.monotonic()
    first_ms = time.time_ns() // 1_000_000 + int(min(WARMUP_S, seconds / 5) * 1000)
    before = feed.sent
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(rate * elapsed) - (feed.sent - before)
        while due > 0:
            await feed.publish(min(due, BURST))
            due -= BURST
        await asyncio.sleep(TICK_S)
    result.offered = (feed.sent - before) / (time.monotonic() - start)
    return first_ms, time.time_ns() // 1_000_000


async def _latencies(
    client: AsyncClient, keys: KeySpace, topic: Topic, first_ms: int, last_ms: int
) -> list[int]:
    name = b"signal_id" if topic is Topic.SIGNALS else b"order_id"
    out: list[int] = []
    for stream in keys.streams(topic):
        start: bytes | str = f"{first_ms}-0"
        while entries := list(await client.xrange(stream, min=start, count=5_000)):
            for entry_id, fields in entries:
                trade_ms = int(json.loads(fields[name]).rsplit("-", 1)[1])
                if first_ms <= trade_ms <= last_ms:
                    out.append(int(entry_id.split(b"-")[0]) - trade_ms)
            start = b"(" + entries[-1][0]
    return out


async def _drain(progress: _Progress, sent: int, timeout_s: float = 120) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await progress.done() >= sent and await progress.idle():
            return True
        await asyncio.sleep(0.1)
    return False


async def run_case(case: Case, admin_url: str, *, seconds: float, rate: float, logs: Path) -> CaseResult:
    """Start the servers, database and services of ``case``, measure, stop and remove everything."""
    result = CaseResult(case)
    url, servers = await asyncio.to_thread(_start_servers, case)
    db_name = f"cdb_bench_{uuid.uuid4().hex[:10]}"
    db_url = f"{admin_url.rsplit('/', 1)[0]}/{db_name}"
    keys = KeySpace(f"cdbbench:scale:{uuid.uuid4().hex[:8]}:", case.partitions)
    procs: list[subprocess.Popen[bytes]] = []
    client: AsyncClient | None = None
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{db_name}"')
        client = await open_target(RedisTarget(url))
        for service in CONSUMERS:
            for i in range(1, case.instances + 1):
                instance = f"bench-{service.value}-{i}"
                procs.append(
                    subprocess.Popen(
                        [*_CDB, "service", service.value],
                        env=_env(case, url, keys, db_url, instance),
                        cwd=logs,
                        stdout=subprocess.DEVNULL,
                        stderr=(logs / f"{instance}.log").open("wb"),
                    )
                )
        progress = _Progress(client, keys)
        await _wait_ready(progress, procs, case)
        mode = RedisMode.CLUSTER if case.topology == "cluster" else RedisMode.STANDALONE
        ws_settings = ServiceSettings.load(
            ServiceName.WS,
            environ={},
            overrides={
                "key_prefix": keys.prefix,
                "topic_partitions": case.partitions,
                "use_pydantic_contracts": True,
                "stream_maxlen": STREAM_MAXLEN,
                "instance": "bench-ws",
                "redis_mode": mode,
            },
        )
        feed = Feed(WsService(ServiceContext.create(ServiceName.WS, ws_settings, client), batch_size=5_000))
        await _capacity(feed, progress, seconds, result)
        await _drain(progress, feed.sent)
        first_ms, last_ms = await _latency(feed, rate, seconds, result)
        result.drained = await _drain(progress, feed.sent)
        result.signal_ms = await _latencies(client, keys, Topic.SIGNALS, first_ms, last_ms)
        result.result_ms = await _latencies(client, keys, Topic.ORDER_RESULTS, first_ms, last_ms)
        result.counts = {"market_data_sent": feed.sent, "dead_letters": 0}
        for topic in Topic:
            result.counts["dead_letters"] += int(await client.xlen(keys.dlq(topic)))
    finally:
        _stop(procs)
        if client is not None:
            await client.aclose()
        await asyncio.to_thread(servers.close)
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    return result


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
