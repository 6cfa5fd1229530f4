"""Running the pipeline past one machine in tests: settings, one isolated run, comparisons.

A run gets a fresh key prefix and SQLite file, its own settings per service (partitions,
lease TTL, mode), optional further instances and hooks, and is cleaned afterwards
(one UNLINK per key: cluster-safe).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.redis.connection import open_target
from core.redis.modes import AsyncClient, RedisTarget
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName
from harness.matrix.verdict import business_results
from services.execution.store import SqliteStore
from services.pipeline import PipelineHook, PipelineResult, run_pipeline
from services.ws.replay import BUNDLED_TRADES_SMALL, load_trades

TRADES = load_trades(BUNDLED_TRADES_SMALL)
LEASE_MS = 1_000
"""Short leases in tests: a dead instance's partitions move within about 1.3 s."""
NO_EXPOSURE_LIMIT = {"RISK_MAX_EXPOSURE_NOTIONAL": "1000000000"}
"""Risk's exposure limit spans symbols, so with N partitions each gets 1/N of it
(services.risk.limits.RiskLimits.per_partition): a run with 4 partitions and the same
limit rejects more than a single-stream run where the limit binds (it does 3 times on
trades_small). Comparisons between partition counts therefore lift it in both runs;
per-symbol limits (position limit: binds once) stay in force. Comparisons at the same
partition count (1 vs 2 instances, a kill) keep every default limit."""


def settings(
    keys: KeySpace,
    target: RedisTarget,
    *,
    pydantic: bool = False,
    environ: Mapping[str, str] | None = None,
) -> dict[ServiceName, ServiceSettings]:
    """Settings of every service for one isolated run."""
    return {
        s: ServiceSettings.load(
            s,
            environ=dict(environ or {}),
            overrides={
                "key_prefix": keys.prefix,
                "topic_partitions": keys.partitions,
                "redis_url": target.url,
                "redis_mode": target.mode,
                "redis_sentinels": ",".join(f"{h}:{p}" for h, p in target.sentinels),
                "redis_sentinel_master": target.master,
                "use_pydantic_contracts": pydantic,
                "instance": f"t-{s.value}",
                "consumer_block_ms": 20,
                "partition_lease_ms": LEASE_MS,
            },
        )
        for s in ServiceName
    }


async def clean(client: AsyncClient, keys: KeySpace) -> None:
    """Delete every key of ``keys`` (one UNLINK per key: fine across cluster slots)."""
    found = [k async for k in client.scan_iter(match=keys.all_keys_pattern(), count=1000)]
    pipe = client.pipeline(transaction=False)
    for key in found:
        pipe.execute_command("UNLINK", key)
    await pipe.execute()


async def run(
    target: RedisTarget,
    *,
    partitions: int = 1,
    pydantic: bool = False,
    environ: Mapping[str, str] | None = None,
    instances: Mapping[ServiceName, int] | None = None,
    hooks: Sequence[PipelineHook] = (),
    ws_batch: int = 500,
    timeout_s: float = 60.0,
) -> PipelineResult:
    """The pipeline on trades_small in a fresh key space of ``target``; keys removed afterwards."""
    keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:", partitions)
    client = await open_target(target)
    scratch = Path(tempfile.mkdtemp(prefix="cdb-scaling-"))
    store = SqliteStore(scratch / "results.sqlite3")
    env = dict(environ or {})
    try:
        return await run_pipeline(
            client,
            settings(keys, target, pydantic=pydantic, environ=env),
            TRADES,
            store,
            environ=env,
            instances=instances,
            hooks=hooks,
            ws_batch=ws_batch,
            timeout_s=timeout_s,
        )
    finally:
        await store.close()
        shutil.rmtree(scratch, ignore_errors=True)
        await clean(client, keys)
        await client.aclose()


def trades_of(result: PipelineResult) -> list[dict[str, Any]]:
    """The order results on the business fields, one per order id, sorted (duplicates must agree)."""
    rows, conflicts = business_results(result.order_results)
    assert not conflicts, f"duplicated order results disagree: {conflicts}"
    return rows


def per_symbol(result: PipelineResult) -> dict[str, list[str]]:
    """Order ids per symbol in stream order, first occurrence only: each symbol's order."""
    out: dict[str, list[str]] = {}
    for row in result.order_results:
        ids = out.setdefault(row["symbol"], [])
        if row["order_id"] not in ids:
            ids.append(row["order_id"])
    return out


def assert_same_trades(got: PipelineResult, want: PipelineResult) -> None:
    """Same fills (each order once, same business fields), same per-symbol order, same rows."""
    assert got.quiescent, "the run did not drain"
    assert trades_of(got) == trades_of(want)
    assert per_symbol(got) == per_symbol(want)
    assert got.stored_rows == want.stored_rows
    assert sum(got.dead_letters.values()) == 0
