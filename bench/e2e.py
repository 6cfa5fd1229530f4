"""End to end: all four services on real Redis and PostgreSQL, one process per consumer.

signal, risk and execution each run as their own process (``cdb service NAME``, exactly as a
container runs them: flags from the environment, execution storing in its own PostgreSQL
database); ws is the benchmark process itself (a ``WsService`` on the same code path as
``cdb service ws``, fed by :class:`bench.e2e_load.Feed`). Per setting, two phases:

1. **capacity**: ws publishes as fast as signal keeps up (at most ``LAG_CAP`` entries
   ahead), for ``seconds``; the figure is market_data entries signal finished per second
   (per-second samples: median and spread), with the downstream backlog at the end.
2. **latency**: ws publishes at a fixed offered ``rate`` (open loop, every 2 ms) for
   ``seconds``; then the pipeline drains and market_data -> order_result (and -> signal)
   latencies of every trade built after the first 2 s are read back from the streams.

Peak RSS (VmHWM) of each service process is read at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.e2e_load import Feed, GroupProgress, backlog, read_latencies, wait_idle
from bench.e2e_procs import (
    CONSUMERS,
    STREAM_MAXLEN,
    Database,
    clean,
    rss_mb,
    service_command,
    service_env,
    stop,
    wait_groups,
)
from bench.machine import ForeignCpu, QuietGate
from bench.stats import Figure, percentile
from core.redis import connect_async
from core.settings import ServiceSettings
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from services.runtime import ServiceContext
from services.ws.service import WsService

__all__ = ["SETTINGS", "E2eResult", "Setting", "run_e2e"]

LAG_CAP = 20_000
WARMUP_S = 2.0  # at most; a fifth of a short (--quick) phase
TICK_S = 0.002
BURST = 1_000
CONTENDED = 0.15  # foreign share of the CPU above which a setting is run again


@dataclass(frozen=True)
class Setting:
    """Which path each service runs on (Pydantic services use the lenient profile)."""

    name: str
    paths: dict[ServiceName, CodecPath]

    def describe(self) -> str:
        """``ws=legacy signal=pydantic ...``."""
        return " ".join(f"{s.value}={p.value}" for s, p in self.paths.items())


SETTINGS = [
    Setting("all-legacy", dict.fromkeys(ServiceName, CodecPath.LEGACY)),
    Setting("all-pydantic", dict.fromkeys(ServiceName, CodecPath.PYDANTIC)),
    Setting(
        "mixed",
        {
            ServiceName.WS: CodecPath.LEGACY,
            ServiceName.SIGNAL: CodecPath.PYDANTIC,
            ServiceName.RISK: CodecPath.LEGACY,
            ServiceName.EXECUTION: CodecPath.PYDANTIC,
        },
    ),
]


@dataclass
class E2eResult:
    """What one setting achieved."""

    setting: Setting
    rate: float = 0.0
    capacity: Figure = field(default_factory=Figure)
    capacity_avg: float = 0.0
    capacity_backlog: dict[str, int] = field(default_factory=dict)
    offered: float = 0.0
    consumed: Figure = field(default_factory=Figure)
    consumed_avg: float = 0.0
    latency_results: list[int] = field(default_factory=list)
    latency_signals: list[int] = field(default_factory=list)
    drained: bool = False
    max_ahead_ms: int = 0
    rss_mb: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    foreign_cpu: dict[str, float] = field(default_factory=dict)
    attempts: int = 1

    @property
    def contended(self) -> float:
        """The larger share of the CPU other processes used during either phase."""
        return max(self.foreign_cpu.values(), default=0.0)

    def latency(self, which: str = "results") -> dict[str, float]:
        """p50/p95/p99/max in ms."""
        values = sorted(self.latency_results if which == "results" else self.latency_signals)
        return {f"p{q}": percentile(values, q) for q in (50, 95, 99)} | {
            "max": float(values[-1]) if values else float("nan"),
            "samples": float(len(values)),
        }


def _warmup(seconds: float) -> float:
    return min(WARMUP_S, seconds / 5)


def _step(seconds: float) -> float:
    return min(1.0, seconds / 10)


async def _capacity(feed: Feed, progress: GroupProgress, seconds: float, result: E2eResult) -> None:
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        done = await progress.sample()
        if feed.sent - done >= LAG_CAP:
            await asyncio.sleep(0.005)
            continue
        await feed.publish(500)
    await progress.sample()
    result.capacity = Figure(progress.rates(start + _warmup(seconds), end + 1, _step(seconds)))
    result.capacity_avg = progress.rate(start + _warmup(seconds), end + 1)


async def _sampler(progress: GroupProgress, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await progress.sample()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def _latency_phase(
    feed: Feed, progress: GroupProgress, rate: float, seconds: float, result: E2eResult
) -> tuple[int, int]:
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sampler(progress, stop))
    start = time.monotonic()
    first_ms = time.time_ns() // 1_000_000 + int(_warmup(seconds) * 1000)
    sent_before = feed.sent
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(rate * elapsed) - (feed.sent - sent_before)
        while due > 0:  # in batches of at most BURST, each stamped when built
            await feed.publish(min(due, BURST))
            due -= BURST
        await asyncio.sleep(TICK_S)
    last_ms = time.time_ns() // 1_000_000
    stop.set()
    await sampler
    elapsed = time.monotonic() - start
    result.offered = (feed.sent - sent_before) / elapsed
    window = (start + _warmup(seconds), start + elapsed + 0.2)
    result.consumed = Figure(progress.rates(*window, _step(seconds)))
    result.consumed_avg = progress.rate(*window)
    return first_ms, last_ms


async def _one(
    setting: Setting, url: str, admin_url: str, *, seconds: float, rate: float, work: Path
) -> E2eResult:
    result = E2eResult(setting, rate=rate)
    keys = KeySpace(f"cdbbench:e2e:{uuid.uuid4().hex[:8]}:")
    client = connect_async(url)
    procs: dict[ServiceName, subprocess.Popen[bytes]] = {}
    try:
        with Database(admin_url) as db:
            for service in CONSUMERS:
                log = (work / f"{setting.name}-{service.value}.log").open("wb")
                procs[service] = subprocess.Popen(
                    service_command(service),
                    env=service_env(setting, service, url, keys, db.url),
                    cwd=work,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            progress = [GroupProgress(client, keys, s) for s in CONSUMERS]
            await wait_groups(client, keys, procs)
            ws_settings = ServiceSettings.load(
                ServiceName.WS,
                environ={},
                overrides={
                    "key_prefix": keys.prefix,
                    "use_pydantic_contracts": setting.paths[ServiceName.WS] is CodecPath.PYDANTIC,
                    "stream_maxlen": STREAM_MAXLEN,
                    "instance": "bench-ws",
                },
            )
            feed = Feed(
                WsService(ServiceContext.create(ServiceName.WS, ws_settings, client), batch_size=5_000)
            )
            server_pid = int((await client.info("server"))["process_id"])
            ours = [os.getpid(), server_pid, *(p.pid for p in procs.values())]
            foreign = ForeignCpu(ours)
            await _capacity(feed, progress[0], seconds, result)
            result.foreign_cpu["capacity"] = foreign.share()
            result.capacity_backlog = {p.service.value: await backlog(p) for p in progress}
            await wait_idle(progress, feed.sent, timeout_s=120)
            feed.max_ahead_ms = 0
            foreign = ForeignCpu(ours)
            first_ms, last_ms = await _latency_phase(feed, progress[0], rate, seconds, result)
            result.foreign_cpu["latency"] = foreign.share()
            result.drained = await wait_idle(progress, feed.sent, timeout_s=120)
            result.max_ahead_ms = feed.max_ahead_ms
            result.latency_results = await read_latencies(
                client, keys, Topic.ORDER_RESULTS, first_ms, last_ms
            )
            result.latency_signals = await read_latencies(client, keys, Topic.SIGNALS, first_ms, last_ms)
            result.rss_mb = {s.value: rss_mb(p.pid) for s, p in procs.items()}
            result.counts = {t.value: int(await client.xlen(keys.stream(t))) for t in Topic}
            result.counts |= {f"{t.value}_dlq": int(await client.xlen(keys.dlq(t))) for t in Topic}
            result.counts["market_data_sent"] = feed.sent
            stop(procs)
    finally:
        stop(procs)
        await clean(client, keys)
        await client.aclose()
    return result


async def run_e2e(
    url: str,
    admin_url: str,
    settings: list[Setting],
    *,
    seconds: float,
    rate: float,
    keep_logs: Path | None = None,
    gate: QuietGate | None = None,
    attempts: int = 3,
) -> list[E2eResult]:
    """Run every setting in turn (capacity, then latency at ``rate``); service logs go to a
    temporary directory (copied to ``keep_logs`` if given).

    A setting during which other processes took more than ``CONTENDED`` of the CPU is run
    again (up to ``attempts`` times in all); the least contended attempt is reported.
    """
    work = Path(tempfile.mkdtemp(prefix="cdb-bench-"))
    try:
        results = []
        for setting in settings:
            best: E2eResult | None = None
            for attempt in range(1, attempts + 1):
                if gate is not None:
                    gate.wait()
                result = await _one(setting, url, admin_url, seconds=seconds, rate=rate, work=work)
                result.attempts = attempt
                if best is None or result.contended < best.contended:
                    best = result
                if best.contended <= CONTENDED:
                    break
            assert best is not None
            results.append(best)
        return results
    finally:
        if keep_logs is not None:
            shutil.copytree(work, keep_logs, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
