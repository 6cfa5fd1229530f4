"""The live MEXC source's reconnects, refused symbols and bad frames reach /metrics and cdb status.

ws runs as ``cdb service ws`` does (:func:`cdb.launcher.run_service`, METRICS_PORT set)
against a local MEXC-like server that refuses one symbol, sends a frame that is not
protobuf and drops the connection once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from cdb.launcher import run_service
from core.topics import KeySpace, ServiceName, Topic
from tests.ops_helpers import CLEAN_ENV, wait_state
from tests.service_procs import free_port, scrape
from tests.support.fake_mexc import FakeMexc, eventually

pytestmark = pytest.mark.integration


def _source(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("cdb_source_") and s.labels.get("source") == "mexc":
                key = s.name + (f":{s.labels['reason']}" if "reason" in s.labels else "")
                out[key] = s.value
    return out


async def test_ws_live_source__reconnects_refusals_and_bad_frames_reach_metrics_and_status(
    redis_async: aioredis.Redis,
    redis_url: str,
    keys: KeySpace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for var in CLEAN_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    port = free_port()
    async with FakeMexc(refuse=["ETH/USDT"]) as fake:
        env = {
            "REDIS_URL": redis_url,
            "KEY_PREFIX": keys.prefix,
            "INSTANCE": "ws-live",
            "METRICS_PORT": str(port),
            "WS_SOURCE": "mexc",
            "WS_MEXC_URL": fake.url,
            "WS_SYMBOLS": "BTC/USDT,ETH/USDT",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        stop = asyncio.Event()
        task = asyncio.create_task(run_service(ServiceName.WS, stop))
        try:
            await eventually(
                lambda: fake.live_subscribers("BTC/USDT") == 1, timeout=15, what="a subscription"
            )
            await fake.push_raw(b"\x08\x96not protobuf at all")
            fake.drop()
            await eventually(
                lambda: fake.live_subscribers("BTC/USDT") == 1 and fake.connections >= 2, timeout=15
            )

            expected = {
                "cdb_source_reconnects_total": 1.0,
                "cdb_source_refused_symbols": 1.0,
                "cdb_source_bad_frames_total:protobuf_invalid": 1.0,
            }
            deadline = asyncio.get_running_loop().time() + 15
            while (seen := _source(await asyncio.to_thread(scrape, port))) != expected:
                assert asyncio.get_running_loop().time() < deadline, seen
                await asyncio.sleep(0.1)

            state = await wait_state(redis_async, keys, ServiceName.WS, "ws-live")
            async with asyncio.timeout(10):
                while state.counts.get("sources", {}).get("mexc", {}).get("reconnects") != 1:
                    await asyncio.sleep(0.2)
                    state = await wait_state(redis_async, keys, ServiceName.WS, "ws-live")
            assert state.counts["sources"]["mexc"] == {
                "reconnects": 1,
                "refused_symbols": 1,
                "bad_frames_by_reason": {"protobuf_invalid": 1},
            }
            assert state.counts["dead_letters"] == 1  # the frame is in market_data_dlq, and counted
            assert await redis_async.xlen(keys.dlq(Topic.MARKET_DATA)) == 1
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=20)
