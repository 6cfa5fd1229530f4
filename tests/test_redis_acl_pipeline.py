"""The whole pipeline under the deployable ACL: four ``cdb service`` processes, each logged
in as its own user, on a redis-server whose ``default`` user is off (issue 14, item 7).

Proves the least-privilege rules leave every service able to do its job (publish, consume,
dead-letter, report status, record the topology with SETNX, leases) and that the operator
user then reads the result. ``ACL LOG`` staying empty shows no service was refused anything.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import redis
from typer.testing import CliRunner

from cdb.cli.main import app
from core.redis.acl import OPERATOR, ROLES, acl_file
from core.redis.acl_audit import trimmed_before_delivery
from core.topics import KeySpace, ServiceName, Topic
from services.ws.replay import BUNDLED_TRADES, load_trades
from tests.support.redis_version import local_redis_version
from tests.support.servers import ThrowawayRedis

pytestmark = pytest.mark.integration

CDB = Path(sys.executable).parent / "cdb"
KEYS = KeySpace()
ADMIN = "cdbtest-admin"


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """A throwaway server running the deployable ACL file plus a test admin: (port, passwords)."""
    passwords = {role: secrets.token_hex(16) for role in (*ROLES, ADMIN)}
    text = acl_file(KEYS, {r: passwords[r] for r in ROLES}, redis_version=local_redis_version())
    (tmp_path / "users.acl").write_text(text + f"user {ADMIN} on >{passwords[ADMIN]} ~* &* +@all\n")
    server = ThrowawayRedis(extra_args=("--aclfile", str(tmp_path / "users.acl"))).start()
    try:
        yield server.port, passwords
    finally:
        server.close()


def _url(port: int, passwords: dict[str, str], role: str) -> str:
    user = ADMIN if role == ADMIN else f"cdb-{role}"
    return f"redis://{user}:{passwords[role]}@127.0.0.1:{port}/0"


def _done(admin: redis.Redis, trades: int) -> bool:
    if (
        admin.exists(KEYS.stream(Topic.MARKET_DATA)) == 0
        or admin.xlen(KEYS.stream(Topic.MARKET_DATA)) < trades
    ):
        return False
    for service in (ServiceName.SIGNAL, ServiceName.RISK, ServiceName.EXECUTION):
        source = KEYS.stream(service.consumes)  # type: ignore[arg-type]
        if not admin.exists(source):
            return False
        groups = {g["name"].decode(): g for g in admin.xinfo_groups(source)}
        group = groups.get(KEYS.group(service))
        if group is None or group["lag"] != 0 or group["pending"] != 0:
            return False
    return True


def test_acl_pipeline__four_services_as_their_own_users_run_the_bundled_trades_end_to_end(
    acl_redis: tuple[int, dict[str, str]], tmp_path: Path
) -> None:
    port, passwords = acl_redis
    trades = len(load_trades(BUNDLED_TRADES))
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "KEY_PREFIX", "WS_"))
    }
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []
    admin = redis.Redis.from_url(_url(port, passwords, ADMIN))
    try:
        for service in (ServiceName.EXECUTION, ServiceName.RISK, ServiceName.SIGNAL, ServiceName.WS):
            env = {
                **base,
                "REDIS_URL": _url(port, passwords, service.value),
                "INSTANCE": f"{service.value}-1",
                "WS_SOURCE": "replay",
                "WS_REPLAY_PACE": "0",
            }
            log = (tmp_path / f"{service.value}.log").open("wb")
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [str(CDB), "service", service.value], env=env, cwd=tmp_path, stdout=log, stderr=log
                )
            )
        deadline = time.monotonic() + 180
        while not _done(admin, trades):
            assert time.monotonic() < deadline, "the pipeline did not drain under the ACL"
            assert all(p.poll() is None for p in procs), [p.args for p in procs if p.poll() is not None]
            time.sleep(0.5)
        results = admin.xlen(KEYS.stream(Topic.ORDER_RESULTS))
        orders = admin.xlen(KEYS.stream(Topic.ORDERS))
        refused = admin.execute_command("ACL", "LOG")
        statuses = [s for s in ServiceName if any(admin.scan_iter(match=KEYS.status(s, "*")))]
        operator = redis.Redis.from_url(_url(port, passwords, OPERATOR))
        losses = trimmed_before_delivery(operator, KEYS)
        operator.close()
        as_operator = ["--redis-url", _url(port, passwords, OPERATOR)]
        tools = {
            " ".join(args): CliRunner().invoke(app, [*args, *as_operator])
            for args in (
                ["status", "--json"],
                ["dlq", "list", "--json"],
                ["topology", "show"],
                ["acl", "audit"],
            )
        }
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
        admin.close()
    assert orders > 0
    assert results == orders
    assert admin_topology_recorded(port, passwords)
    assert refused == [], refused
    assert statuses == list(ServiceName)
    assert losses == []
    assert {name: done.exit_code for name, done in tools.items()} == dict.fromkeys(tools, 0), {
        name: done.output[-500:] for name, done in tools.items()
    }
    assert len(json.loads(tools["status --json"].stdout)) >= 4


def admin_topology_recorded(port: int, passwords: dict[str, str]) -> bool:
    client = redis.Redis.from_url(_url(port, passwords, ADMIN))
    try:
        return client.get(KEYS.topology()) == b'{"partitions": 1}'
    finally:
        client.close()
