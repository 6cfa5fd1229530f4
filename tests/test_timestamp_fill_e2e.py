"""A trade without business time never silences a symbol, on any path (issue 14, Build 1).

A market_data entry without ``timestamp`` (or with ``"timestamp": null``) placed
before the bundled replay is dead-lettered and counted on every path and profile,
and every later real trade of its symbol still counts: the BTC signals equal a run
without it. (Filling it from the reader's clock made every later BTC trade look
stale on the lenient path: 0 BTC signals instead of 42.)
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import build_codec
from core.errors import ContractError
from core.redis.dead_letters import DeadLetter
from core.redis.dlq_replay import redecode
from core.settings import ServiceSettings
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from services.execution.store import PostgresStore
from services.pipeline import PipelineResult, read_stream, run_pipeline
from services.pipeline_control import PipelineHook, PipelineRun
from services.ws.replay import BUNDLED_TRADES, load_trades

pytestmark = pytest.mark.integration

SYMBOL = "BTC/USDT"
# (use_pydantic_contracts, contract_profile) of every service
PATHS = {
    "legacy": (False, Profile.LENIENT),
    "pydantic-lenient": (True, Profile.LENIENT),
    "pydantic-strict": (True, Profile.STRICT),
}
POISONS: dict[str, dict[bytes, bytes]] = {
    "missing": {},
    "null": {b"timestamp": b"null"},
}


class _TimelessTrade(PipelineHook):
    """Puts one BTC/USDT trade without business time on market_data before the replay."""

    def __init__(self, extra: dict[bytes, bytes]) -> None:
        self.extra = extra

    async def on_start(self, run: PipelineRun) -> None:
        fields: dict[bytes, bytes] = {
            b"api_version": b'"v1.0"',
            b"symbol": json.dumps(SYMBOL).encode(),
            b"price": b"50000.0",
            b"volume": b"0.5",
            b"side": b'"BUY"',
            b"venue": b'"mexc"',
            **self.extra,
        }
        stream = run.keys.stream(Topic.MARKET_DATA, run.keys.partition(SYMBOL))
        await run.redis.xadd(stream, fields)  # type: ignore[arg-type]


def _settings(keys: KeySpace, redis_url: str, path: str) -> dict[ServiceName, ServiceSettings]:
    pydantic, profile = PATHS[path]
    return {
        s: ServiceSettings.load(
            s,
            environ={},
            overrides={
                "key_prefix": keys.prefix,
                "redis_url": redis_url,
                "use_pydantic_contracts": pydantic,
                "contract_profile": profile,
                "instance": f"ts-{s.value}",
                "consumer_block_ms": 20,
            },
        )
        for s in ServiceName
    }


async def _run(
    redis_url: str, pg_url: str, path: str, poison: dict[bytes, bytes] | None
) -> tuple[PipelineResult, list[dict[str, Any]]]:
    keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:")
    client = aioredis.Redis.from_url(redis_url)
    store = PostgresStore(pg_url, schema=f"ts_{uuid.uuid4().hex[:8]}")
    hooks = [_TimelessTrade(poison)] if poison is not None else []
    try:
        result = await run_pipeline(
            client,
            _settings(keys, redis_url, path),
            load_trades(BUNDLED_TRADES),
            store,
            environ={},
            hooks=hooks,
        )
        reader = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)
        signals = []
        for entry_id, fields in await read_stream(client, keys, Topic.SIGNALS):
            message = reader.from_fields(Topic.SIGNALS, fields, entry_id=entry_id).message
            values = reader.as_dict(Topic.SIGNALS, message)
            signals.append({k: values[k] for k in ("signal_id", "symbol", "side", "price", "strength")})
        return result, signals
    finally:
        await store.drop_schema()
        await store.close()
        found = [k async for k in client.scan_iter(match=keys.all_keys_pattern())]
        if found:
            await client.unlink(*found)
        await client.aclose()


def _btc(signals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in signals if s["symbol"] == SYMBOL]


@pytest.mark.parametrize("path", sorted(PATHS))
async def test_timeless_market_data__is_dead_lettered_and_changes_no_signal(
    redis_url: str, pg_database: str, path: str
) -> None:
    baseline, base_signals = await _run(redis_url, pg_database, path, None)
    assert baseline.quiescent
    assert len(_btc(base_signals)) > 0, "the bundled data must give BTC signals to compare"
    assert baseline.dead_letters[Topic.MARKET_DATA.value] == 0
    for name, poison in POISONS.items():
        result, signals = await _run(redis_url, pg_database, path, poison)
        assert result.quiescent, name
        assert _btc(signals) == _btc(base_signals), name
        assert signals == base_signals, name
        assert result.order_results == baseline.order_results, name
        assert result.dead_letters[Topic.MARKET_DATA.value] == 1, name
        counts = result.services[ServiceName.SIGNAL.value].counts
        assert counts["messages_invalid"] == counts["validation_errors"] == 1, (name, counts)
        assert "timestamp" not in counts["defaults_by_field"], (name, counts)


# --- a dead letter re-decoded later keeps its original entry's time ----------------------------


def _letter(raw: bytes, stream_id: str) -> DeadLetter:
    return DeadLetter(
        entry_id="1767225700000-0",
        topic=Topic.SIGNALS.value,
        service="risk",
        path="pydantic",
        profile="strict",
        stream_id=stream_id,
        cause="invalid",
        reason="missing",
        errors=[],
        raw=raw,
        time_ms=1_767_225_700_000,
        deliveries=1,
    )


def test_dlq_redecode__lenient_fill_takes_the_original_entry_time_not_the_replay_time() -> None:
    values = {
        "signal_id": "s",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "price": 1.5,
        "strength": 0.5,
        "reason": "",
    }
    fields = {k: json.dumps(v) for k, v in values.items()}
    letter = _letter(json.dumps(fields).encode(), stream_id="1767225600321-4")
    decoded = redecode(build_codec(CodecPath.PYDANTIC, Profile.LENIENT), Topic.SIGNALS, letter)
    assert decoded.message.timestamp == 1_767_225_600_321
    assert decoded.defaulted == ("api_version", "timestamp")


def test_dlq_redecode__without_an_original_entry_id_a_missing_timestamp_is_refused() -> None:
    values = {
        "signal_id": "s",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "price": 1.5,
        "strength": 0.5,
        "reason": "",
    }
    letter = _letter(json.dumps(values).encode(), stream_id="")  # a Pub/Sub body: no entry
    with pytest.raises(ContractError) as info:
        redecode(build_codec(CodecPath.PYDANTIC, Profile.LENIENT), Topic.SIGNALS, letter)
    assert info.value.reason == "timestamp_unfillable"


def test_dlq_redecode__timestamp_less_trade_stays_refused_by_the_lenient_profile() -> None:
    """``cdb dlq replay --topic market_data`` (default pydantic/lenient) no longer "fixes" it."""
    values = {"symbol": "BTC/USDT", "price": 1.5, "volume": 0.5, "side": "BUY", "venue": "mexc"}
    fields = {k: json.dumps(v) for k, v in values.items()}
    letter = _letter(json.dumps(fields).encode(), stream_id="1767225600321-4")
    with pytest.raises(ContractError) as info:
        redecode(build_codec(CodecPath.PYDANTIC, Profile.LENIENT), Topic.MARKET_DATA, letter)
    assert [e["loc"] for e in info.value.errors] == [("timestamp",)]
