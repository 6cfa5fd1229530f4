"""Recovery after a forced strict cutover, followed as docs/migration-runbook.md writes it.

Real Redis and PostgreSQL, the in-process pipeline on the bundled trades (as ``cdb run``).
The baseline: every service as before the incident (ws legacy, signal Pydantic lenient, risk
and execution legacy; equal to all-legacy, as the matrix shows). The incident: signal is
recreated strict while ws still sends legacy-shaped trades (no ``api_version``), so it
dead-letters every trade for a while; ws keeps publishing throughout.

Two recoveries are compared with the baseline:

- the old runbook (roll back, recreate signal, ``cdb dlq replay --all``): the replay
  appends the trades behind newer ones and the strategy ignores them as stale. The tool
  now says so before writing and refuses; forced with ``--include-stale`` it reproduces
  the loss the issue reports (the "before" figure);
- the new runbook ("Recovery after a forced strict cutover"): stop signal, roll its flags
  back, ``cdb dlq catch-up``, start signal: signals, orders and fills equal the baseline.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.topics import KeySpace, ServiceName, Topic
from harness.matrix.inputs import Kind, injected_entries
from services.execution.store import PostgresStore
from services.pipeline import run_pipeline
from services.pipeline_control import PipelineHook, PipelineRun
from services.ws.replay import BUNDLED_TRADES, load_trades
from tests.ops_helpers import CDB, CLEAN_ENV, cdb
from tests.recovery_helpers import Incident, Inject, business, env_settings, stop, write_env

pytestmark = pytest.mark.integration

BATCH = 100
STRICT_AT, STOP_AT, RECOVER_AT = 600, 1500, 1800


@pytest.fixture
async def space(redis_url: str) -> AsyncIterator[list[KeySpace]]:
    """Key spaces created by the test; every key under them is deleted afterwards."""
    made: list[KeySpace] = []
    yield made
    client = aioredis.Redis.from_url(redis_url)
    for keys in made:
        found = [k async for k in client.scan_iter(match=keys.all_keys_pattern(), count=1000)]
        if found:
            await client.unlink(*found)
    await client.aclose()


def _before_incident(env_dir: Path) -> None:
    for service in ServiceName:
        write_env(env_dir, service, pydantic=service is ServiceName.SIGNAL)


async def _run(
    redis_url: str, pg_url: str, env_dir: Path, spaces: list[KeySpace], *hooks: PipelineHook
) -> tuple[dict[str, list[dict[str, Any]]], KeySpace]:
    keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:")
    spaces.append(keys)
    client = aioredis.Redis.from_url(redis_url)
    store = PostgresStore(pg_url, schema=f"rec_{uuid.uuid4().hex[:8]}")
    try:
        settings = {s: env_settings(env_dir, s, keys, redis_url) for s in ServiceName}
        result = await run_pipeline(
            client,
            settings,
            load_trades(BUNDLED_TRADES),
            store,
            environ={},
            ws_batch=BATCH,
            hooks=list(hooks),
            timeout_s=120,
        )
        assert result.quiescent
        content = await business(client, keys)
        stored = await store.rows()
        assert len(stored) == len(content["order_results"])
        return content, keys
    finally:
        await store.drop_schema()
        await store.close()
        await client.aclose()


def _opts(redis_url: str, keys: KeySpace) -> list[str]:
    return ["--redis-url", redis_url, "--prefix", keys.prefix]


async def _cdb_json(*args: str, expect: int = 0) -> Any:
    """``cdb ARGS --json`` as the operator runs it: a real process (the pipeline keeps running)."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    proc = await asyncio.create_subprocess_exec(
        str(CDB), *args, "--json", stdout=PIPE, stderr=PIPE, env={**env, "COLUMNS": "250"}
    )
    out, err = await proc.communicate()
    assert proc.returncode == expect, (out + err).decode()
    return json.loads(out)


def _fills(content: dict[str, list[dict[str, Any]]]) -> int:
    return sum(1 for r in content["order_results"] if r["status"] in ("FILLED", "PARTIALLY_FILLED"))


async def test_runbook_recovery_after_forced_strict__trades_equal_the_baseline(
    redis_url: str, pg_database: str, tmp_path: Path, space: list[KeySpace]
) -> None:
    env_dir = tmp_path / "env"
    _before_incident(env_dir)
    baseline, _ = await _run(redis_url, pg_database, env_dir, space)
    seen: dict[str, Any] = {}

    async def at_stop(incident: Incident, run: PipelineRun) -> None:
        opts = _opts(redis_url, run.keys)
        # Runbook step 1 is to stop the strict consumer: while it runs, catch-up refuses.
        running = await _cdb_json("dlq", "catch-up", "--topic", "market_data", *opts, expect=1)
        seen["refused_while_running"] = running["refused"]
        await stop(run, ServiceName.SIGNAL)  # 1. docker compose stop signal
        incident.roll_back_env()  # 2. cdb cutover rollback (signal.env as before)

    async def at_recover(incident: Incident, run: PipelineRun) -> None:
        opts = _opts(redis_url, run.keys)
        stream_before = int(await run.redis.xlen(run.keys.stream(Topic.MARKET_DATA)))
        # 3. What a plain replay would do: it says so and refuses to write.
        dry = await _cdb_json("dlq", "replay", "--topic", "market_data", "--all", "--dry-run", *opts)
        refused = await _cdb_json("dlq", "replay", "--topic", "market_data", "--all", *opts, expect=1)
        seen["dry"], seen["refused"] = dry, refused
        assert int(await run.redis.xlen(run.keys.stream(Topic.MARKET_DATA))) == stream_before
        # 4-5. Catch-up for the codec signal runs after the rollback (pydantic/lenient).
        catch_up = ["dlq", "catch-up", "--topic", "market_data", "--path", "pydantic", "--profile", "lenient"]
        seen["plan"] = await _cdb_json(*catch_up, "--dry-run", *opts)
        seen["done"] = await _cdb_json(*catch_up, *opts)
        incident.restart_from_env(run)  # 6. docker compose up -d --no-deps signal

    incident = Incident(
        env_dir, redis_url, at_stop, at_recover, strict_at=STRICT_AT, stop_at=STOP_AT, recover_at=RECOVER_AT
    )
    after, keys = await _run(redis_url, pg_database, env_dir, space, incident)

    letters = incident.facts["dead_letters"]
    assert letters == STOP_AT - STRICT_AT  # every trade of the strict window was dead-lettered
    assert seen["refused_while_running"]
    assert "signal is running" in seen["refused_while_running"]
    dry_ignored = [o for o in seen["dry"]["outcomes"] if o["ignored"]]
    assert seen["dry"]["ignored"] == len(dry_ignored) > 0
    assert all(o["ignored"].startswith("stale: ") for o in dry_ignored)
    assert seen["refused"]["refused"] is True
    assert {o["status"] for o in seen["refused"]["outcomes"]} <= {"withheld", "held"}
    assert seen["plan"]["applied"] is False
    assert seen["plan"]["letters"] == letters
    done = seen["done"]
    assert done["applied"] is True
    assert done["letters"] == letters
    assert [p["handled_again"] for p in done["partitions"]] == [0]  # signal was stopped at once

    # 7. The letters are resolved: marked with their original entry id.
    listed = await _cdb_json("dlq", "list", "--topic", "market_data", "--count", "5", *_opts(redis_url, keys))
    assert listed["market_data"]["replayed_kept"] == letters
    assert all(x["replayed_to"] == x["stream_id"] for x in listed["market_data"]["letters"])

    assert after == baseline
    print(  # the figures of the closing note
        f"\nbaseline: {len(baseline['signals'])} signals, {_fills(baseline)} fills; "
        f"{letters} trades dead-lettered; after catch-up: {len(after['signals'])} signals, "
        f"{_fills(after)} fills"
    )


async def test_old_runbook_replay__is_refused_and_when_forced_loses_the_stale_trades(
    redis_url: str, pg_database: str, tmp_path: Path, space: list[KeySpace]
) -> None:
    env_dir = tmp_path / "env"
    _before_incident(env_dir)
    baseline, _ = await _run(redis_url, pg_database, env_dir, space)
    seen: dict[str, Any] = {}

    async def at_stop(incident: Incident, run: PipelineRun) -> None:
        await stop(run, ServiceName.SIGNAL)
        incident.roll_back_env()
        incident.restart_from_env(run)  # the old runbook: recreate at once, it reads on

    async def at_recover(incident: Incident, run: PipelineRun) -> None:
        opts = ["--topic", "market_data", "--all", *_opts(redis_url, run.keys)]
        seen["refused"] = await _cdb_json("dlq", "replay", *opts, expect=1)
        seen["forced"] = await _cdb_json("dlq", "replay", *opts, "--include-stale")

    incident = Incident(
        env_dir, redis_url, at_stop, at_recover, strict_at=STRICT_AT, stop_at=STOP_AT, recover_at=RECOVER_AT
    )
    after, _ = await _run(redis_url, pg_database, env_dir, space, incident)

    refused, forced = seen["refused"], seen["forced"]
    assert refused["refused"] is True
    assert refused["ignored"] > 0
    assert sum(o["status"] == "replayed" for o in forced["outcomes"]) == incident.facts["dead_letters"]
    assert forced["ignored"] == refused["ignored"]
    assert len(after["signals"]) < len(baseline["signals"])
    print(
        f"\nbaseline: {len(baseline['signals'])} signals, {_fills(baseline)} fills; old runbook "
        f"({refused['ignored']} of {incident.facts['dead_letters']} replayed trades stale): "
        f"{len(after['signals'])} signals, {_fills(after)} fills"
    )


async def test_catch_up__entries_handled_after_the_first_letter_are_handled_again_harmlessly(
    redis_url: str, pg_database: str, tmp_path: Path, space: list[KeySpace]
) -> None:
    """ws on Pydantic: strict signal reads its trades but dead-letters a legacy feeder's ones
    (another symbol) and malformed entries mixed in. Catch-up re-reads everything after the
    first letter: the trades it had handled fire the same signals again (same ids, same content),
    risk and execution recognise them, and the trades equal the baseline's."""
    env_dir = tmp_path / "env"
    for service in ServiceName:
        write_env(env_dir, service, pydantic=service in (ServiceName.WS, ServiceName.SIGNAL))
    market = [f for t, f in injected_entries(Kind.MALFORMED, 65_536) if t is Topic.MARKET_DATA]
    entries = [f for _, f in injected_entries(Kind.LEGACY_MARKET_DATA, 65_536)] + market
    baseline, _ = await _run(redis_url, pg_database, env_dir, space, Inject(1000, entries))
    seen: dict[str, Any] = {}

    async def at_stop(incident: Incident, run: PipelineRun) -> None:
        await stop(run, ServiceName.SIGNAL)
        incident.roll_back_env()

    async def at_recover(incident: Incident, run: PipelineRun) -> None:
        catch_up = ["dlq", "catch-up", "--topic", "market_data", *_opts(redis_url, run.keys)]
        seen["done"] = await _cdb_json(*catch_up)
        incident.restart_from_env(run)

    incident = Incident(
        env_dir, redis_url, at_stop, at_recover, strict_at=STRICT_AT, stop_at=STOP_AT, recover_at=RECOVER_AT
    )
    after, keys = await _run(redis_url, pg_database, env_dir, space, incident, Inject(1000, entries))

    done = seen["done"]
    (part,) = done["partitions"]
    assert len(part["letters"]) == 24  # the legacy feeder's trades, now read
    assert len(part["still_invalid"]) == len(market)  # malformed: read again, parked again
    assert part["handled_again"] == STOP_AT - 1000  # Pydantic trades strict signal had handled
    client = aioredis.Redis.from_url(redis_url)
    try:
        signals = await client.xlen(keys.stream(Topic.SIGNALS))
        letters = await client.xlen(keys.dlq(Topic.MARKET_DATA))
    finally:
        await client.aclose()
    assert signals > len(after["signals"])  # signals fired again: duplicates on the stream
    assert letters == 24 + 2 * len(market)
    assert after == baseline  # business() also checks every duplicate is identical


def test_dlq_catch_up__order_results_has_no_consumer() -> None:
    result = cdb("dlq", "catch-up", "--topic", "order_results", "--redis-url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 2
    assert "no consuming service" in result.output
