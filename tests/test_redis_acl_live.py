"""Least privilege on the real Redis server: each service can do its job and nothing else.

Users are created with unique names (``cdbtest-<uuid>-<role>``) for the test's own
key prefix, each service logs in with a REDIS_URL carrying its user and password,
runs the real transport (core.redis publisher, consumer, dead letters, status),
and is refused (NOPERM) outside its topics. Exactly the users created are deleted
afterwards, also when the test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError

from core.codec import Decoded, build_codec
from core.errors import TransportError
from core.redis import (
    DeadLetterCause,
    DeadLetters,
    Publisher,
    StreamConsumer,
    connect_async,
    connect_sync,
    publish_message,
    read_dead_letters,
)
from core.redis.acl import OPERATOR, REPLAY, ROLES, acl_file, acl_user, apply_acl, delete_acl_users
from core.redis.dlq_lock import replay_lock
from core.redis.guarded import LeaseGuard
from core.settings import redact_url
from core.status import LiveState, StatusReporter, read_live_states
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from tests.support.redis_version import local_redis_version
from tests.support.servers import ThrowawayRedis

pytestmark = pytest.mark.integration

CODEC = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
TS = 1_767_225_600_000

VALUES: dict[Topic, dict[str, Any]] = {
    Topic.MARKET_DATA: {
        "symbol": "BTC/USDT",
        "price": 50_000.5,
        "volume": 0.1,
        "side": "BUY",
        "venue": "mexc",
    },
    Topic.SIGNALS: {
        "signal_id": "sig-1",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "price": 50_000.5,
        "strength": 0.5,
        "reason": "momentum",
    },
    Topic.ORDERS: {
        "order_id": "ord-1",
        "signal_id": "sig-1",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "order_type": "MARKET",
        "quantity": 0.1,
        "price": 50_000.5,
    },
    Topic.ORDER_RESULTS: {
        "order_id": "ord-1",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "status": "FILLED",
        "filled_quantity": 0.1,
        "average_price": 50_000.5,
        "fee": 0.01,
        "simulated": True,
    },
}


def _message(topic: Topic) -> Any:
    return CODEC.build(topic, {**VALUES[topic], "timestamp": TS})


def _url_as(base: str, user: str, password: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, f"{user}:{password}@{parts.hostname}:{parts.port}", parts.path, "", ""))


@dataclass(frozen=True)
class AclUsers:
    """The users one test created: name and REDIS_URL of each role."""

    names: dict[str, str]
    urls: dict[str, str]


@contextlib.contextmanager
def temporary_acl_users(admin: redis.Redis, keys: KeySpace, base_url: str) -> Iterator[AclUsers]:
    """Create a uniquely named user per role for ``keys``; delete exactly them afterwards."""
    prefix = f"cdbtest-{uuid.uuid4().hex[:12]}-"
    passwords = {role: secrets.token_hex(16) for role in ROLES}
    names = {role: acl_user(role, prefix) for role in ROLES}
    try:
        apply_acl(admin, keys, passwords, user_prefix=prefix)
        yield AclUsers(names, {r: _url_as(base_url, names[r], passwords[r]) for r in ROLES})
    finally:
        delete_acl_users(admin, list(names.values()))


@pytest.fixture
def users(redis_sync: redis.Redis, keys: KeySpace, redis_url: str) -> Iterator[AclUsers]:
    """ACL users of every role for this test's key prefix on the real server."""
    with temporary_acl_users(redis_sync, keys, redis_url) as created:
        yield created


@pytest.fixture
async def login(users: AclUsers) -> AsyncIterator[Callable[[str], aioredis.Redis]]:
    """Opens asyncio clients logged in as a role (closed after the test)."""
    opened: list[aioredis.Redis] = []

    def open_as(role: str) -> aioredis.Redis:
        client = connect_async(users.urls[role])
        opened.append(client)
        return client

    yield open_as
    for client in opened:
        await client.aclose()


@pytest.fixture
def login_sync(users: AclUsers) -> Iterator[Callable[[str], redis.Redis]]:
    """Opens blocking clients logged in as a role (closed after the test)."""
    opened: list[redis.Redis] = []

    def open_as(role: str) -> redis.Redis:
        client = connect_sync(users.urls[role])
        opened.append(client)
        return client

    yield open_as
    for client in opened:
        client.close()


def _state(service: ServiceName) -> LiveState:
    return LiveState(service.value, "i1", "pydantic", "strict", False, "test", TS)


async def _status_round_trip(client: aioredis.Redis, keys: KeySpace, service: ServiceName) -> None:
    reporter = StatusReporter(client, keys, lambda: _state(service))
    state = await reporter.report_once()
    key = keys.status(service, "i1")
    assert await client.get(key) is not None
    assert await client.expire(key, 30)
    await reporter.withdraw(state)


async def test_acl_live__ws_publishes_market_data_parks_bad_frames_and_reports_status(
    login: Callable[[str], aioredis.Redis], keys: KeySpace, redis_sync: redis.Redis
) -> None:
    ws = login(ServiceName.WS)
    ids = await Publisher(ws, CODEC, keys=keys, service=ServiceName.WS).publish_many(
        Topic.MARKET_DATA, [_message(Topic.MARKET_DATA)] * 3
    )
    await DeadLetters(ws, keys).park(
        Topic.MARKET_DATA,
        b"\x08\x01garbage",
        [{"type": "frame_invalid", "loc": [], "msg": "not a PushDataV3ApiWrapper"}],
        service=ServiceName.WS,
        path="pydantic",
        cause=DeadLetterCause.INVALID,
    )
    await _status_round_trip(ws, keys, ServiceName.WS)
    assert len(ids) == 3
    assert redis_sync.xlen(keys.stream(Topic.MARKET_DATA)) == 3
    assert redis_sync.xlen(keys.dlq(Topic.MARKET_DATA)) == 1


CONSUMERS = [s for s in ServiceName if s.consumes is not None]


@pytest.mark.parametrize("service", CONSUMERS)
async def test_acl_live__a_service_consumes_its_input_dead_letters_and_publishes_its_output(
    service: ServiceName, login: Callable[[str], aioredis.Redis], keys: KeySpace, redis_sync: redis.Redis
) -> None:
    source, output = service.consumes, service.produces
    assert source is not None
    publish_message(redis_sync, source, _message(source), codec=CODEC, keys=keys)  # the upstream, as admin
    redis_sync.xadd(keys.stream(source), {"symbol": '"BTC/USDT"'})  # an entry that cannot decode
    client = login(service)
    consumer = StreamConsumer(
        client, topic=source, service=service, codec=CODEC, keys=keys, instance="i1", block_ms=10
    )
    seen: list[Decoded] = []

    async def handle(decoded: Decoded, entry_id: str) -> None:
        seen.append(decoded)

    await consumer.ensure_group()
    async with asyncio.timeout(10):
        handled = 0
        while handled < 2:
            handled += await consumer.poll_once(handle)
    assert len(seen) == 1
    assert await consumer.lag() == 0  # XINFO GROUPS (+ XLEN)
    assert (await client.xpending(keys.stream(source), keys.group(service)))["pending"] == 0
    assert (await client.xinfo_stream(keys.stream(source)))["length"] == 2
    await Publisher(client, CODEC, keys=keys, service=service).publish(output, _message(output))
    await _status_round_trip(client, keys, service)
    assert redis_sync.xlen(keys.dlq(service.dead_letters)) == 1
    assert redis_sync.xlen(keys.stream(output)) == 1


async def test_acl_live__operator_sees_status_and_dead_letters_and_replay_replays_them(
    login: Callable[[str], aioredis.Redis],
    login_sync: Callable[[str], redis.Redis],
    keys: KeySpace,
    redis_sync: redis.Redis,
) -> None:
    await StatusReporter(login(ServiceName.RISK), keys, lambda: _state(ServiceName.RISK)).report_once()
    letter_id = redis_sync.xadd(
        keys.dlq(Topic.ORDERS), {"topic": "orders", "raw": '{"order_id":"ord-9"}', "error": "[]"}
    )
    operator, operator_sync, replay = login(OPERATOR), login_sync(OPERATOR), login_sync(REPLAY)
    states = await read_live_states(operator, keys)  # SCAN + GET
    letters = read_dead_letters(operator_sync, Topic.ORDERS, keys=keys)  # XREVRANGE
    assert read_dead_letters(replay, Topic.ORDERS, keys=keys) == letters
    # replay as core.redis.dlq_replay does: hold the topic's lock, publish through the codec, then
    # mark or delete the letter
    with replay_lock(replay, keys, Topic.ORDERS) as lock:
        lock.renew()
        new_id = publish_message(replay, Topic.ORDERS, _message(Topic.ORDERS), codec=CODEC, keys=keys)
        replay.hset(keys.dlq_replayed(Topic.ORDERS), letters[0].entry_id, new_id)
        marks = replay.hgetall(keys.dlq_replayed(Topic.ORDERS))
        removed = replay.xdel(keys.dlq(Topic.ORDERS), letters[0].entry_id)
        lock.check()  # renewed, not lost
    assert not redis_sync.exists(keys.dlq_replay_lock(Topic.ORDERS))  # released
    pubsub = operator.pubsub()
    await pubsub.subscribe(keys.channel(Topic.ORDER_RESULTS))
    await pubsub.aclose()
    assert [s.service for s in states] == ["risk"]
    assert letters[0].entry_id == letter_id.decode()
    assert letters[0].raw == b'{"order_id":"ord-9"}'
    assert marks == {letter_id: new_id.encode()}
    assert removed == 1
    assert redis_sync.xlen(keys.stream(Topic.ORDERS)) == 1
    assert redis_sync.xlen(keys.dlq(Topic.ORDERS)) == 0


Command = Callable[[KeySpace], list[Any]]
OTHER = KeySpace(prefix="cdbtest-other-pipeline:")

REFUSED: list[tuple[str, str, Command]] = [
    ("ws", "XADD signals_stream", lambda k: ["XADD", k.stream(Topic.SIGNALS), "*", "f", "1"]),
    ("ws", "PUBLISH signals", lambda k: ["PUBLISH", k.channel(Topic.SIGNALS), "x"]),
    ("ws", "XADD signals_dlq", lambda k: ["XADD", k.dlq(Topic.SIGNALS), "*", "f", "1"]),
    ("ws", "read its own stream", lambda k: ["XRANGE", k.stream(Topic.MARKET_DATA), "-", "+"]),
    ("ws", "another pipeline's stream", lambda k: ["XADD", OTHER.stream(Topic.MARKET_DATA), "*", "f", "1"]),
    ("ws", "another service's status", lambda k: ["SET", k.status(ServiceName.SIGNAL, "i1"), "{}"]),
    ("ws", "a key of its own choice", lambda k: ["SET", f"{k.prefix}anything", "1"]),
    ("ws", "DEL its positions", lambda k: ["DEL", k.source_positions()]),
    ("signal", "HSET ws's positions", lambda k: ["HSET", k.source_positions(), "replay:x", "1"]),
    (
        "signal",
        "XREADGROUP orders_stream",
        lambda k: ["XREADGROUP", "GROUP", "g", "c", "STREAMS", k.stream(Topic.ORDERS), ">"],
    ),
    ("signal", "XRANGE orders_stream", lambda k: ["XRANGE", k.stream(Topic.ORDERS), "-", "+"]),
    ("signal", "XADD to its input stream", lambda k: ["XADD", k.stream(Topic.MARKET_DATA), "*", "f", "1"]),
    ("signal", "PUBLISH market_data", lambda k: ["PUBLISH", k.channel(Topic.MARKET_DATA), "x"]),
    ("signal", "delete its input stream", lambda k: ["DEL", k.stream(Topic.MARKET_DATA)]),
    ("signal", "destroy its group", lambda k: ["XGROUP", "DESTROY", k.stream(Topic.MARKET_DATA), "g"]),
    ("risk", "PUBLISH order_results", lambda k: ["PUBLISH", k.channel(Topic.ORDER_RESULTS), "x"]),
    ("risk", "XADD order_results_stream", lambda k: ["XADD", k.stream(Topic.ORDER_RESULTS), "*", "f", "1"]),
    ("risk", "XADD market_data_dlq", lambda k: ["XADD", k.dlq(Topic.MARKET_DATA), "*", "f", "1"]),
    ("risk", "GET ws's status", lambda k: ["GET", k.status(ServiceName.WS, "i1")]),
    # Its producer's status it may read (the version gate), never write.
    ("risk", "SET signal's status", lambda k: ["SET", k.status(ServiceName.SIGNAL, "i1"), "x"]),
    ("execution", "PUBLISH orders", lambda k: ["PUBLISH", k.channel(Topic.ORDERS), "x"]),
    (
        "execution",
        "XREADGROUP signals_stream",
        lambda k: ["XREADGROUP", "GROUP", "g", "c", "STREAMS", k.stream(Topic.SIGNALS), ">"],
    ),
    ("operator", "SET a status key", lambda k: ["SET", k.status(ServiceName.WS, "i1"), "{}"]),
    ("operator", "PUBLISH elsewhere", lambda k: ["PUBLISH", OTHER.channel(Topic.ORDERS), "x"]),
    ("operator", "HSET a status key", lambda k: ["HSET", k.status(ServiceName.WS, "i1"), "f", "1"]),
    ("operator", "XADD a dead letter", lambda k: ["XADD", k.dlq(Topic.ORDERS), "*", "f", "1"]),
    ("operator", "DEL a stream", lambda k: ["DEL", k.stream(Topic.ORDERS)]),
    ("operator", "XGROUP DESTROY", lambda k: ["XGROUP", "DESTROY", k.stream(Topic.ORDERS), "g"]),
    ("operator", "read another pipeline", lambda k: ["XRANGE", OTHER.stream(Topic.ORDERS), "-", "+"]),
    ("operator", "FLUSHDB", lambda k: ["FLUSHDB"]),
    ("operator", "CONFIG GET", lambda k: ["CONFIG", "GET", "maxmemory"]),
    ("operator", "ACL LIST", lambda k: ["ACL", "LIST"]),
    ("operator", "KEYS", lambda k: ["KEYS", "*"]),
    ("operator", "XADD orders_stream (forge)", lambda k: ["XADD", k.stream(Topic.ORDERS), "*", "f", "1"]),
    ("operator", "PUBLISH orders (forge)", lambda k: ["PUBLISH", k.channel(Topic.ORDERS), "x"]),
    ("operator", "XDEL a dead letter", lambda k: ["XDEL", k.dlq(Topic.ORDERS), "1-1"]),
    ("operator", "take the replay lock", lambda k: ["SET", k.dlq_replay_lock(Topic.ORDERS), "x", "NX"]),
    ("replay", "SET the topology key", lambda k: ["SET", k.topology(), '{"partitions": 2}']),
    ("replay", "DEL a stream", lambda k: ["DEL", k.stream(Topic.ORDERS)]),
    ("replay", "XTRIM a stream", lambda k: ["XTRIM", k.stream(Topic.ORDERS), "MAXLEN", "0"]),
    ("replay", "XADD a dead letter", lambda k: ["XADD", k.dlq(Topic.ORDERS), "*", "f", "1"]),
]


@pytest.mark.parametrize(("role", "what", "command"), REFUSED, ids=[f"{r}-{w}" for r, w, _ in REFUSED])
def test_acl_live__a_user_is_refused_outside_its_topics(
    role: str, what: str, command: Command, login_sync: Callable[[str], redis.Redis], keys: KeySpace
) -> None:
    with pytest.raises(NoPermissionError):
        login_sync(role).execute_command(*command(keys))


async def test_acl_live__ws_saves_and_reads_its_source_position(
    login: Callable[[str], aioredis.Redis], keys: KeySpace
) -> None:
    from services.ws.position import SourcePositions

    positions = SourcePositions(login(ServiceName.WS), keys, "replay:abc")
    assert await positions.load() is None
    assert await positions.save("17")
    assert await positions.load() == "17"


async def test_acl_live__publisher_on_a_foreign_topic__is_a_transport_error(
    login: Callable[[str], aioredis.Redis], keys: KeySpace, redis_sync: redis.Redis
) -> None:
    publisher = Publisher(login(ServiceName.WS), CODEC, keys=keys, service=ServiceName.WS)
    with pytest.raises(TransportError, match="no permissions"):
        await publisher.publish(Topic.SIGNALS, _message(Topic.SIGNALS))
    assert redis_sync.xlen(keys.stream(Topic.SIGNALS)) == 0


async def test_acl_live__execution_publishes_a_result_once_and_no_other_user_may(
    login: Callable[[str], aioredis.Redis], keys: KeySpace, redis_sync: redis.Redis
) -> None:
    from services.execution.once import OncePublisher

    def once(role: str) -> OncePublisher:
        return OncePublisher(
            Publisher(login(role), CODEC, keys=keys, service=ServiceName.EXECUTION), Topic.ORDER_RESULTS
        )

    result = _message(Topic.ORDER_RESULTS)
    first = await once(ServiceName.EXECUTION).publish("ord-1", result)
    again = await once(ServiceName.EXECUTION).publish("ord-1", result)
    with pytest.raises(TransportError, match=r"(?i)no permissions"):
        await once(ServiceName.RISK).publish("ord-2", result)
    assert (first.new, again.new, again.stream_id) == (True, False, first.stream_id)
    assert redis_sync.xlen(keys.stream(Topic.ORDER_RESULTS)) == 1
    # Under its partition lease (execution's batch step), the script reads the lease too.
    guard = LeaseGuard(keys.lease(ServiceName.EXECUTION, 0), "me", keys.stream(Topic.ORDERS, 0))
    redis_sync.set(guard.lease, "me")
    [guarded] = await once(ServiceName.EXECUTION).publish_many([("ord-3", result)], guard)
    assert not isinstance(guarded, Exception)
    assert guarded.new
    assert redis_sync.xlen(keys.stream(Topic.ORDER_RESULTS)) == 2


def test_acl_live__urls_carry_credentials_that_redaction_hides(users: AclUsers) -> None:
    for role, url in users.urls.items():
        password = urlsplit(url).password
        assert password
        assert password not in redact_url(url)
        assert users.names[role] in redact_url(url)


def _acl_user_names(client: redis.Redis) -> set[str]:
    return {u.decode() if isinstance(u, bytes) else str(u) for u in client.acl_users()}


def test_temporary_acl_users__deletes_exactly_its_users_even_when_the_test_fails(
    redis_sync: redis.Redis, keys: KeySpace, redis_url: str
) -> None:
    bystander = f"cdbtest-{uuid.uuid4().hex[:12]}-bystander"  # another test's user: must survive
    redis_sync.execute_command("ACL", "SETUSER", bystander, "off")
    names: list[str] = []

    def failing_test_body() -> None:
        with temporary_acl_users(redis_sync, keys, redis_url) as created:
            names.extend(created.names.values())
            assert set(names) <= _acl_user_names(redis_sync)
            raise RuntimeError("the test body failed")

    try:
        with pytest.raises(RuntimeError):
            failing_test_body()
        remaining = _acl_user_names(redis_sync)
    finally:
        delete_acl_users(redis_sync, [bystander])
    assert len(names) == len(ROLES)
    assert not set(names) & remaining
    assert {bystander, "default"} <= remaining


def test_acl_file__loads_in_redis_server_and_enforces_the_rules(tmp_path: Path) -> None:
    passwords = {role: secrets.token_hex(16) for role in ROLES}
    acl_path = tmp_path / "users.acl"
    acl_path.write_text(acl_file(KeySpace(), passwords, redis_version=local_redis_version()))
    server = ThrowawayRedis(extra_args=("--aclfile", str(acl_path))).start()
    keys = KeySpace()
    try:
        anonymous = redis.Redis(port=server.port)
        ws = redis.Redis(port=server.port, username="cdb-ws", password=passwords["ws"])
        with pytest.raises(AuthenticationError):  # the default user is off
            anonymous.get("x")
        assert ws.publish(keys.channel(Topic.MARKET_DATA), b"x") == 0
        with pytest.raises(NoPermissionError):
            ws.xadd(keys.stream(Topic.SIGNALS), {"f": "1"})
        anonymous.close()
        ws.close()
    finally:
        server.close()
