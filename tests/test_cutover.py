"""``cdb cutover check / apply / rollback`` against the real Redis and real env files."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from core.codec import build_codec, encode_field_map
from core.codec.fields import field_map_bytes
from core.redis import DeadLetters, Publisher
from core.settings import ServiceSettings, read_env_file
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from migration.cutover_files import BACKUP_DIR, rewrite_env
from services.pipeline import group_backlog
from tests.ops_helpers import cdb, cdb_json, live_service, reporting, service_settings
from tests.test_redis_acl_live import temporary_acl_users
from tests.transport_helpers import make_messages, valid_values

pytestmark = pytest.mark.integration

LEGACY = build_codec(CodecPath.LEGACY)
PYDANTIC = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)

ENV_FILES = {
    "ws": b"# ws flags\nUSE_PYDANTIC_CONTRACTS=true\nCONTRACT_PROFILE=lenient\nCONTRACT_SHADOW=false\n",
    "signal": (
        b"# signal \xe2\x9c\x93\r\nexport USE_PYDANTIC_CONTRACTS=yes\r\nSIGNAL_CONTRACT_PROFILE=lenient\r\n"
    ),
    "risk": b"USE_PYDANTIC_CONTRACTS = true\nCONTRACT_PROFILE=lenient\nRISK_MAX_ORDER_NOTIONAL=500",
    "execution": b"CONTRACT_PROFILE='lenient'\n\n# comment kept\nEXECUTION_FEE_BPS=10\n",
}
"""Env files with every shape the rewrite must keep: CRLF, export, spaces, quotes, a scoped
variable, a missing variable and a missing final newline."""


@pytest.fixture
def env_dir(tmp_path: Path) -> Path:
    for name, data in ENV_FILES.items():
        (tmp_path / f"{name}.env").write_bytes(data)
    return tmp_path


def _files(env_dir: Path) -> dict[str, bytes]:
    return {name: (env_dir / f"{name}.env").read_bytes() for name in ENV_FILES}


def _opts(redis_url: str, keys: KeySpace) -> list[str]:
    return ["--redis-url", redis_url, "--prefix", keys.prefix]


def _findings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in report["findings"]}


async def _check(redis_url: str, keys: KeySpace, *args: str, expect: int) -> dict[str, Any]:
    return await asyncio.to_thread(  # type: ignore[no-any-return]
        cdb_json, "cutover", "check", *_opts(redis_url, keys), *args, expect=expect
    )


@contextlib.asynccontextmanager
async def _instances(
    redis: aioredis.Redis, keys: KeySpace, *services: ServiceName, pydantic: bool = True
) -> AsyncIterator[None]:
    """Report-only instances of ``services`` on one path, for as long as the block runs."""
    async with contextlib.AsyncExitStack() as stack:
        for s in services:
            flags = {"use_pydantic_contracts": pydantic}
            await stack.enter_async_context(
                reporting(redis, service_settings(s, keys, f"{s.value}-1", **flags))
            )
        yield


@pytest.fixture
async def go_world(redis_async: aioredis.Redis, keys: KeySpace) -> AsyncIterator[None]:
    """Every service on the Pydantic path, no legacy entries, no dead letters: a GO."""
    async with _instances(redis_async, keys, *ServiceName):
        yield


async def _drain(redis: aioredis.Redis, keys: KeySpace) -> None:
    async with asyncio.timeout(10):
        while await group_backlog(redis, keys.stream(Topic.SIGNALS), keys.group(ServiceName.RISK)):
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.6)  # two report intervals: the counters have reached Redis


async def test_cutover_check__no_go_while_a_producer_is_legacy_and_go_after_it_is_flipped(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    ws_codec = Publisher(redis_async, PYDANTIC, keys=keys, service=ServiceName.WS)
    await ws_codec.publish_many(Topic.MARKET_DATA, make_messages(PYDANTIC, Topic.MARKET_DATA, 5))
    risk = service_settings(ServiceName.RISK, keys, "risk-1", use_pydantic_contracts=True)
    async with (
        _instances(redis_async, keys, ServiceName.WS, ServiceName.EXECUTION),
        live_service(redis_async, risk),
    ):
        async with _instances(redis_async, keys, ServiceName.SIGNAL, pydantic=False):
            legacy_signal = Publisher(redis_async, LEGACY, keys=keys, service=ServiceName.SIGNAL)
            legacy_ids = await legacy_signal.publish_many(
                Topic.SIGNALS, make_messages(LEGACY, Topic.SIGNALS, 4)
            )
            await _drain(redis_async, keys)
            before = _findings(await _check(redis_url, keys, expect=1))

        async with _instances(redis_async, keys, ServiceName.SIGNAL):
            new_signal = Publisher(redis_async, PYDANTIC, keys=keys, service=ServiceName.SIGNAL)
            await new_signal.publish_many(Topic.SIGNALS, make_messages(PYDANTIC, Topic.SIGNALS, 4, start=10))
            await _drain(redis_async, keys)
            report = await _check(redis_url, keys, "--window", "0.5", expect=0)

    assert before["instances"]["ok"] is False
    assert "signal/signal-1 is on the legacy path" in before["instances"]["details"]
    streams = {s["topic"]: s for s in before["streams"]["data"]}
    assert before["streams"]["ok"] is False
    assert streams["signals"]["stream_producer"] == "signal"
    assert streams["signals"]["lacking"] == 4
    assert {e["stream_id"] for e in streams["signals"]["examples"]} == set(legacy_ids)
    assert all(e["missing"] == ["api_version", "timestamp"] for e in streams["signals"]["examples"])
    assert streams["market_data"]["lacking"] == 0
    assert before["defaults"]["data"] == {"risk/risk-1": {"api_version": 4, "timestamp": 4}}

    assert report["verdict"] == "GO"
    after = _findings(report)
    assert all(f["ok"] for f in after.values()), after
    signals = {s["topic"]: s for s in after["streams"]["data"]}["signals"]
    assert signals["scanned"] == 4  # only what the flipped producer wrote: the legacy entries are consumed


async def test_cutover_check__window_zero_counts_defaults_since_each_instance_started(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    legacy_signal = Publisher(redis_async, LEGACY, keys=keys, service=ServiceName.SIGNAL)
    await legacy_signal.publish_many(Topic.SIGNALS, make_messages(LEGACY, Topic.SIGNALS, 3))
    risk = service_settings(ServiceName.RISK, keys, "risk-1", use_pydantic_contracts=True)
    others = (ServiceName.WS, ServiceName.SIGNAL, ServiceName.EXECUTION)
    async with _instances(redis_async, keys, *others), live_service(redis_async, risk):
        await _drain(redis_async, keys)
        report = await _check(redis_url, keys, "--since-all", "--scan", "0", expect=1)
    defaults = _findings(report)["defaults"]
    assert defaults["ok"] is False
    assert defaults["summary"] == "defaults filled since each instance started"
    assert defaults["details"] == ["risk/risk-1: api_version=3, timestamp=3"]


@pytest.mark.usefixtures("go_world")
async def test_cutover_check__unreviewed_dead_letters_are_no_go_unless_allowed_or_reviewed(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    letter_id = await DeadLetters(redis_async, keys).park(
        Topic.ORDERS,
        b"{}",
        [{"type": "missing", "loc": ["order_id"], "msg": "x"}],
        service="execution",
        path="pydantic",
    )
    blocked = _findings(await _check(redis_url, keys, expect=1))["dead_letters"]
    allowed = _findings(await _check(redis_url, keys, "--allow-dlq", expect=0))["dead_letters"]
    reviewed = await _check(redis_url, keys, "--dlq-reviewed-before", letter_id, expect=0)
    assert blocked["data"]["orders"] == {"entries": 1, "unreviewed": 1, "replayed_kept": 0}
    assert "allowed by --allow-dlq" in allowed["summary"]
    assert _findings(reviewed)["dead_letters"]["data"]["orders"]["unreviewed"] == 0


async def test_cutover_check__a_service_without_a_live_instance_is_no_go(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    async with _instances(redis_async, keys, ServiceName.WS, ServiceName.SIGNAL, ServiceName.RISK):
        report = await _check(redis_url, keys, expect=1)
    assert _findings(report)["instances"]["details"] == [
        "execution: no live instance reports its state (is it running?)"
    ]


def test_rewrite_env__keeps_every_other_byte_and_sets_scoped_variables() -> None:
    text = ENV_FILES["signal"].decode()
    out = rewrite_env(
        text, ServiceName.SIGNAL, {"USE_PYDANTIC_CONTRACTS": "true", "CONTRACT_PROFILE": "strict"}
    )
    assert out == (
        "# signal ✓\r\nexport USE_PYDANTIC_CONTRACTS=true\r\nSIGNAL_CONTRACT_PROFILE=strict\r\n"
        "CONTRACT_PROFILE=strict\n"
    )


def test_rewrite_env__missing_final_newline_is_added_before_appending() -> None:
    out = rewrite_env("A=1", ServiceName.WS, {"CONTRACT_PROFILE": "strict"})
    assert out == "A=1\nCONTRACT_PROFILE=strict\n"


@pytest.mark.usefixtures("go_world")
async def test_cutover_apply__after_go_writes_strict_and_rollback_restores_byte_for_byte(
    redis_url: str, keys: KeySpace, env_dir: Path
) -> None:
    original = _files(env_dir)
    applied = await asyncio.to_thread(
        cdb, "cutover", "apply", "--env-dir", str(env_dir), *_opts(redis_url, keys)
    )
    assert applied.exit_code == 0, applied.output
    for service in ServiceName:
        resolved = ServiceSettings.load(service, environ=read_env_file(env_dir / f"{service.value}.env"))
        assert (resolved.use_pydantic_contracts, resolved.contract_profile) == (True, Profile.STRICT)
    commands = [line.strip() for line in applied.stdout.splitlines() if "docker compose up" in line]
    assert commands == [f"docker compose up -d --no-deps {s}" for s in ("execution", "risk", "signal", "ws")]
    [backup] = (env_dir / BACKUP_DIR).iterdir()
    assert {p.name: p.read_bytes() for p in backup.glob("*.env")} == {
        f"{n}.env": d for n, d in original.items()
    }
    assert json.loads((backup / "manifest.json").read_text())["verdict"] == "GO"

    rolled = cdb("cutover", "rollback", "--env-dir", str(env_dir))
    assert rolled.exit_code == 0, rolled.output
    assert _files(env_dir) == original
    assert "rollback" in (backup / "cutover.log").read_text()


async def test_cutover_apply__without_go_is_refused_and_writes_nothing(
    redis_url: str, keys: KeySpace, env_dir: Path
) -> None:
    original = _files(env_dir)
    result = await asyncio.to_thread(
        cdb, "cutover", "apply", "--env-dir", str(env_dir), *_opts(redis_url, keys)
    )
    assert result.exit_code == 1
    assert "refused: no GO" in result.stdout
    assert _files(env_dir) == original
    assert not (env_dir / BACKUP_DIR).exists()


def test_cutover_apply__force_without_reason_is_refused(env_dir: Path) -> None:
    original = _files(env_dir)
    result = cdb(
        "cutover", "apply", "--env-dir", str(env_dir), "--force", "--redis-url", "redis://127.0.0.1:1/0"
    )
    assert result.exit_code == 2
    assert "--force needs --reason" in result.output
    assert _files(env_dir) == original


async def test_cutover_apply__force_with_reason_records_the_reason_in_the_log(
    redis_url: str, keys: KeySpace, env_dir: Path
) -> None:
    args = ["--env-dir", str(env_dir), "--force", "--reason", "INC-42 legacy ws retired"]
    result = await asyncio.to_thread(cdb, "cutover", "apply", *args, *_opts(redis_url, keys))
    assert result.exit_code == 0, result.output
    assert "reason: INC-42 legacy ws retired" in result.stdout
    [backup] = (env_dir / BACKUP_DIR).iterdir()
    log = (backup / "cutover.log").read_text()
    assert 'verdict=NO-GO forced reason="INC-42 legacy ws retired"' in log


def test_cutover_apply__plan_shows_the_unified_diff_and_writes_nothing(env_dir: Path) -> None:
    original = _files(env_dir)
    result = cdb(
        "cutover", "apply", "--env-dir", str(env_dir), "--plan", "--redis-url", "redis://127.0.0.1:1/0"
    )
    assert result.exit_code == 0, result.output
    assert f"+++ {env_dir / 'ws.env'} (strict)" in result.stdout
    assert "-CONTRACT_PROFILE=lenient" in result.stdout
    assert "+CONTRACT_PROFILE=strict" in result.stdout
    assert _files(env_dir) == original


def test_cutover_rollback__refuses_when_files_were_edited_since_apply(env_dir: Path) -> None:
    args = ["--env-dir", str(env_dir), "--force", "--reason", "test", "--redis-url", "redis://127.0.0.1:1/0"]
    assert cdb("cutover", "apply", *args).exit_code == 0
    (env_dir / "ws.env").write_bytes(b"EDITED=1\n")
    refused = cdb("cutover", "rollback", "--env-dir", str(env_dir))
    assert refused.exit_code == 2
    assert "ws.env changed since the cutover" in refused.output
    assert (env_dir / "ws.env").read_bytes() == b"EDITED=1\n"
    forced = cdb("cutover", "rollback", "--env-dir", str(env_dir), "--force")
    assert forced.exit_code == 0, forced.output
    assert _files(env_dir) == ENV_FILES  # every original byte back
    [backup] = (env_dir / BACKUP_DIR).iterdir()
    assert (backup / "rolled-back-from" / "ws.env").read_bytes() == b"EDITED=1\n"


def test_cutover_rollback__backup_given__restores_from_that_apply(env_dir: Path) -> None:
    args = ["--env-dir", str(env_dir), "--force", "--reason", "test", "--redis-url", "redis://127.0.0.1:1/0"]
    assert cdb("cutover", "apply", *args).exit_code == 0
    [backup] = (env_dir / BACKUP_DIR).iterdir()
    result = cdb("cutover", "rollback", "--env-dir", str(env_dir), "--backup", str(backup))
    assert result.exit_code == 0, result.output
    assert _files(env_dir) == ENV_FILES
    # What to do next is the rollback's, not the apply's: after a forced strict the dead-letter
    # streams may hold what strict refused, and catch-up is how they count again.
    assert "stays empty" not in result.stdout
    assert "At GO" not in result.stdout
    assert "cdb dlq catch-up" in result.stdout


def test_cutover_rollback__backup_that_is_no_apply_backup__usage_error_exit_2(
    env_dir: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "not-a-backup"
    empty.mkdir()
    result = cdb("cutover", "rollback", "--env-dir", str(env_dir), "--backup", str(empty))
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: --backup={str(empty)!r} is not accepted")
    assert line.endswith("(no manifest.json in it)")
    assert _files(env_dir) == ENV_FILES  # nothing touched


def test_cutover_rollback__without_a_backup_exits_2(env_dir: Path) -> None:
    result = cdb("cutover", "rollback", "--env-dir", str(env_dir))
    assert result.exit_code == 2
    assert "nothing to roll back" in result.output


@pytest.mark.usefixtures("go_world")
async def test_cutover_check__as_the_operator_acl_user_counts_replayed_dead_letters_as_reviewed(
    redis_async: aioredis.Redis, redis_sync: redis.Redis, redis_url: str, keys: KeySpace
) -> None:
    fields = encode_field_map({**valid_values(Topic.ORDERS, 1), "api_version": "v1.0"})
    await DeadLetters(redis_async, keys).park(
        Topic.ORDERS,
        field_map_bytes(fields),
        [{"type": "x", "loc": [], "msg": "x"}],
        service="execution",
        path="pydantic",
        stream_id="1-0",
    )
    with temporary_acl_users(redis_sync, keys, redis_url) as users:
        operator = ["--redis-url", users.urls["operator"], "--prefix", keys.prefix]
        replay = ["--redis-url", users.urls["replay"], "--prefix", keys.prefix]  # the operator cannot write
        blocked = await asyncio.to_thread(cdb_json, "cutover", "check", *operator, expect=1)
        replayed = await asyncio.to_thread(cdb_json, "dlq", "replay", "--topic", "orders", "--all", *replay)
        report = await asyncio.to_thread(cdb_json, "cutover", "check", *operator, expect=0)
    assert _findings(blocked)["dead_letters"]["ok"] is False
    assert [o["status"] for o in replayed["outcomes"]] == ["replayed"]
    assert _findings(report)["dead_letters"]["data"]["orders"] == {
        "entries": 1,
        "unreviewed": 0,
        "replayed_kept": 1,
    }
