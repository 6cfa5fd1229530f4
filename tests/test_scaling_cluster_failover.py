"""A replicated cluster under fire (issue 16): 3 primaries with one replica each, the pipeline
on 4 partitions with ``REDIS_WAIT_REPLICAS=1``; a primary is killed (then restarted, rejoining
as a replica), its replica takes over with ``CLUSTER FAILOVER``, or a partition stream's slot
moves to another primary, mid-run; the fills equal the same cluster's baseline each time."""

from __future__ import annotations

import asyncio
import gc
import secrets
import time
from collections.abc import Iterator

import pytest
import redis
from typer.testing import CliRunner

from cdb.cli.main import app
from core.redis.acl import ROLES, acl_user
from core.redis.modes import RedisTarget
from core.topics import RedisMode, Topic
from harness.local_topologies import LocalRedisCluster, primary_of, replicas_of
from services.pipeline import PipelineHook, PipelineRun
from tests.scaling_helpers import assert_same_trades, run

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # redis-py's cluster client forgets the connections of nodes a fail-over or a reshard took
    # out of its slot map without closing them; their ResourceWarnings surface whenever the
    # collector runs, i.e. in whichever later test. They are collected (and accepted) here.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _collect_dropped_cluster_connections() -> Iterator[None]:
    """Run the collector at the end of each test of this module (see pytestmark)."""
    yield
    gc.collect()


PARTITIONS = 4
WAIT = {"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "2000"}


@pytest.fixture
def cluster() -> Iterator[LocalRedisCluster]:
    nodes = LocalRedisCluster(3, replicas=1, durable=False, node_timeout_ms=1000).start()
    yield nodes
    nodes.close()


class FailOver(PipelineHook):
    """Halfway: kill the primary holding market_data p0 (or ask its replica to take over);
    records how long until the replica serves the slot."""

    def __init__(self, cluster: LocalRedisCluster, *, kill: bool, while_publishing: bool = False) -> None:
        self.cluster = cluster
        self.kill = kill
        self.while_publishing = while_publishing
        self.task: asyncio.Task[None] | None = None
        self.failover_s: float | None = None
        self.resumed_s: float | None = None

    async def after_batch(self, run: PipelineRun, published: int, total: int) -> None:
        if self.task is not None or published < total // 2:
            return
        # In the background, ws keeps publishing through the window the cluster refuses slots.
        self.task = asyncio.create_task(self._fail_over(run))
        if not self.while_publishing:
            await self.task

    async def before_drain(self, run: PipelineRun) -> None:
        assert self.task is not None
        await self.task

    async def _fail_over(self, run: PipelineRun) -> None:
        key = run.keys.stream(Topic.MARKET_DATA, 0)
        alive = list(self.cluster.nodes)
        old = primary_of(alive[0].port, key)
        (replica,) = replicas_of(alive[0].port, old)
        started = time.monotonic()
        if self.kill:
            next(n for n in self.cluster.nodes if n.port == old).kill()
        else:
            client = redis.Redis(port=replica, socket_timeout=2)
            client.execute_command("CLUSTER", "FAILOVER")
            client.close()
        async with asyncio.timeout(30):
            while True:
                try:
                    if await asyncio.to_thread(primary_of, replica, key) == replica:
                        break
                except Exception:  # the cluster is re-forming
                    pass
                await asyncio.sleep(0.05)
        self.failover_s = time.monotonic() - started
        if self.kill:
            # The orchestrator restarts the dead node: it rejoins as the new primary's replica,
            # so WAIT 1 can be met again on that shard.
            dead = next(n for n in self.cluster.nodes if n.port == old)
            await asyncio.to_thread(dead.start)
            async with asyncio.timeout(30):
                while not await asyncio.to_thread(_synced_replica, old):
                    await asyncio.sleep(0.1)
        self.resumed_s = time.monotonic() - started


def _synced_replica(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        info = client.info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"
    except redis.RedisError:
        return False
    finally:
        client.close()


def _move_slot(cluster: LocalRedisCluster, key: str) -> tuple[int, int]:
    """Move ``key``'s slot, with every key in it, to another primary (CLUSTER SETSLOT
    IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE: what ``redis-cli --cluster reshard`` does)."""
    any_port = cluster.nodes[0].port
    source = primary_of(any_port, key)
    primaries = {primary_of(any_port, f"{{k{i}}}") for i in range(64)}
    target = next(p for p in sorted(primaries) if p != source)
    clients = {p: redis.Redis(port=p, socket_timeout=5) for p in primaries}
    try:
        ids = {p: c.execute_command("CLUSTER", "MYID").decode() for p, c in clients.items()}
        slot = int(clients[source].execute_command("CLUSTER", "KEYSLOT", key))
        clients[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        clients[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        while keys := clients[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            clients[source].execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for client in clients.values():
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    finally:
        for client in clients.values():
            client.close()
    return source, target


class Reshard(PipelineHook):
    """Halfway: move the slot of market_data p0 (stream, lease) to another primary."""

    def __init__(self, cluster: LocalRedisCluster) -> None:
        self.cluster = cluster
        self.moved: tuple[int, int] | None = None
        self.move_s: float | None = None

    async def after_batch(self, run: PipelineRun, published: int, total: int) -> None:
        if self.moved is None and published >= total // 2:
            started = time.monotonic()
            self.moved = await asyncio.to_thread(
                _move_slot, self.cluster, run.keys.stream(Topic.MARKET_DATA, 0)
            )
            self.move_s = time.monotonic() - started


async def test_replicated_cluster__a_partition_stream_resharded_mid_run__trades_like_the_baseline(
    cluster: LocalRedisCluster,
) -> None:
    target = RedisTarget(cluster.url, RedisMode.CLUSTER)
    baseline = await run(target, partitions=PARTITIONS, environ=WAIT)
    hook = Reshard(cluster)
    moved = await run(target, partitions=PARTITIONS, environ=WAIT, hooks=[hook], ws_batch=20, timeout_s=120)
    print({"moved": hook.moved, "move_s": hook.move_s})
    assert hook.moved is not None
    assert hook.moved[0] != hook.moved[1]
    assert_same_trades(moved, baseline)


@pytest.mark.parametrize(
    ("kill", "while_publishing"),
    [(True, False), (True, True), (False, True)],
    ids=["primary-killed", "primary-killed-while-ws-publishes", "manual-failover"],
)
async def test_replicated_cluster__a_fail_over_mid_run__trades_like_the_baseline(
    cluster: LocalRedisCluster, kill: bool, while_publishing: bool
) -> None:
    """Every entry is handled in order and the fills equal the baseline, whatever the client
    re-sends. On a fail-over redis-py's cluster client closes every node's connections (each
    fifth MOVED reply, or CLUSTERDOWN, makes it reload its slot map), in-flight commands
    included, and re-sends them: a fenced read the server had already run is then answered with the entries it
    delivered, not the next ones (core.redis.fence). Before that, the manual-failover case
    diverged in 2 of 30 runs (3 of 30 lost a read's reply); after it, 0 divergences in the
    runs given in docs/scaling.md."""
    target = RedisTarget(cluster.url, RedisMode.CLUSTER)
    baseline = await run(target, partitions=PARTITIONS, environ=WAIT)
    hook = FailOver(cluster, kill=kill, while_publishing=while_publishing)
    faulted = await run(target, partitions=PARTITIONS, environ=WAIT, hooks=[hook], ws_batch=20, timeout_s=120)
    print({"kill": kill, "ws": while_publishing, "failover_s": hook.failover_s, "resumed_s": hook.resumed_s})
    assert hook.failover_s is not None
    assert len(baseline.order_results) > 5
    assert_same_trades(faulted, baseline)


def test_cdb_acl_apply__configures_every_node_of_a_replicated_cluster(cluster: LocalRedisCluster) -> None:
    passwords = {role: secrets.token_hex(16) for role in ROLES}
    env = {f"CDB_ACL_{role.upper()}_PASSWORD": pw for role, pw in passwords.items()}
    done = CliRunner().invoke(app, ["acl", "apply", "--redis-url", cluster.url], env=env)
    assert done.exit_code == 0, done.output
    assert f"on {len(cluster.nodes)} nodes" in done.output
    for node in cluster.nodes:
        for role, password in passwords.items():
            client = redis.Redis(port=node.port, username=acl_user(role), password=password, socket_timeout=2)
            try:
                assert client.ping(), (node.port, role)
            finally:
                client.close()
