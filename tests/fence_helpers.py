"""Real ``cdb service`` processes sharing partitions on a throwaway Redis: pause, resume, compare.

The hostile scenarios of issue 16 run here as an operator would meet them: several
processes per service with short leases on a redis-server of the test's own, input
published in paced batches (so a pause lands mid-run), and the outputs compared **by
content** with a baseline run at the same partition count.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.codec import build_codec
from core.redis.leases import PartitionLeases
from core.redis.modes import AsyncClient
from core.settings import ServiceSettings
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from services.pipeline import service_backlog
from services.runtime import ServiceContext
from services.ws.service import WsService
from services.ws.trades import Trade
from tests.proc_helpers import read_log, spawn_cdb, stop_gracefully

LEASE_MS = 1_000
"""Short leases: a paused owner loses its partitions within about 1.3 s."""


@dataclass
class Procs:
    """``cdb service`` processes by instance name; :meth:`close` stops what is left."""

    redis_url: str
    keys: KeySpace
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, service: ServiceName, instance: str, **env: str) -> subprocess.Popen[bytes]:
        """Start ``cdb service <service>`` named ``instance``."""
        full = {
            "REDIS_URL": self.redis_url,
            "KEY_PREFIX": self.keys.prefix,
            "TOPIC_PARTITIONS": str(self.keys.partitions),
            "PARTITION_LEASE_MS": str(LEASE_MS),
            "INSTANCE": instance,
            **self.env,
            **env,
        }
        proc = spawn_cdb(["service", service.value], full, self.workdir / f"{instance}.log", cwd=self.workdir)
        self.procs[instance] = proc
        return proc

    def log(self, instance: str) -> str:
        """What ``instance`` wrote so far."""
        return read_log(self.workdir / f"{instance}.log")

    def pause(self, instance: str) -> None:
        """SIGSTOP: the process is frozen, sockets and timers included."""
        self.procs[instance].send_signal(signal.SIGSTOP)

    def resume(self, instance: str) -> None:
        """SIGCONT."""
        self.procs[instance].send_signal(signal.SIGCONT)

    def stop(self, instance: str, timeout_s: float = 20.0) -> int:
        """SIGTERM (after SIGCONT, in case it is paused) and wait; returns the exit code."""
        return stop_gracefully(self.procs.pop(instance), timeout_s)

    def close(self) -> None:
        """Stop every process still running."""
        for instance in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(instance)


@contextlib.contextmanager
def procs(redis_url: str, keys: KeySpace, workdir: Path, **env: str) -> Iterator[Procs]:
    """:class:`Procs` stopped when the block ends."""
    running = Procs(redis_url, keys, workdir, dict(env))
    try:
        yield running
    finally:
        running.close()


def ws_context(redis: AsyncClient, keys: KeySpace, redis_url: str) -> ServiceContext:
    """An in-process ws (the input side is not under test) publishing into ``keys``."""
    settings = ServiceSettings.load(
        ServiceName.WS,
        environ={},
        overrides={
            "key_prefix": keys.prefix,
            "topic_partitions": keys.partitions,
            "redis_url": redis_url,
            "instance": "t-ws",
            "partition_lease_ms": LEASE_MS,
        },
    )
    return ServiceContext.create(ServiceName.WS, settings, redis)


async def publish_paced(
    ws: WsService,
    trades: Sequence[Trade],
    *,
    batch: int,
    gap_s: float,
    after_batch: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    """Publish ``trades`` ``batch`` at a time, ``gap_s`` apart (a run long enough to pause in)."""
    for start in range(0, len(trades), batch):
        await ws.publish_trades(trades[start : start + batch])
        if after_batch is not None:
            await after_batch(min(start + batch, len(trades)))
        await asyncio.sleep(gap_s)


async def wait_idle(
    redis: AsyncClient, keys: KeySpace, services: Sequence[ServiceName], timeout_s: float
) -> None:
    """Until every group of ``services`` has nothing undelivered or pending, seen 3 times in a row."""
    calm = 0
    async with asyncio.timeout(timeout_s):
        while calm < 3:
            backlog = 0
            for service in services:
                backlog += await service_backlog(redis, keys, service)
            calm = calm + 1 if backlog == 0 else 0
            await asyncio.sleep(0.2)


async def owners(redis: AsyncClient, keys: KeySpace, service: ServiceName) -> list[str | None]:
    """The lease holder of each partition of ``service``."""
    leases = PartitionLeases(redis, keys, service, "probe", LEASE_MS)
    return [await leases.owner(p) for p in range(keys.partitions)]


async def wait_owners(
    redis: AsyncClient,
    keys: KeySpace,
    service: ServiceName,
    check: Callable[[list[str | None]], bool],
    timeout_s: float = 20.0,
) -> float:
    """Seconds until ``check(owners)`` holds."""
    started = time.monotonic()
    async with asyncio.timeout(timeout_s):
        while not check(await owners(redis, keys, service)):
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def contents(redis: AsyncClient, keys: KeySpace, topic: Topic, id_field: str) -> dict[str, Any]:
    """Every message of ``topic`` (all partitions) by its id, decoded; a message written more
    than once must be identical each time (else the ids map to a list of the variants)."""
    codec = build_codec(CodecPath.LEGACY)
    out: dict[str, Any] = {}
    for stream in keys.streams(topic):
        for raw_id, fields in await redis.xrange(stream):
            body = codec.from_fields(topic, fields, entry_id=raw_id).message
            data = body.to_dict() if hasattr(body, "to_dict") else dict(vars(body))
            key = str(data[id_field])
            if key in out and out[key] != data:
                previous = out[key]
                out[key] = [*previous, data] if isinstance(previous, list) else [previous, data]
            else:
                out.setdefault(key, data)
    return out


def differences(got: dict[str, Any], want: dict[str, Any]) -> dict[str, list[str]]:
    """Ids missing, extra and differing between two :func:`contents`."""
    return {
        "missing": sorted(want.keys() - got.keys()),
        "extra": sorted(got.keys() - want.keys()),
        "differing": sorted(k for k in got.keys() & want.keys() if got[k] != want[k]),
    }
