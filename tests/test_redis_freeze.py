"""Redis frozen, not gone: the server stops answering but keeps its connections open (a hung
process, a network blackhole), simulated with SIGSTOP on a throwaway redis-server. The four
``cdb service`` processes must still stop on SIGTERM inside a container's grace period.

Before STOP_TIMEOUT_MS, each clean-stop step (the last ack, the position, the "stopped"
report, the instance claim) waited out 5 s socket timeouts under the transport's retries:
every service still ran more than 60 s after SIGTERM, so Docker killed it.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic
from services.execution.store import COLUMNS, SqliteStore
from services.pipeline import PipelineResult, run_pipeline, wait_quiescent
from services.ws.synthetic import SyntheticMarket, SyntheticSpec
from services.ws.trades import Trade
from tests.proc_helpers import poll, read_log, spawn_cdb
from tests.stream_reading import stream_values, trade_key
from tests.support.servers import ThrowawayRedis
from tests.test_ws_outage import _resent_block

pytestmark = pytest.mark.integration

SPEC = SyntheticSpec(seed=7, symbols=6, rate=250.0, start_ms=1_767_225_600_000)
HANG_S = 40.0
"""Generous: a stop cut short takes STOP_TIMEOUT_MS (5 s) and a little; only a hang exceeds it."""


@pytest.fixture
def frozen_able() -> Iterator[ThrowawayRedis]:
    """A throwaway redis-server, thawed (SIGCONT) before it is removed."""
    server = ThrowawayRedis().start()
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)
    server.close()


def _start_all(
    server: ThrowawayRedis, keys: KeySpace, workdir: Path
) -> dict[ServiceName, subprocess.Popen[bytes]]:
    base = {"REDIS_URL": server.url, "KEY_PREFIX": keys.prefix, "PYTHONUNBUFFERED": "1"}
    ws = {
        "WS_SOURCE": "synthetic",
        "WS_SYNTHETIC_SEED": str(SPEC.seed),
        "WS_SYNTHETIC_SYMBOLS": str(SPEC.symbols),
        "WS_SYNTHETIC_RATE": f"{SPEC.rate:g}",
        "WS_SYNTHETIC_START_MS": str(SPEC.start_ms),
    }
    procs = {}
    for service in ServiceName:
        env = {**base, **(ws if service is ServiceName.WS else {}), "INSTANCE": f"{service.value}-1"}
        procs[service] = spawn_cdb(
            ["service", service.value], env, workdir / f"{service.value}.log", cwd=workdir
        )
    return procs


def test_service__sigterm_while_redis_is_frozen__every_service_exits_2_within_the_stop_timeout(
    tmp_path: Path, frozen_able: ThrowawayRedis
) -> None:
    keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:")
    procs = _start_all(frozen_able, keys, tmp_path)
    codes: dict[str, object] = {}
    try:
        with redis.Redis.from_url(frozen_able.url, socket_timeout=2) as client:
            poll(
                lambda: client.xlen(keys.stream(Topic.ORDER_RESULTS)) >= 1,
                timeout_s=90,
                what="results flowing",
            )
        assert frozen_able.process is not None
        frozen_able.process.send_signal(signal.SIGSTOP)
        time.sleep(6)  # past a socket timeout: every service is inside its retries now
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + HANG_S
        for service, proc in procs.items():
            try:
                codes[service.value] = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[service.value] = "still running"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    logs = {s.value: read_log(tmp_path / f"{s.value}.log") for s in ServiceName}
    assert codes == {s.value: 2 for s in ServiceName}, {s: logs[s][-1500:] for s in logs}
    for service, text in logs.items():
        assert text.count('"service.stop_cut_short"') == 1, (service, text[-1500:])
        assert "did not stop within STOP_TIMEOUT_MS=5000" in text, (service, text[-1500:])


def _position(client: redis.Redis, keys: KeySpace) -> int:
    raw = client.hget(keys.source_positions(), SPEC.identity)
    return SyntheticMarket(SPEC).resume(raw.decode()) if raw else 0


def test_services__redis_frozen_12s_mid_stream__they_notice_resume_and_trade_as_without_the_freeze(
    tmp_path: Path, frozen_able: ThrowawayRedis
) -> None:
    keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:")
    procs = _start_all(frozen_able, keys, tmp_path)
    codes: dict[str, int] = {}
    client = redis.Redis.from_url(frozen_able.url, socket_timeout=2)
    try:
        poll(lambda: client.xlen(keys.stream(Topic.ORDER_RESULTS)) >= 3, timeout_s=90, what="results flowing")
        assert frozen_able.process is not None
        frozen_able.process.send_signal(signal.SIGSTOP)
        time.sleep(12)  # past the socket timeout (5 s) and the partition leases (5 s)
        frozen_able.process.send_signal(signal.SIGCONT)
        thawed = _position(client, keys)
        poll(lambda: _position(client, keys) > thawed + 500, timeout_s=90, what="trades flowing again")
        assert all(p.poll() is None for p in procs.values()), "a service ended by itself"
        for service in ServiceName:  # ws first: the consumers then drain what it published
            procs[service].send_signal(signal.SIGTERM)
            codes[service.value] = procs[service].wait(timeout=HANG_S)
            if service is ServiceName.WS:
                assert asyncio.run(_quiescent(frozen_able.url, keys))
        total = _position(client, keys)
        published = [trade_key(v) for v in stream_values(client, keys, Topic.MARKET_DATA)]
        ours = [{c: v[c] for c in COLUMNS} for v in stream_values(client, keys, Topic.ORDER_RESULTS)]
    finally:
        client.close()
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    logs = {s.value: read_log(tmp_path / f"{s.value}.log") for s in ServiceName}
    assert codes == {s.value: 0 for s in ServiceName}, {s: logs[s][-1500:] for s in logs}
    for service in (ServiceName.SIGNAL, ServiceName.RISK, ServiceName.EXECUTION):
        # Noticed and logged: by its consumer (a read or an ack timed out), or by its publisher
        # when the freeze caught it publishing its output (signal and risk publish too).
        retried = [e for e in ('"consumer.retry"', '"publish.retry"') if e in logs[service.value]]
        assert retried, (service, logs[service.value][-1500:])
    market = SyntheticMarket(SPEC)
    market.resume(None)
    trades = [t for t, _ in itertools.islice(market.trades(), total)]
    # Frozen between running the XADD and writing its reply, Redis keeps the entries and ws, never
    # told, sends them again: one block where the freeze began (at-least-once; signal dedupes).
    assert _resent_block(published, [trade_key(t.as_values()) for t in trades]) is not None, (
        "in order, none lost"
    )
    baseline = asyncio.run(_uninterrupted(frozen_able.url, tmp_path / "baseline.sqlite3", trades))
    assert len(baseline.order_results) >= 3
    assert ours == baseline.order_results, "the same orders, none lost, none twice"
    assert asyncio.run(_rows(tmp_path / "var" / "execution.sqlite3")) == baseline.stored_rows


async def _quiescent(url: str, keys: KeySpace) -> bool:
    async with aioredis.Redis.from_url(url) as client:
        return await wait_quiescent(client, keys, timeout_s=90)


async def _rows(path: Path) -> list[dict[str, object]]:
    store = SqliteStore(path)
    try:
        return list(await store.rows())
    finally:
        await store.close()


async def _uninterrupted(url: str, path: Path, trades: list[Trade]) -> PipelineResult:
    keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:")
    overrides = {"redis_url": url, "key_prefix": keys.prefix, "consumer_block_ms": 20}
    settings = {
        s: ServiceSettings.load(s, environ={}, overrides={**overrides, "instance": f"base-{s.value}"})
        for s in ServiceName
    }
    store = SqliteStore(path)
    async with aioredis.Redis.from_url(url) as client:
        try:
            return await run_pipeline(client, settings, trades, store, environ={})
        finally:
            await store.close()
