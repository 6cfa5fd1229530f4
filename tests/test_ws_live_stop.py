"""ws on the live MEXC source stops cleanly on SIGTERM: a real ``cdb service ws`` process
streaming from the local MEXC-like server, and one stuck in a connection handshake."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.domain.contracts import Side
from core.status import read_live_states
from core.topics import KeySpace, Topic
from services.ws.trades import Trade
from tests.ops_helpers import CDB, CLEAN_ENV, ROOT
from tests.proc_helpers import STOP_BUDGET_S
from tests.support.fake_mexc import FakeMexc, eventually

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _ws(
    redis_url: str, keys: KeySpace, url: str, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    base = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV and not k.startswith("WS_")}
    env = {
        **base,
        "REDIS_URL": redis_url,
        "KEY_PREFIX": keys.prefix,
        "INSTANCE": "ws-live",
        "WS_SOURCE": "mexc",
        "WS_MEXC_URL": url,
        "WS_SYMBOLS": "BTC/USDT",
    }
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(CDB), "service", "ws", cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _sigterm(proc: asyncio.subprocess.Process, log: Path) -> tuple[int, float]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(proc.wait(), timeout=STOP_BUDGET_S)
    except TimeoutError:
        raise AssertionError(f"ws ignored SIGTERM:\n{log.read_text()[-3000:]}") from None
    return code, time.monotonic() - started


async def _state(client: aioredis.Redis, keys: KeySpace) -> str | None:
    return next((s.state for s in await read_live_states(client, keys) if s.instance == "ws-live"), None)


def _trades(n: int, first_ms: int) -> list[Trade]:
    return [
        Trade("BTC/USDT", 90_000.0 + i, 0.01, Side.BUY if i % 2 else Side.SELL, first_ms + i)
        for i in range(n)
    ]


async def test_ws_live__sigterm_mid_stream_stops_in_time_and_reports_stopped(
    tmp_path: Path, redis_url: str, redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    log = tmp_path / "ws.log"
    async with FakeMexc() as fake, _ws(redis_url, keys, fake.url, log) as proc:
        await eventually(lambda: fake.live_subscribers("BTC/USDT") == 1, timeout=60, what="ws subscribed")
        sent = 0
        for i in range(5):
            await fake.push_trades("BTC/USDT", _trades(20, 1_767_225_600_000 + 1000 * i))
            sent += 20
        deadline = time.monotonic() + 30
        while await redis_async.xlen(keys.stream(Topic.MARKET_DATA)) < sent:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        code, took = await _sigterm(proc, log)
    assert code == 0, log.read_text()[-3000:]
    assert await _state(redis_async, keys) == "stopped"
    assert await redis_async.xlen(keys.stream(Topic.MARKET_DATA)) == sent
    print(f"ws live (MEXC) SIGTERM stop: {took:.3f}s")


async def test_ws_live__sigterm_during_a_hanging_handshake_stops_in_time(
    tmp_path: Path, redis_url: str, redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    # A server that accepts TCP and never answers the WebSocket handshake: the client would
    # wait its open_timeout (10 s) unless the stop interrupts the connect.
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    log = tmp_path / "ws.log"
    try:
        async with _ws(redis_url, keys, f"ws://127.0.0.1:{port}/ws", log) as proc:
            deadline = time.monotonic() + 60
            while await _state(redis_async, keys) != "running":
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                await asyncio.sleep(0.05)
            code, took = await _sigterm(proc, log)
    finally:
        server.close()
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()
    assert code == 0, log.read_text()[-3000:]
    assert await _state(redis_async, keys) == "stopped"
    print(f"ws live (hanging handshake) SIGTERM stop: {took:.3f}s")
