"""``cdb run`` serves its four in-process services on one /metrics endpoint (METRICS_PORT)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from cdb.cli.run import ServeMetricsHook
from core.metrics_http import serve_metrics_on
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName
from services.execution.store import open_store
from services.pipeline import run_pipeline
from services.ws.replay import BUNDLED_TRADES_SMALL, load_trades

pytestmark = pytest.mark.integration


async def test_cdb_run_metrics__one_endpoint_carries_every_in_process_service(
    redis_url: str, keys: KeySpace, tmp_path: Path
) -> None:
    settings = {
        s: ServiceSettings.load(
            s,
            environ={},
            overrides={
                "key_prefix": keys.prefix,
                "redis_url": redis_url,
                "use_pydantic_contracts": s.value in ("signal", "risk"),
            },
        )
        for s in ServiceName
    }
    endpoint = serve_metrics_on("127.0.0.1", 0)
    client = aioredis.Redis.from_url(redis_url)
    store = open_store(None, sqlite_path=tmp_path / "results.sqlite3")
    try:
        trades = load_trades(BUNDLED_TRADES_SMALL)
        result = await run_pipeline(
            client, settings, trades, store, environ={}, hooks=[ServeMetricsHook(endpoint)]
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        endpoint.close()
        await store.close()
        await client.aclose()
    assert text.count("# TYPE cdb_messages_total counter") == 1  # one family, four services' series
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    paths = {s.labels["service"]: s.labels["path"] for s in samples if s.name == "cdb_instance_info"}
    assert paths == {"ws": "legacy", "signal": "pydantic", "risk": "pydantic", "execution": "legacy"}
    published = {
        s.labels["service"]: s.value
        for s in samples
        if s.name == "cdb_published_total" and s.labels["topic"] == "market_data"
    }
    assert published == {"ws": float(result.stream_lengths["market_data"])}
    received = {
        (s.labels["service"], s.labels["shape"]): s.value
        for s in samples
        if s.name == "cdb_wire_shape_total" and s.labels["direction"] == "received" and s.value
    }
    assert received[("signal", "legacy")] == float(len(trades))  # ws is legacy: all legacy-shaped
    assert received[("risk", "v1.0")] > 0  # signal is on Pydantic: its signals carry api_version
