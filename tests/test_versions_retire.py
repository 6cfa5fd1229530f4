"""Retiring a contract version on evidence: ``cdb versions retire-check``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import build_codec
from core.status import LiveState
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from core.versions.retire import retire_check
from tests.ops_helpers import cdb, cdb_json, live_service, reporting, service_settings, wait_state
from tests.transport_helpers import make_messages

STRICT = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
NOW = 1_800_000_000_000
WINDOW_S = 600.0


def _state(service: str, instance: str, **changes: Any) -> LiveState:
    values: dict[str, Any] = {
        "service": service,
        "instance": instance,
        "path": "pydantic",
        "profile": "lenient",
        "shadow": False,
        "version": "0",
        "started_ms": NOW - 3_600_000,
        "reported_ms": NOW,
    }
    return LiveState(**{**values, **changes})


def _execution(**changes: Any) -> LiveState:
    reads = {"orders": ["v1.0", "v1.1", "v2.0"]}
    return _state("execution", "exe-1", reads=reads, writes={"order_results": "v1.0"}, **changes)


def _risk(writes: str) -> LiveState:
    return _state("risk", "risk-1", reads={"signals": ["v1.0", "v2.0"]}, writes={"orders": writes})


def test_retire_check__go_when_nobody_writes_or_saw_the_version_in_the_window() -> None:
    seen = {"orders": {"v1.0": NOW - 700_000, "v2.0": NOW - 1_000}}
    report = retire_check(
        [_risk("v2.0"), _execution(versions_seen=seen)], Topic.ORDERS, "v1.0", WINDOW_S, NOW
    )
    assert report.go, report.reasons
    assert report.to_dict()["verdict"] == "GO"


def test_retire_check__no_go_while_a_producer_still_writes_it() -> None:
    report = retire_check([_risk("v1.0"), _execution()], Topic.ORDERS, "v1.0", WINDOW_S, NOW)
    assert report.reasons == ["risk/risk-1 still writes v1.0 on orders"]


def test_retire_check__no_go_when_a_message_of_it_was_decoded_within_the_window() -> None:
    seen = {"orders": {"v1.0": NOW - 120_000}}
    report = retire_check(
        [_risk("v2.0"), _execution(versions_seen=seen)], Topic.ORDERS, "v1.0", WINDOW_S, NOW
    )
    assert report.reasons == ["execution/exe-1 decoded a v1.0 message 120s ago"]


def test_retire_check__no_go_for_a_legacy_consumer_or_one_younger_than_the_window() -> None:
    legacy = _state("execution", "exe-old", path="legacy", reads={"orders": ["v1.0"]})
    young = _execution(started_ms=NOW - 60_000)
    report = retire_check([_risk("v2.0"), legacy, young], Topic.ORDERS, "v1.0", WINDOW_S, NOW)
    assert report.reasons == [
        "execution/exe-old reads only v1.0 (path legacy)",
        "execution/exe-1 has run 60s, less than the 600s window",
    ]


def test_retire_check__no_go_without_any_consumer_as_evidence() -> None:
    report = retire_check([_risk("v2.0")], Topic.ORDERS, "v1.0", WINDOW_S, NOW)
    assert not report.go
    assert "no evidence" in report.reasons[0]


def test_retire_check_cli__unknown_version_is_refused_naming_the_option() -> None:
    result = cdb("versions", "retire-check", "--topic", "orders", "--version", "v9.0")
    assert result.exit_code == 2
    assert "--version" in result.output
    assert "v1.0, v1.1, v2.0" in result.output


@pytest.mark.parametrize("command", ["retire-check", "retire-apply"])
def test_retire_cli__an_endless_window_is_a_bad_option_not_a_no_go(command: str) -> None:
    # Exit 1 means NO-GO to a script; a window no clock can span is refused like any bad option.
    result = cdb("versions", command, "--topic", "orders", "--version", "v1.0", "--window", "inf")
    assert result.exit_code == 2, result.output
    assert "--window=inf is not accepted" in result.output
    assert "unexpected" not in result.output


@pytest.mark.integration
async def test_retire_check_cli__live_pipeline_that_still_reads_v1_0_messages_is_no_go(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str
) -> None:
    producer = service_settings(ServiceName.SIGNAL, keys, "sig-v2", use_pydantic_contracts=True)
    risk = service_settings(ServiceName.RISK, keys, "risk-1", use_pydantic_contracts=True)
    args = ("versions", "retire-check", "--topic", "signals", "--version", "v1.0", "--window", "0")
    args += ("--redis-url", redis_url, "--prefix", keys.prefix)
    async with reporting(redis_async, producer), live_service(redis_async, risk) as ctx:
        no_go = await asyncio.to_thread(cdb_json, *args, expect=1)
        assert any("sig-v2 still writes v1.0" in r for r in no_go["reasons"])
        assert ctx.live_state().writes == {"orders": "v1.0"}


@pytest.mark.integration
async def test_retire_check_cli__go_once_producers_write_v2_0_and_no_v1_0_was_decoded_then_no_go_after_one(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str
) -> None:
    producer = service_settings(
        ServiceName.SIGNAL, keys, "sig-v2", use_pydantic_contracts=True, produce_version_signals="v2.0"
    )
    risk = service_settings(ServiceName.RISK, keys, "risk-1", use_pydantic_contracts=True)
    args = ("versions", "retire-check", "--topic", "signals", "--version", "v1.0")
    args += ("--redis-url", redis_url, "--prefix", keys.prefix)
    async with reporting(redis_async, producer), live_service(redis_async, risk) as ctx:
        go = await asyncio.to_thread(cdb_json, *args, "--window", "0")
        assert go["verdict"] == "GO"
        (signal,) = make_messages(STRICT, Topic.SIGNALS, 1)
        await redis_async.xadd(keys.stream(Topic.SIGNALS), STRICT.to_fields(Topic.SIGNALS, signal))
        await wait_state(redis_async, keys, ServiceName.RISK, "risk-1", versions_seen=_SEEN_V1_0)
        no_go = await asyncio.to_thread(cdb_json, *args, "--window", "60", expect=1)
    assert any("risk/risk-1 decoded a v1.0 message" in r for r in no_go["reasons"])
    assert ctx.live_state().versions_seen["signals"].keys() == {"v1.0"}


class _SeenV10:
    """Equal to any ``versions_seen`` holding a v1.0 signal (for :func:`wait_state`)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and "v1.0" in other.get("signals", {})

    __hash__ = None  # type: ignore[assignment]


_SEEN_V1_0 = _SeenV10()
