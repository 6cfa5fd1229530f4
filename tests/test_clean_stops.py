"""Every service stops cleanly on SIGTERM: real ``cdb service`` processes (real Redis, real
PostgreSQL for execution) are stopped mid-stream one by one and recreated; each exits 0
within the stop budget, shows ``stopped`` in ``cdb status`` at once, and the pipeline's
outputs equal an uninterrupted run's on the same trades: nothing lost, nothing twice.

ws runs the ``synthetic`` source here (so it is mid-stream whenever it is stopped), and
the consumers block 4 s per XREADGROUP (CONSUMER_BLOCK_MS), longer than the stop budget:
a stop has to interrupt that wait, not sit it out.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import redis.asyncio as aioredis

from cdb.cli.health import verdict
from cdb.cli.status import instance_row
from core.settings import ServiceSettings
from core.status import LiveState
from core.topics import KeySpace, ServiceName, Topic
from core.utils.clock import now_ms
from services.execution.store import COLUMNS, PostgresStore
from services.pipeline import PipelineResult, run_pipeline, wait_quiescent
from services.ws.synthetic import SyntheticMarket, SyntheticSpec
from services.ws.trades import Trade
from tests.proc_helpers import ServiceProc, poll, status_rows
from tests.run_cleanup import discard_run
from tests.stream_reading import stream_values, trade_key

pytestmark = pytest.mark.integration

SPEC = SyntheticSpec(seed=7, symbols=6, rate=250.0, start_ms=1_767_225_600_000)
_names = itertools.count(1)


@pytest.fixture
def own_database() -> Iterator[str]:
    """A PostgreSQL database of this test's own (execution writes its public schema)."""
    from tests.conftest import PG_ADMIN_URL

    name = f"cdb_stops_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _state(rows: list[dict[str, object]], instance: str) -> object:
    return next((r["state"] for r in rows if r["instance"] == instance), None)


def _position(client: redis.Redis, keys: KeySpace) -> int:
    raw = client.hget(keys.source_positions(), SPEC.identity)
    if not raw:
        return 0
    market = SyntheticMarket(SPEC)
    return market.resume(raw.decode())


def test_clean_stops__sigterm_mid_stream_loses_and_repeats_nothing(
    tmp_path: Path, redis_url: str, redis_sync: redis.Redis, keys: KeySpace, own_database: str
) -> None:
    base = {
        "REDIS_URL": redis_url,
        "KEY_PREFIX": keys.prefix,
        "CONSUMER_BLOCK_MS": "4000",
        "PARTITION_LEASE_MS": "10000",
    }
    extra = {
        ServiceName.WS: {
            "WS_SOURCE": "synthetic",
            "WS_SYNTHETIC_SEED": str(SPEC.seed),
            "WS_SYNTHETIC_SYMBOLS": str(SPEC.symbols),
            "WS_SYNTHETIC_RATE": f"{SPEC.rate:g}",
            "WS_SYNTHETIC_START_MS": str(SPEC.start_ms),
        },
        ServiceName.EXECUTION: {"DATABASE_URL": own_database},
    }
    procs: dict[ServiceName, ServiceProc] = {}
    stops: dict[str, list[float]] = {s.value: [] for s in ServiceName}

    def start(service: ServiceName) -> ServiceProc:
        env = {**base, **extra.get(service, {}), "INSTANCE": f"{service.value}-{next(_names)}"}
        procs[service] = ServiceProc(service.value, env, tmp_path).start()
        return procs[service]

    def live(service: ServiceName) -> bool:
        return _state(status_rows(redis_url, keys.prefix), procs[service].instance) == "live"

    def stop(service: ServiceName) -> None:
        proc = procs[service]
        code, took = proc.terminate()
        assert code == 0, proc.log()
        stops[service.value].append(round(took, 3))
        # The last report says "stopped" before the process exits: no waiting for a TTL.
        assert _state(status_rows(redis_url, keys.prefix), proc.instance) == "stopped"

    def results() -> int:
        return int(redis_sync.xlen(keys.stream(Topic.ORDER_RESULTS)))

    try:
        for service in (ServiceName.SIGNAL, ServiceName.RISK, ServiceName.EXECUTION, ServiceName.WS):
            start(service)
        for service in ServiceName:
            poll(lambda s=service: live(s), timeout_s=60, what=f"{service.value} live")
        poll(lambda: results() >= 3, timeout_s=90, what="order results flowing")
        # Mid-stream, one service at a time: stop it, see it stopped, recreate it, go on.
        for service in (ServiceName.SIGNAL, ServiceName.RISK, ServiceName.EXECUTION, ServiceName.WS):
            before = _position(redis_sync, keys)
            stop(service)
            start(service)
            poll(lambda s=service: live(s), timeout_s=60, what=f"{service.value} live again")
            poll(lambda b=before: _position(redis_sync, keys) > b + 200, timeout_s=60, what="trades flowing")
        stop(ServiceName.WS)
        total = _position(redis_sync, keys)
        assert asyncio.run(_quiescent(redis_url, keys))
        for service in (ServiceName.SIGNAL, ServiceName.RISK, ServiceName.EXECUTION):
            stop(service)
    finally:
        for proc in procs.values():
            proc.close()
    print(f"stop times (s) per service: {stops}")

    market = SyntheticMarket(SPEC)
    market.resume(None)
    trades = [t for t, _ in itertools.islice(market.trades(), total)]
    baseline = asyncio.run(_uninterrupted(redis_url, own_database, trades))
    published = [trade_key(v) for v in stream_values(redis_sync, keys, Topic.MARKET_DATA)]
    assert published == [trade_key(t.as_values()) for t in trades], "every trade once, in order"
    ours = [{c: v[c] for c in COLUMNS} for v in stream_values(redis_sync, keys, Topic.ORDER_RESULTS)]
    assert len(baseline.order_results) >= 3
    assert ours == baseline.order_results
    assert asyncio.run(_rows(own_database)) == baseline.stored_rows


async def _quiescent(redis_url: str, keys: KeySpace) -> bool:
    async with aioredis.Redis.from_url(redis_url) as client:
        return await wait_quiescent(client, keys, timeout_s=90)


async def _rows(database_url: str) -> list[dict[str, object]]:
    store = PostgresStore(database_url)
    try:
        return list(await store.rows())
    finally:
        await store.close()


async def _uninterrupted(redis_url: str, database_url: str, trades: list[Trade]) -> PipelineResult:
    keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:")
    settings = {
        s: ServiceSettings.load(
            s,
            environ={},
            overrides={"key_prefix": keys.prefix, "instance": f"base-{s.value}", "consumer_block_ms": 20},
        )
        for s in ServiceName
    }
    client = aioredis.Redis.from_url(redis_url)
    store = PostgresStore(database_url, schema=f"base_{uuid.uuid4().hex[:8]}")
    try:
        return await run_pipeline(client, settings, trades, store, environ={})
    finally:
        await discard_run(client, store, keys)


def _doc(**changes: object) -> LiveState:
    state = LiveState("risk", "risk-1", "legacy", None, False, "1", started_ms=now_ms() - 60_000)
    state.reported_ms = now_ms()
    for name, value in changes.items():
        setattr(state, name, value)
    return state


@pytest.mark.parametrize(
    ("changes", "shown", "healthy"),
    [
        ({}, "live", True),
        ({"state": "stopped"}, "stopped", False),
        ({"reported_ms": 1}, "stale", False),
        ({"state": "stopped", "reported_ms": 1}, "stopped", False),
    ],
)
def test_live_state__stopped_is_its_own_state_in_status_and_health(
    changes: dict[str, object], shown: str, healthy: bool
) -> None:
    state = _doc(**changes)
    row = instance_row(state, now_ms())
    assert row["state"] == shown
    assert row["stale"] is (shown == "stale")
    ok, reason = verdict([state], ServiceName.RISK, "host", "risk-1", now_ms())
    assert ok is healthy
    assert ("stopped" in reason) is (shown == "stopped")


def test_live_state__a_document_without_state_reads_as_running() -> None:
    raw = _doc().to_json().replace(',"state":"running"', "")
    assert '"state"' not in raw
    assert LiveState.from_json(raw).state == "running"


def test_cdb_run__sigterm_mid_run_stops_the_services_and_says_the_run_is_incomplete(
    tmp_path: Path, redis_url: str, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    import os
    import signal
    import subprocess
    import time

    from services.ws.replay import BUNDLED_TRADES
    from tests.ops_helpers import CDB, CLEAN_ENV, ROOT
    from tests.proc_helpers import STOP_BUDGET_S

    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    args = [str(CDB), "run", "--redis-url", redis_url, "--prefix", keys.prefix, "--data", str(BUNDLED_TRADES)]
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        args, cwd=ROOT, env={**env, "COLUMNS": "200"}, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        poll(
            lambda: redis_sync.exists(keys.stream(Topic.MARKET_DATA)), timeout_s=60, what="the run publishing"
        )
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=STOP_BUDGET_S)
        took = time.monotonic() - started
    finally:
        log.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = (tmp_path / "run.log").read_text()
    assert code == 143, output
    assert "interrupted by SIGTERM" in output
    print(f"cdb run SIGTERM stop: {took:.3f}s")


async def test_cancel_firmly__ends_a_task_that_swallowed_the_first_cancel() -> None:
    from core.utils.tasks import cancel_firmly

    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed >= 3:  # like wait_for on 3.11, losing a cancel now and then
                    raise

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_firmly(task, every_s=0.01), timeout=30)
    assert task.cancelled()
    assert swallowed == 3
