"""Retiring a contract version in the env files (``cdb versions retire-apply / retire-rollback``)
and what a retired version means to a running consumer (``RETIRED_VERSIONS_<TOPIC>``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import build_codec, codec_for
from core.env_files import EnvFileError
from core.errors import ConfigError, ContractError
from core.redis import StreamConsumer
from core.settings import ServiceSettings, read_env_file
from core.status import LiveState
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from core.versions import convert
from core.versions.codec import VersionedCodec
from core.versions.live import check_producer
from core.versions.retire_env import RETIREMENT, retire_target
from tests.ops_helpers import cdb, live_service, reporting, service_settings
from tests.transport_helpers import Collector, make_messages, poll_until
from tests.versions_helpers import order

STRICT = build_codec(CodecPath.PYDANTIC, Profile.STRICT)

ENV_FILES = {
    "ws": b"USE_PYDANTIC_CONTRACTS=true\n",
    "signal": b"USE_PYDANTIC_CONTRACTS=true\n",
    "risk": (
        b"# risk \xe2\x9c\x93\r\nexport USE_PYDANTIC_CONTRACTS=yes\r\nRISK_PRODUCE_VERSION_ORDERS=v1.0\r\n"
    ),
    "execution": b"USE_PYDANTIC_CONTRACTS=true\nRETIRED_VERSIONS_SIGNALS=\n# kept\nEXECUTION_FEE_BPS=10",
}
"""Env files with shapes the rewrite must keep: CRLF, export, a scoped variable, no final newline.
risk's file still says it writes v1.0 (its running instance was started writing v2.0)."""


@pytest.fixture
def env_dir(tmp_path: Path) -> Path:
    for name, data in ENV_FILES.items():
        (tmp_path / f"{name}.env").write_bytes(data)
    return tmp_path


def _files(env_dir: Path) -> dict[str, bytes]:
    return {name: (env_dir / f"{name}.env").read_bytes() for name in ENV_FILES}


def _load(env_dir: Path, service: ServiceName) -> ServiceSettings:
    return ServiceSettings.load(service, environ=read_env_file(env_dir / f"{service.value}.env"))


def _retire(env_dir: Path, redis_url: str, keys: KeySpace, *extra: str) -> Any:
    args = ["versions", "retire-apply", "--topic", "orders", "--version", "v1.0", "--window", "0"]
    return cdb(*args, "--env-dir", str(env_dir), "--redis-url", redis_url, "--prefix", keys.prefix, *extra)


@contextlib.asynccontextmanager
async def _orders_world(redis: aioredis.Redis, keys: KeySpace, risk_writes: str) -> AsyncIterator[None]:
    """A reporting risk writing ``risk_writes`` on orders and a reporting execution reading every version."""
    risk = service_settings(
        ServiceName.RISK, keys, "risk-1", use_pydantic_contracts=True, produce_version_orders=risk_writes
    )
    execution = service_settings(ServiceName.EXECUTION, keys, "exe-1", use_pydantic_contracts=True)
    async with reporting(redis, risk), reporting(redis, execution):
        yield


@pytest.mark.integration
async def test_retire_apply__after_go_retires_in_the_env_files_reapply_is_a_no_op_and_rollback_restores_bytes(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, env_dir: Path
) -> None:
    original = _files(env_dir)
    async with _orders_world(redis_async, keys, "v2.0"):
        applied = await asyncio.to_thread(_retire, env_dir, redis_url, keys)
        assert applied.exit_code == 0, applied.output
        after_first = _files(env_dir)
        again = await asyncio.to_thread(_retire, env_dir, redis_url, keys)
    assert again.exit_code == 0, again.output
    assert "nothing to write" in again.stdout
    assert _files(env_dir) == after_first

    risk, execution = _load(env_dir, ServiceName.RISK), _load(env_dir, ServiceName.EXECUTION)
    assert execution.retired_versions(Topic.ORDERS) == ["v1.0"]
    assert risk.retired_versions(Topic.ORDERS) == ["v1.0"]
    assert risk.produce_version(Topic.ORDERS) == "v2.0"  # the newest version execution reads
    assert after_first["risk"] == (
        b"# risk \xe2\x9c\x93\r\nexport USE_PYDANTIC_CONTRACTS=yes\r\nRISK_PRODUCE_VERSION_ORDERS=v2.0\r\n"
        b"RETIRED_VERSIONS_ORDERS=v1.0\nPRODUCE_VERSION_ORDERS=v2.0\n"
    )
    assert after_first["ws"] == original["ws"]
    assert after_first["signal"] == original["signal"]
    commands = [line.strip() for line in applied.stdout.splitlines() if "docker compose up" in line]
    assert commands == ["docker compose up -d --no-deps risk", "docker compose up -d --no-deps execution"]
    [backup] = (env_dir / RETIREMENT.directory).iterdir()
    assert {p.name: p.read_bytes() for p in backup.glob("*.env")} == {
        "risk.env": original["risk"],
        "execution.env": original["execution"],
    }
    manifest = json.loads((backup / "manifest.json").read_text())
    assert (manifest["verdict"], manifest["topic"], manifest["version"], manifest["produce"]) == (
        "GO",
        "orders",
        "v1.0",
        "v2.0",
    )

    rolled = cdb("versions", "retire-rollback", "--env-dir", str(env_dir))
    assert rolled.exit_code == 0, rolled.output
    assert _files(env_dir) == original
    assert "rollback" in (backup / "versions.log").read_text()
    order_of_recreate = [line.strip() for line in rolled.stdout.splitlines() if "docker compose up" in line]
    assert order_of_recreate == [
        "docker compose up -d --no-deps execution",
        "docker compose up -d --no-deps risk",
    ]


@pytest.mark.integration
async def test_retire_apply__no_go_is_refused_and_writes_nothing(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, env_dir: Path
) -> None:
    original = _files(env_dir)
    async with _orders_world(redis_async, keys, "v1.0"):
        result = await asyncio.to_thread(_retire, env_dir, redis_url, keys)
    assert result.exit_code == 1
    assert "risk/risk-1 still writes v1.0 on orders" in result.stdout
    assert "refused: no GO" in result.stdout
    assert _files(env_dir) == original
    assert not (env_dir / RETIREMENT.directory).exists()


def test_retire_apply__force_without_reason_is_refused(env_dir: Path) -> None:
    args = ("--topic", "orders", "--version", "v1.0", "--env-dir", str(env_dir), "--force")
    result = cdb("versions", "retire-apply", *args, "--redis-url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 2
    assert "--force needs --reason" in result.output
    assert _files(env_dir) == ENV_FILES


def test_retire_apply__plan_shows_the_diff_and_writes_nothing(env_dir: Path) -> None:
    args = ("--topic", "orders", "--version", "v1.1", "--env-dir", str(env_dir), "--plan")
    result = cdb("versions", "retire-apply", *args, "--redis-url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 0, result.output
    assert f"+++ {env_dir / 'execution.env'} (v1.1 retired)" in result.stdout
    assert "+RETIRED_VERSIONS_ORDERS=v1.1" in result.stdout
    assert "+PRODUCE_VERSION_ORDERS" not in result.stdout  # risk writes v1.0, which stays
    assert _files(env_dir) == ENV_FILES


def test_retire_rollback__keeps_apart_from_the_cutover_backups(env_dir: Path) -> None:
    args = ("--topic", "orders", "--version", "v1.0", "--env-dir", str(env_dir), "--force", "--reason", "t")
    applied = cdb("versions", "retire-apply", *args, "--redis-url", "redis://127.0.0.1:1/0")
    assert applied.exit_code == 0, applied.output
    assert 'verdict=unknown forced reason="t"' in applied.stdout
    cutover = cdb("cutover", "rollback", "--env-dir", str(env_dir))
    assert cutover.exit_code == 2
    assert "nothing to roll back" in cutover.output
    assert cdb("versions", "retire-rollback", "--env-dir", str(env_dir)).exit_code == 0
    assert _files(env_dir) == ENV_FILES


def _consumer(reads: list[str]) -> LiveState:
    return LiveState(
        service="execution",
        instance="exe-1",
        path="pydantic",
        profile="strict",
        shadow=False,
        version="0",
        started_ms=0,
        reported_ms=0,
        reads={"orders": reads},
    )


def test_retire_target__is_the_newest_version_every_running_consumer_reads() -> None:
    assert retire_target(Topic.ORDERS, "v1.0", [_consumer(["v1.0", "v1.1", "v2.0"])]) == "v2.0"
    older_build = [_consumer(["v1.0", "v1.1", "v2.0"]), _consumer(["v1.0", "v1.1"])]
    assert retire_target(Topic.ORDERS, "v1.0", older_build) == "v1.1"
    with pytest.raises(EnvFileError, match="nothing for its producer to write"):
        retire_target(Topic.ORDERS, "v1.0", [_consumer(["v1.0"])])


def test_settings__a_producer_may_not_write_a_version_retired_on_its_topic() -> None:
    env = {"USE_PYDANTIC_CONTRACTS": "true", "RETIRED_VERSIONS_ORDERS": "v1.0"}
    with pytest.raises(ConfigError, match=r"PRODUCE_VERSION_ORDERS='v1\.0'.*v1\.1, v2\.0"):
        ServiceSettings.load(ServiceName.RISK, environ=env)
    assert ServiceSettings.load(ServiceName.EXECUTION, environ=env).retired_versions(Topic.ORDERS) == ["v1.0"]
    with pytest.raises(ConfigError, match=r"RETIRED_VERSIONS_ORDERS='v3\.0'"):
        ServiceSettings.load(ServiceName.EXECUTION, environ={**env, "RETIRED_VERSIONS_ORDERS": "v3.0"})
    with pytest.raises(ConfigError, match="nothing to read"):
        ServiceSettings.load(
            ServiceName.EXECUTION, environ={**env, "RETIRED_VERSIONS_ORDERS": "v1.0,v1.1,v2.0"}
        )


def test_codec__a_retired_version_is_refused_and_no_longer_reported_as_read() -> None:
    codec = VersionedCodec(STRICT, retired={Topic.ORDERS: {"v1.0"}})
    assert codec.reads(Topic.ORDERS) == ["v1.1", "v2.0"]
    assert codec.reads(Topic.SIGNALS) == ["v1.0", "v2.0"]
    lenient = VersionedCodec(
        build_codec(CodecPath.PYDANTIC, Profile.LENIENT), retired={Topic.ORDERS: {"v1.0"}}
    )
    body = STRICT.encode(Topic.ORDERS, order())
    for refuse, said in (
        # A body (Pub/Sub, a replayed letter) and an entry that carry v1.0 say so, as a message
        # without api_version says that it has none: the operator looks for different producers.
        (lambda: codec.decode(Topic.ORDERS, body), "api_version 'v1.0' is retired on orders"),
        (
            lambda: codec.from_fields(Topic.ORDERS, STRICT.to_fields(Topic.ORDERS, order())),
            "api_version 'v1.0' is retired on orders",
        ),
        (
            lambda: lenient.decode(Topic.ORDERS, body.replace(b'"api_version":"v1.0",', b"")),
            "a message without api_version (read as v1.0) is retired on orders",
        ),
    ):
        with pytest.raises(ContractError) as caught:
            refuse()
        assert caught.value.reason == "retired_api_version"
        assert said in caught.value.errors[0]["msg"]
        assert "reads v1.1, v2.0" in caught.value.errors[0]["msg"]
    assert (
        "a message without api_version (read as v1.0) is retired on orders" in caught.value.errors[0]["msg"]
    )
    # A broken message is refused for what is wrong with it, not as a retired version.
    with pytest.raises(ContractError) as caught:
        codec.decode(Topic.ORDERS, body[:-3])
    assert caught.value.reason == "json_invalid"
    with pytest.raises(ContractError) as caught:
        codec.decode(Topic.ORDERS, body.replace(b'"api_version":"v1.0",', b""))
    assert caught.value.reason == "missing"  # strict: api_version is required
    v11 = VersionedCodec(STRICT, writes={Topic.ORDERS: "v1.1"})
    assert codec.decode(Topic.ORDERS, v11.encode(Topic.ORDERS, order())).message == order()


@pytest.mark.integration
async def test_retired_version__a_consumer_dead_letters_v1_0_orders_counted_while_reading_v1_1_and_v2_0(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    settings = service_settings(
        ServiceName.EXECUTION, keys, "exe-1", use_pydantic_contracts=True, retired_versions_orders="v1.0"
    )
    codec = codec_for(settings)
    consumer = StreamConsumer(
        redis_async,
        topic=Topic.ORDERS,
        service=ServiceName.EXECUTION,
        codec=codec,
        keys=keys,
        instance="exe-1",
    )
    await consumer.ensure_group()
    orders = [order(order_id=f"ord-{i}") for i in range(3)]
    ids = []
    for version, message in zip(("v1.0", "v1.1", "v2.0"), orders, strict=True):
        writer = VersionedCodec(STRICT, writes={Topic.ORDERS: version})
        ids.append(
            (
                await redis_async.xadd(keys.stream(Topic.ORDERS), writer.to_fields(Topic.ORDERS, message))
            ).decode()
        )
    handled = Collector()
    await poll_until(lambda: consumer.poll_once(handled), lambda: len(handled.ids) == 2)
    await poll_until(
        lambda: consumer.poll_once(handled), lambda: consumer.metrics.snapshot()["dead_letters"] == 1
    )

    assert handled.ids == ids[1:]
    # Handed to the code in execution's own version (core.versions.own: v2.0, exact decimals).
    assert handled.messages == [convert(Topic.ORDERS, o, "v2.0") for o in orders[1:]]
    [letter] = await consumer.dead_letters.read(Topic.ORDERS)
    assert (letter.stream_id, letter.reason) == (ids[0], "retired_api_version")
    snap = consumer.metrics.snapshot()
    assert snap["validation_reasons"] == {"retired_api_version": 1}
    assert codec.seen[Topic.ORDERS].keys() == {"v1.1", "v2.0"}


@pytest.mark.integration
async def test_retired_version__a_running_service_reports_it_no_longer_reads_it_and_the_gate_uses_that(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    risk = service_settings(
        ServiceName.RISK, keys, "risk-1", use_pydantic_contracts=True, retired_versions_signals="v1.0"
    )
    (signal,) = make_messages(STRICT, Topic.SIGNALS, 1)
    async with live_service(redis_async, risk) as ctx:
        assert ctx.live_state().reads == {"signals": ["v2.0"]}
        await redis_async.xadd(keys.stream(Topic.SIGNALS), STRICT.to_fields(Topic.SIGNALS, signal))
        async with asyncio.timeout(10):
            while not await redis_async.xlen(keys.dlq(Topic.SIGNALS)):
                await asyncio.sleep(0.02)
        with pytest.raises(ConfigError, match=r"risk/risk-1 \(reads v2\.0\)"):
            await check_producer(redis_async, keys, ServiceName.SIGNAL, "v1.0")
    (entry,) = await redis_async.xrange(keys.dlq(Topic.SIGNALS))
    assert entry[1][b"reason"] == b"retired_api_version"
