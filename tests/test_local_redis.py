"""Throwaway redis-servers (harness.local_redis): the ports they are given and what a failed
start says. A server that cannot start must say why at once, not after a silent 10-s wait."""

from __future__ import annotations

import socket

import pytest
import redis

from harness.local_redis import LocalRedisServer, ServerDiedError, free_ports


def test_free_ports__are_distinct_and_free_to_bind() -> None:
    ports = free_ports(40)

    assert len(set(ports)) == 40
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # raises if anything holds it


def test_start__on_a_port_someone_listens_on__fails_at_once_quoting_the_servers_log() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = LocalRedisServer(port=int(holder.getsockname()[1]))
        try:
            with pytest.raises(ServerDiedError) as raised:
                server.start()
            assert "exited with code" in str(raised.value)
            assert "Address already in use" in str(raised.value)
            assert server.process is None  # nothing left running
            assert not server.workdir.exists()  # nor on disk: the caller had nothing to close
        finally:
            server.close()


def test_start__then_restart__serves_on_the_same_port_and_keeps_acknowledged_writes() -> None:
    server = LocalRedisServer().start()
    try:
        client = redis.Redis(port=server.port, socket_timeout=5)
        client.set("kept", "1")
        server.restart(downtime_s=0.1)
        assert redis.Redis(port=server.port, socket_timeout=5).get("kept") == b"1"
        assert server.log.exists()
        assert "Ready to accept connections" in server.log.read_text()
    finally:
        server.close()


def test_start__of_a_server_that_answers_no_one_without_a_password__returns_once_it_is_ready() -> None:
    server = LocalRedisServer(extra_args=("--requirepass", "secret")).start()
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, socket_timeout=5).ping()
        assert redis.Redis(port=server.port, password="secret", socket_timeout=5).ping()
    finally:
        server.close()
