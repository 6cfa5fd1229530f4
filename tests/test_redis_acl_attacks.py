"""Issue 14, item 8: each least-privilege hole, tried as each user on a real redis-server.

A throwaway redis-server loads the deployable ACL file (``acl_file`` with passwords, the
``default`` user off) plus one test-only admin line, so the server holds exactly the rules
docker compose deploys. Each attack of the issue is tried as every user it concerns:

- a producer trimming its stream (``XADD ... MAXLEN 0``): no other user may touch the
  stream; the producer itself cannot be stopped by ACLs (and a Redis Function would run
  with its caller's rights, shown below), so the loss is made visible by ``cdb acl audit``;
- overwriting or deleting the topology key: refused to every service user; the error a
  service prints names ``cdb topology reset``, which works as ``cdb-operator``;
- forging a message as the operator: refused on every topic;
- the default user: off, every command of a connection that did not log in is refused.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from typer.testing import CliRunner

from cdb.cli.main import app
from core.errors import ConfigError
from core.redis.acl import OPERATOR, REPLAY, ROLES, acl_file
from core.redis.acl_audit import trimmed_before_delivery
from core.redis.topology import ensure_topology
from core.topics import KeySpace, ServiceName, Topic
from tests.support.redis_version import local_redis_version
from tests.support.servers import ThrowawayRedis

pytestmark = pytest.mark.integration

KEYS = KeySpace()
ADMIN = "cdbtest-admin"
SERVICES = [s.value for s in ServiceName]


@dataclass(frozen=True)
class AclServer:
    """A redis-server running the deployable ACL file; ``url(role)`` logs in as that role."""

    port: int
    passwords: dict[str, str]

    def url(self, role: str) -> str:
        user = ADMIN if role == ADMIN else f"cdb-{role}"
        return f"redis://{user}:{self.passwords[role]}@127.0.0.1:{self.port}/0"

    def client(self, role: str) -> redis.Redis:
        return redis.Redis.from_url(self.url(role))


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclServer]:
    """The deployable ACL file (default user off) plus a test admin, on a throwaway server."""
    passwords = {role: secrets.token_hex(16) for role in (*ROLES, ADMIN)}
    text = acl_file(KEYS, {r: passwords[r] for r in ROLES}, redis_version=local_redis_version())
    path = tmp_path_factory.mktemp("acl") / "users.acl"
    path.write_text(text + f"user {ADMIN} on >{passwords[ADMIN]} ~* &* +@all\n")
    server = ThrowawayRedis(extra_args=("--aclfile", str(path))).start()
    try:
        yield AclServer(server.port, passwords)
    finally:
        server.close()


@pytest.fixture
def admin(acl_server: AclServer) -> Iterator[redis.Redis]:
    """The test admin; every key it sees is removed after each test (a server of our own)."""
    client = acl_server.client(ADMIN)
    client.flushall()
    yield client
    client.flushall()
    client.close()


@contextlib.contextmanager
def logged_in(acl_server: AclServer, role: str) -> Iterator[redis.Redis]:
    client = acl_server.client(role)
    try:
        yield client
    finally:
        client.close()


# --- a producer trimming its stream ---------------------------------------------------------

ORDERS = KEYS.stream(Topic.ORDERS)
TRIMS = {
    "XADD MAXLEN 0": ["XADD", ORDERS, "MAXLEN", "0", "*", "f", "1"],
    "XTRIM MAXLEN 0": ["XTRIM", ORDERS, "MAXLEN", "0"],
    "DEL": ["DEL", ORDERS],
    "XGROUP DESTROY": ["XGROUP", "DESTROY", ORDERS, KEYS.group(ServiceName.EXECUTION)],
}
NOT_THE_PRODUCER = [r for r in ROLES if r not in (ServiceName.RISK.value, REPLAY)]


def _orders_with_execution_behind(admin: redis.Redis, count: int = 89) -> None:
    for i in range(count):
        admin.xadd(ORDERS, {"order_id": f'"ord-{i}"'})
    admin.xgroup_create(ORDERS, KEYS.group(ServiceName.EXECUTION), id="0")
    admin.xreadgroup(KEYS.group(ServiceName.EXECUTION), "i1", {ORDERS: ">"}, count=1)


@pytest.mark.parametrize("attack", list(TRIMS))
@pytest.mark.parametrize("role", NOT_THE_PRODUCER)
def test_acl_attack__no_user_but_the_producer_can_trim_or_delete_orders_stream(
    role: str, attack: str, acl_server: AclServer, admin: redis.Redis
) -> None:
    _orders_with_execution_behind(admin)
    with logged_in(acl_server, role) as client, pytest.raises(NoPermissionError):
        client.execute_command(*TRIMS[attack])
    assert admin.xlen(ORDERS) == 89


def test_acl_attack__the_producers_own_trim_is_reported_by_cdb_acl_audit(
    acl_server: AclServer, admin: redis.Redis
) -> None:
    _orders_with_execution_behind(admin)
    with logged_in(acl_server, ServiceName.RISK.value) as risk:
        risk.execute_command(*TRIMS["XADD MAXLEN 0"])  # what no ACL can refuse its producer
    with logged_in(acl_server, OPERATOR) as operator:
        (loss,) = trimmed_before_delivery(operator, KEYS)
    done = CliRunner().invoke(app, ["acl", "audit", "--json", "--redis-url", acl_server.url(OPERATOR)])
    # 88 unread orders and the attacker's own entry were trimmed before execution read them.
    assert (loss.stream, loss.group, loss.lost) == (ORDERS, KEYS.group(ServiceName.EXECUTION), 89)
    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert report["trimmed_before_delivery"][0]["lost"] == 89
    assert report["default_user_on"] is False


def test_acl_attack__cdb_acl_audit__an_honest_backlog_is_no_loss(
    acl_server: AclServer, admin: redis.Redis
) -> None:
    _orders_with_execution_behind(admin)
    admin.xadd(ORDERS, {"order_id": '"ord-89"'}, maxlen=100, approximate=False)  # trims nothing unread
    done = CliRunner().invoke(app, ["acl", "audit", "--redis-url", acl_server.url(OPERATOR)])
    assert done.exit_code == 0, done.output
    assert "no topic stream lost unread entries" in done.stdout
    assert "default user: off" in done.stdout


def test_cdb_acl_audit__a_server_without_the_acl_file__reports_the_default_user_on(
    throwaway_redis: ThrowawayRedis,
) -> None:
    done = CliRunner().invoke(app, ["acl", "audit", "--json", "--redis-url", throwaway_redis.url])
    assert done.exit_code == 1, done.output
    assert json.loads(done.stdout) == {"default_user_on": True, "trimmed_before_delivery": []}


def test_redis_function__runs_with_its_callers_rights__so_it_cannot_guard_trimming(
    acl_server: AclServer, admin: redis.Redis
) -> None:
    # Why trimming is not routed through a Redis Function: a user allowed only FCALL cannot
    # make the function's XADD, and a user allowed XADD can trim directly.
    admin.execute_command(
        "FUNCTION",
        "LOAD",
        "REPLACE",
        "#!lua name=cdbtest_probe\n"
        "redis.register_function('cdbtest_xadd', function(keys, args) "
        "return redis.call('XADD', keys[1], 'MAXLEN', '~', '1000', '*', 'f', args[1]) end)",
    )
    user, password = f"cdbtest-fcall-{secrets.token_hex(4)}", secrets.token_hex(16)
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", f"~{ORDERS}", "+fcall")
    caller = redis.Redis(port=acl_server.port, username=user, password=password)
    try:
        with pytest.raises(ResponseError, match="can't run this command"):
            caller.fcall("cdbtest_xadd", 1, ORDERS, "x")
    finally:
        caller.close()
        admin.execute_command("ACL", "DELUSER", user)
        admin.execute_command("FUNCTION", "DELETE", "cdbtest_probe")
    assert admin.xlen(ORDERS) == 0


# --- the topology key ------------------------------------------------------------------------

TOPOLOGY_WRITES = {
    "SET": ["SET", KEYS.topology(), '{"partitions": 7}'],
    "SET XX": ["SET", KEYS.topology(), '{"partitions": 7}', "XX"],
    "DEL": ["DEL", KEYS.topology()],
    "UNLINK": ["UNLINK", KEYS.topology()],
    "EXPIRE": ["EXPIRE", KEYS.topology(), "1"],
    "RENAME": ["RENAME", KEYS.topology(), "elsewhere"],
}


@pytest.mark.parametrize("write", list(TOPOLOGY_WRITES))
@pytest.mark.parametrize("role", [*SERVICES, REPLAY])
def test_acl_attack__no_service_user_can_overwrite_or_delete_the_topology_key(
    role: str, write: str, acl_server: AclServer, admin: redis.Redis
) -> None:
    admin.set(KEYS.topology(), '{"partitions": 1}')
    with logged_in(acl_server, role) as client, pytest.raises(NoPermissionError):
        client.execute_command(*TOPOLOGY_WRITES[write])
    assert admin.get(KEYS.topology()) == b'{"partitions": 1}'


@pytest.mark.parametrize("role", SERVICES)
async def test_acl_attack__a_service_creates_the_topology_key_once_and_setnx_never_overwrites(
    role: str, acl_server: AclServer, admin: redis.Redis
) -> None:
    client = aioredis.Redis.from_url(acl_server.url(role))
    try:
        assert await ensure_topology(client, KEYS) == 1  # created through SETNX
        assert not await client.setnx(KEYS.topology(), '{"partitions": 7}')
        with pytest.raises(ConfigError, match="cdb topology reset") as refused:
            await ensure_topology(client, KEYS.with_partitions(7))
    finally:
        await client.aclose()
    assert admin.get(KEYS.topology()) == b'{"partitions": 1}'
    assert "DEL" not in str(refused.value)


async def test_acl_attack__the_command_the_topology_error_names_works_as_operator(
    acl_server: AclServer, admin: redis.Redis
) -> None:
    admin.set(KEYS.topology(), "not json")  # e.g. written by hand: unreadable
    service = aioredis.Redis.from_url(acl_server.url(ServiceName.SIGNAL.value))
    try:
        with pytest.raises(ConfigError, match="cdb topology reset"):
            await ensure_topology(service, KEYS.with_partitions(2))
        as_service = CliRunner().invoke(app, ["topology", "reset", "--redis-url", acl_server.url("signal")])
        reset = CliRunner().invoke(app, ["topology", "reset", "--redis-url", acl_server.url(OPERATOR)])
        recorded = await ensure_topology(service, KEYS.with_partitions(2))
        changed = CliRunner().invoke(app, ["topology", "set", "4", "--redis-url", acl_server.url(OPERATOR)])
    finally:
        await service.aclose()
    assert as_service.exit_code != 0
    assert "cdb-operator" in as_service.output
    assert reset.exit_code == 0, reset.output
    assert recorded == 2
    assert changed.exit_code == 0, changed.output
    assert json.loads(admin.get(KEYS.topology()) or b"{}") == {"partitions": 4}


# --- the operator forging messages -----------------------------------------------------------


@pytest.mark.parametrize("topic", list(Topic))
@pytest.mark.parametrize("command", ["XADD", "PUBLISH"])
def test_acl_attack__the_operator_cannot_forge_a_message(
    topic: Topic, command: str, acl_server: AclServer, admin: redis.Redis
) -> None:
    args = (
        ["XADD", KEYS.stream(topic), "*", "order_id", '"forged"']
        if command == "XADD"
        else ["PUBLISH", KEYS.channel(topic), b'{"order_id": "forged"}']
    )
    with logged_in(acl_server, OPERATOR) as operator, pytest.raises(NoPermissionError):
        operator.execute_command(*args)
    assert admin.exists(KEYS.stream(topic)) == 0


def test_acl_attack__the_operator_still_reads_everything(acl_server: AclServer, admin: redis.Redis) -> None:
    _orders_with_execution_behind(admin, count=3)
    with logged_in(acl_server, OPERATOR) as operator:
        entries = operator.xrange(ORDERS)
        groups = operator.xinfo_groups(ORDERS)
        keys = sorted(k.decode() for k in operator.scan_iter(match="*"))
    assert len(entries) == 3
    assert groups[0]["pending"] == 1
    assert keys == [ORDERS]


# --- the default user ------------------------------------------------------------------------


def _raw(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command)
        return sock.recv(4096)


@pytest.mark.parametrize(
    "command",
    [b"PING\r\n", b"GET x\r\n", b"KEYS *\r\n", b"XADD orders_stream * f 1\r\n", b"FLUSHALL\r\n"],
)
def test_acl_attack__without_a_login_every_command_is_refused(
    command: bytes, acl_server: AclServer, admin: redis.Redis
) -> None:
    assert _raw(acl_server.port, command).startswith(b"-NOAUTH")
    assert admin.dbsize() == 0


@pytest.mark.parametrize("password", ["", "nopass", "default"])
def test_acl_attack__nobody_can_log_in_as_default(password: str, acl_server: AclServer) -> None:
    client = redis.Redis(port=acl_server.port, username="default", password=password or None)
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            client.ping()
    finally:
        client.close()


def test_compose_redis_healthcheck__passes_on_a_server_whose_default_user_is_off(
    acl_server: AclServer,
) -> None:
    import shutil
    import subprocess

    import yaml

    compose = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text())
    test = compose["services"]["redis"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    cli = shutil.which("redis-cli")
    assert cli is not None
    command = test[1].replace("redis-cli", f"{cli} -p {acl_server.port}", 1)
    ok = subprocess.run(["sh", "-c", command], timeout=30, check=False)
    stopped = subprocess.run(
        ["sh", "-c", test[1].replace("redis-cli", f"{cli} -p 1", 1)], timeout=30, check=False
    )
    assert ok.returncode == 0
    assert stopped.returncode != 0


def test_cdb_acl_apply__creates_the_users_and_turns_the_default_user_off_on_a_live_server(
    throwaway_redis: ThrowawayRedis,
) -> None:
    port = throwaway_redis.port
    admin_password = secrets.token_hex(16)
    bootstrap = redis.Redis(port=port)  # still the default user: on, every right
    bootstrap.execute_command("ACL", "SETUSER", ADMIN, "on", f">{admin_password}", "~*", "&*", "+@all")
    bootstrap.close()
    passwords = {role: secrets.token_hex(16) for role in ROLES}
    env = {f"CDB_ACL_{role.upper()}_PASSWORD": pw for role, pw in passwords.items()}
    as_default = CliRunner().invoke(
        app, ["acl", "apply", "--disable-default", "--redis-url", throwaway_redis.url], env=env
    )
    admin_url = f"redis://{ADMIN}:{admin_password}@127.0.0.1:{port}/0"
    done = CliRunner().invoke(app, ["acl", "apply", "--disable-default", "--redis-url", admin_url], env=env)
    operator = redis.Redis(port=port, username="cdb-operator", password=passwords[OPERATOR])
    try:
        assert operator.ping()
        with pytest.raises(NoPermissionError):
            operator.xadd(KEYS.stream(Topic.ORDERS), {"order_id": '"forged"'})
    finally:
        operator.close()
    assert as_default.exit_code == 2
    assert "lock itself out" in as_default.output
    assert done.exit_code == 0, done.output
    assert _raw(port, b"PING\r\n").startswith(b"-NOAUTH")
