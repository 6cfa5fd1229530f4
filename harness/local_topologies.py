"""Throwaway Redis Cluster and Sentinel set-ups on free 127.0.0.1 ports, for tests and benchmarks.

Built from :class:`~harness.local_redis.LocalRedisServer` processes, so every node
is a real ``redis-server``: a cluster is joined with ``redis-cli --cluster create``
exactly as an operator would do it, and a Sentinel set-up is a primary, its
replicas and a ``redis-server --sentinel`` watching them. Blocking calls (use a
thread from asyncio); ``close()`` kills every process and removes its files.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from core.errors import ConfigError
from harness.local_redis import LocalRedisServer, free_ports, wait_for_server

__all__ = ["LocalRedisCluster", "LocalSentinelSetup", "primary_of", "replicas_of"]

_FAST = ("--appendonly", "no")
"""Benchmarks measure the engine, not fsync: ``durable=False`` turns the AOF off."""


def _redis_cli() -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        raise ConfigError("redis-cli", None, ["redis-cli on PATH"], "apt-get install redis-tools")
    return binary


def _wait(predicate: object, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{what} within {timeout_s}s" + (f" (last error: {last})" if last else ""))


class LocalRedisCluster:
    """``primaries`` cluster-enabled redis-servers joined into one Redis Cluster, each with
    ``replicas`` replicas (``redis-cli --cluster create --cluster-replicas``).

    ``url`` names one node; any node's URL is enough for a cluster client.
    """

    def __init__(
        self, primaries: int = 3, *, node_timeout_ms: int = 2000, durable: bool = True, replicas: int = 0
    ) -> None:
        if primaries < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        self.replicas = replicas
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(node_timeout_ms)]
        # A replica's full sync starts at once, not after the default 5 s diskless-sync delay.
        args += ["--repl-diskless-sync-delay", "0"] if replicas else []
        args += [] if durable else list(_FAST)
        # An explicit bus port: the default (port + 10000) may be taken, or above 65535.
        # Every node's two ports chosen at once, so no two of them can be the same port.
        count = primaries * (1 + replicas)
        ports = free_ports(2 * count)
        self.nodes = [
            LocalRedisServer(port=port, extra_args=[*args, "--cluster-port", str(bus)])
            for port, bus in zip(ports[:count], ports[count:], strict=True)
        ]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port of the first node>/0``."""
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        """The port of every node."""
        return [n.port for n in self.nodes]

    def start(self, timeout_s: float = 20.0) -> LocalRedisCluster:
        """Start every node, create the cluster, wait until every node says ``cluster_state:ok``."""
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run(
                [
                    _redis_cli(),
                    "--cluster",
                    "create",
                    *addresses,
                    *(["--cluster-replicas", str(self.replicas)] if self.replicas else []),
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=timeout_s,
            )
            for port in self.ports:
                _wait(
                    lambda p=port: _cluster_ok(p), f"node {port} did not report cluster_state:ok", timeout_s
                )
            for port in self.ports:
                _wait(lambda p=port: _replica_synced(p), f"replica {port} did not sync", timeout_s)
            # Synced is not yet known to every node: each one's CLUSTER SLOTS must list the
            # replicas (gossip), or a test asking one node for a primary's replica finds none.
            for port in self.ports:
                _wait(
                    lambda p=port: _replicas_listed(p, self.replicas),
                    f"node {port} does not list {self.replicas} replica(s) per primary",
                    timeout_s,
                )
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill every node and remove its files."""
        for node in self.nodes:
            node.close()


def _replica_synced(port: int) -> bool:
    # True for a primary; for a replica, once its link to the primary is up.
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        info = client.info("replication")
        return info.get("role") == "master" or info.get("master_link_status") == "up"
    finally:
        client.close()


def _replicas_listed(port: int, replicas: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        ranges = client.execute_command("CLUSTER", "SLOTS")
        return bool(ranges) and all(len(row) - 3 >= replicas for row in ranges)
    finally:
        client.close()


def primary_of(port: int, key: str) -> int:
    """The port of the primary that holds ``key``'s slot now (asked of the node at ``port``)."""
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return int(primary[1])
    finally:
        client.close()
    raise LookupError(f"no node serves the slot of {key}")


def replicas_of(port: int, primary: int) -> list[int]:
    """The ports of the replicas of the primary at ``primary`` (from CLUSTER SLOTS)."""
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        for _start, _end, owner, *replicas in client.execute_command("CLUSTER", "SLOTS"):
            if int(owner[1]) == primary:
                return [int(r[1]) for r in replicas]
    finally:
        client.close()
    return []


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        info = client.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text
    finally:
        client.close()


class LocalSentinelSetup:
    """One primary, ``replicas`` replicas and one Sentinel monitoring them as ``master_name``.

    ``down_after_ms`` and ``failover_timeout_ms`` are small by default, so a killed
    primary is replaced within a couple of seconds.
    """

    def __init__(
        self,
        *,
        replicas: int = 1,
        master_name: str = "cdbmaster",
        down_after_ms: int = 500,
        failover_timeout_ms: int = 2000,
        durable: bool = True,
    ) -> None:
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        # A replica's full sync starts at once, not after the default 5 s diskless-sync delay.
        self._fast: Sequence[str] = ("--repl-diskless-sync-delay", "0", *(() if durable else _FAST))
        # The servers' and the Sentinel's ports chosen at once, so no two can be the same port.
        primary_port, self.sentinel_port, *replica_ports = free_ports(2 + replicas)
        self.primary = LocalRedisServer(port=primary_port, extra_args=self._fast)
        self.replicas = [
            LocalRedisServer(
                port=port, extra_args=[*self._fast, "--replicaof", "127.0.0.1", str(primary_port)]
            )
            for port in replica_ports
        ]
        self._sentinel_dir = Path(self.primary.workdir) / "sentinel"
        self._sentinel: subprocess.Popen[bytes] | None = None

    @property
    def servers(self) -> list[LocalRedisServer]:
        """The data nodes: the first primary, then the replicas (roles change on fail-over)."""
        return [self.primary, *self.replicas]

    @property
    def sentinels(self) -> str:
        """``REDIS_SENTINELS`` for this set-up: ``127.0.0.1:<sentinel port>``."""
        return f"127.0.0.1:{self.sentinel_port}"

    @property
    def sentinel_url(self) -> str:
        """``redis://127.0.0.1:<sentinel port>/0``: a URL that mode detection sees as a Sentinel."""
        return f"redis://127.0.0.1:{self.sentinel_port}/0"

    def start(self, timeout_s: float = 20.0) -> LocalSentinelSetup:
        """Start the primary, the replicas (wait until they are in sync) and the Sentinel."""
        try:
            self.primary.start()
            for replica in self.replicas:
                replica.start()
            _wait(self._replicas_synced, "the replicas did not sync", timeout_s)
            self._start_sentinel()
            _wait(self._sentinel_sees_replicas, "the sentinel did not discover the replicas", timeout_s)
        except BaseException:
            self.close()
            raise
        return self

    def master_port(self) -> int:
        """The port of the server the Sentinel names as primary now."""
        client = redis.Redis(port=self.sentinel_port, socket_timeout=1)
        try:
            _host, port = client.sentinel_get_master_addr_by_name(self.master_name)
            return int(port)
        finally:
            client.close()

    def server_on(self, port: int) -> LocalRedisServer:
        """The data node listening on ``port``."""
        return next(s for s in self.servers if s.port == port)

    def wait_for_failover(self, old_port: int, timeout_s: float = 20.0) -> int:
        """Block until the Sentinel names a primary other than ``old_port``; returns its port."""
        _wait(lambda: self.master_port() != old_port, "the sentinel did not promote a replica", timeout_s)
        return self.master_port()

    def wait_for_replica(self, port: int, timeout_s: float = 20.0) -> None:
        """Block until the node on ``port`` is a replica in sync with its primary."""

        def synced() -> bool:
            client = redis.Redis(port=port, socket_timeout=1)
            try:
                info = client.info("replication")
                return info.get("role") == "slave" and info.get("master_link_status") == "up"
            finally:
                client.close()

        _wait(synced, f"node {port} did not become an in-sync replica", timeout_s)

    def rejoin(self, port: int, timeout_s: float = 20.0) -> None:
        """Start the (killed) node on ``port`` again as a replica of the current primary and wait
        until it is in sync: what the Sentinel does by itself once it sees the old primary back
        (after about 15 s: it waits for the node's role report to settle), only sooner."""
        server = self.server_on(port)
        primary = self.master_port()
        server.extra_args = (*self._fast, "--replicaof", "127.0.0.1", str(primary))
        server.start()
        self.wait_for_replica(port, timeout_s)

    def close(self) -> None:
        """Kill the Sentinel and every data node; remove their files."""
        if self._sentinel is not None:
            self._sentinel.kill()
            self._sentinel.wait(timeout=10)
            self._sentinel = None
        for server in self.servers:
            server.close()

    def _start_sentinel(self) -> None:
        self._sentinel_dir.mkdir(parents=True, exist_ok=True)
        conf = self._sentinel_dir / "sentinel.conf"  # Sentinel rewrites its file: it must be writable
        name = self.master_name
        conf.write_text(
            "\n".join(
                [
                    f"port {self.sentinel_port}",
                    "bind 127.0.0.1",
                    f"dir {self._sentinel_dir}",
                    f"sentinel monitor {name} 127.0.0.1 {self.primary.port} 1",
                    f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                    f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {name} 1",
                    # Known at once, instead of after the Sentinel's first INFO round (seconds).
                    *(f"sentinel known-replica {name} 127.0.0.1 {r.port}" for r in self.replicas),
                    "",
                ]
            ),
            encoding="utf-8",
        )
        binary = shutil.which("redis-server")
        assert binary is not None  # LocalRedisServer checked it
        self._sentinel = subprocess.Popen(
            [binary, str(conf), "--sentinel", "--logfile", str(self._sentinel_dir / "sentinel.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_server(self._sentinel, self.sentinel_port)

    def _replicas_synced(self) -> bool:
        client = redis.Redis(port=self.primary.port, socket_timeout=1)
        try:
            info = client.info("replication")
            online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            return len([v for v in online if v.get("state") == "online"]) >= len(self.replicas)
        finally:
            client.close()

    def _sentinel_sees_replicas(self) -> bool:
        client = redis.Redis(port=self.sentinel_port, socket_timeout=1)
        try:
            return len(client.sentinel_slaves(self.master_name)) >= len(self.replicas)
        finally:
            client.close()
