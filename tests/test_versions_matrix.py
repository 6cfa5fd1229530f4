"""``cdb matrix --versions``: producers writing different contract versions trade like the baseline."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from core.topics import KeySpace, ServiceName, Topic
from core.versions.codec import VersionedCodec
from harness.matrix.runner import MatrixConfig
from harness.matrix.versions import run_version_matrix, version_mixes, versioned_factory
from services.ws.replay import BUNDLED_TRADES
from tests.ops_helpers import service_settings

WS, SIGNAL, RISK, EXECUTION = ServiceName


def test_version_mixes__every_combination_of_declared_versions_all_v1_0_first() -> None:
    mixes = version_mixes()
    assert len(mixes) == 2 * 2 * 3 * 3
    assert mixes[0] == dict.fromkeys(ServiceName, "v1.0")
    assert len({tuple(m.values()) for m in mixes}) == len(mixes)


def test_versioned_factory__each_service_writes_its_own_version(keys: KeySpace) -> None:
    factory = versioned_factory({RISK: "v1.1", EXECUTION: "v2.0"})
    for name, topic, version in ((RISK, Topic.ORDERS, "v1.1"), (EXECUTION, Topic.ORDER_RESULTS, "v2.0")):
        codec = factory(name, service_settings(name, keys, "x", use_pydantic_contracts=True))
        assert isinstance(codec, VersionedCodec)
        assert codec.writes(topic) == version


@pytest.mark.integration
async def test_version_matrix__mixed_producer_versions_match_the_baseline_and_really_write_them(
    redis_async: aioredis.Redis, redis_url: str
) -> None:
    mixes = [
        {WS: "v2.0", SIGNAL: "v2.0", RISK: "v2.0", EXECUTION: "v2.0"},
        {WS: "v1.0", SIGNAL: "v2.0", RISK: "v1.1", EXECUTION: "v1.1"},
    ]
    config = MatrixConfig(mixes=[], data=BUNDLED_TRADES, redis_url=redis_url, keep=True)
    baselines_before = {k async for k in redis_async.scan_iter(match="cdb-matrix:base_*", count=1000)}
    rows = await run_version_matrix(config, mixes)
    try:
        # Kept: each mix's own run; its baseline (reported nowhere) is not left behind.
        baselines_after = {k async for k in redis_async.scan_iter(match="cdb-matrix:base_*", count=1000)}
        assert baselines_after <= baselines_before
        assert [(r.ok, r.problems) for r in rows] == [(True, []), (True, [])]
        for row in rows:
            assert row.kept_prefix is not None
            space = KeySpace(row.kept_prefix)
            for service in ServiceName:
                topic = service.produces
                entries = await redis_async.xrange(space.stream(topic))
                assert entries, f"{topic.value}: nothing written"
                written = {json.loads(fields[b"api_version"]) for _, fields in entries}
                assert written == {row.writes[service.value]}, topic
            assert row.workspace is not None
            assert row.workspace.sqlite_file is not None
            assert row.kept_store == str(row.workspace.sqlite_file)
            assert row.workspace.sqlite_file.is_file()
    finally:
        for row in rows:
            if row.workspace is not None:
                await row.workspace.clean()  # its keys and its SQLite file
    for row in rows:
        assert row.kept_prefix is not None
        assert [k async for k in redis_async.scan_iter(match=f"{row.kept_prefix}*", count=1000)] == []
