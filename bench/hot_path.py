"""Instructions per market_data message on ws's and signal's real code paths, for callgrind.

``python -m bench.hot_path fill N PREFIX``: ws publishes N trades (the end-to-end feed,
:class:`bench.e2e_load.Feed`, batches of 500) under key prefix PREFIX, nothing measured.
``python -m bench.hot_path ws N PREFIX``: the same, to be run under callgrind.
``python -m bench.hot_path signal N PREFIX``: the signal service as ``cdb service signal``
runs it (``run_consuming_service``: leases, fenced reads, per-batch flush and ack) consumes
the N entries ``fill`` left, then stops.
``python -m bench.hot_path clean PREFIX``: delete the prefix's keys.

``HOT_GC=off`` runs with Python's default collector settings instead of
:func:`services.runtime.service_gc`. Run each measured mode with N and 2N messages under
``valgrind --tool=callgrind --callgrind-out-file=...``; the difference of the two totals over
N is the cost of one message without start-up (``python -m bench.hot_path measure``
does all of it). ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) names the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import uuid
from typing import Any

import redis.asyncio as aioredis

from bench.e2e_load import Feed
from bench.e2e_procs import clean
from cdb.plugins import install_plugins
from core.logging import configure_logging
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName
from services.runtime import ServiceContext, run_consuming_service, service_gc
from services.signal.service import SignalService
from services.ws.service import WsService

__all__ = ["measure"]

_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_BATCH = 500
_VALGRIND = ("valgrind", "--tool=callgrind")


def _settings(service: ServiceName, prefix: str) -> ServiceSettings:
    return ServiceSettings.load(
        service,
        environ={},
        overrides={
            "redis_url": _URL,
            "key_prefix": prefix,
            "use_pydantic_contracts": True,
            "contract_profile": "lenient",
            "stream_maxlen": 300_000,
            "instance": f"hot-{service.value}",
        },
    )


async def _ws(n: int, prefix: str) -> None:
    install_plugins()  # as the benchmark process does (the lenient profile is the migration's)
    client = aioredis.Redis.from_url(_URL)
    try:
        feed = Feed(
            WsService(ServiceContext.create(ServiceName.WS, _settings(ServiceName.WS, prefix), client))
        )
        with _gc():
            while feed.sent < n:
                await feed.publish(min(_BATCH, n - feed.sent))
    finally:
        await client.aclose()


async def _signal(n: int, prefix: str) -> None:
    import cdb.cli.main  # noqa: F401  # what ``cdb service signal`` has loaded (plug-ins installed)
    from cdb.launcher import _consumer  # the business object exactly as ``cdb service`` makes it

    configure_logging()

    client = aioredis.Redis.from_url(_URL)
    ctx = ServiceContext.create(ServiceName.SIGNAL, _settings(ServiceName.SIGNAL, prefix), client)
    stop = asyncio.Event()
    done = 0

    class Counting(SignalService):
        async def handle(self, decoded: Any, entry_id: str) -> None:
            nonlocal done
            await super().handle(decoded, entry_id)
            done += 1
            if done >= n:
                stop.set()  # the batch in hand is still flushed and acknowledged

    assert isinstance(_consumer(ServiceName.SIGNAL, ctx), SignalService)
    try:
        with _gc():
            await run_consuming_service(Counting(ctx), ctx, stop, status_interval_s=60.0, factory=Counting)
    finally:
        await client.aclose()


def _gc() -> contextlib.AbstractContextManager[None]:
    # As ``cdb service`` and the end-to-end benchmark run (``HOT_GC=off``: Python's defaults).
    return contextlib.nullcontext() if os.environ.get("HOT_GC") == "off" else service_gc()


async def _clean(prefix: str) -> None:
    client = aioredis.Redis.from_url(_URL)
    try:
        await clean(client, KeySpace(prefix))
    finally:
        await client.aclose()


def _callgrind(mode: str, n: int, prefix: str, out: str) -> int:
    subprocess.run(
        [
            *_VALGRIND,
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.hot_path",
            mode,
            str(n),
            prefix,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with open(out, encoding="utf-8") as f:
        match = re.search(r"^summary:\s+(\d+)", f.read(), re.MULTILINE)
    assert match, out
    return int(match.group(1))


def measure(n: int, out_dir: str = "/tmp", modes: tuple[str, ...] = ("ws", "signal")) -> dict[str, float]:
    """Instructions per message of ws and of signal: callgrind totals of N and 2N messages,
    difference over N. The 2N profiles stay in ``out_dir`` (``hot-ws.out``, ``hot-signal.out``)."""
    per: dict[str, float] = {}
    totals: dict[str, list[int]] = {mode: [] for mode in modes}
    for count, tag in ((n, "n"), (2 * n, "2n")):
        prefix = f"cdbhot:{uuid.uuid4().hex[:8]}:"
        try:
            if "ws" in modes:
                totals["ws"].append(_callgrind("ws", count, prefix, f"{out_dir}/hot-ws-{tag}.out"))
            else:
                subprocess.run(
                    [sys.executable, "-m", "bench.hot_path", "fill", str(count), prefix], check=True
                )
            if "signal" in modes:
                totals["signal"].append(
                    _callgrind("signal", count, prefix, f"{out_dir}/hot-signal-{tag}.out")
                )
        finally:
            asyncio.run(_clean(prefix))
    for mode, (one, two) in totals.items():
        per[mode] = (two - one) / n
    return per


def main(argv: list[str]) -> None:
    """The command line (see the module docstring)."""
    mode = argv[0]
    if mode == "measure":
        n = int(argv[1]) if len(argv) > 1 else 10_000
        out = argv[2] if len(argv) > 2 else "/tmp"
        modes = tuple(argv[3].split(",")) if len(argv) > 3 else ("ws", "signal")
        os.makedirs(out, exist_ok=True)
        for name, value in measure(n, out, modes).items():
            print(f"{name}: {value:,.0f} instructions per message")
    elif mode in ("fill", "ws"):
        asyncio.run(_ws(int(argv[1]), argv[2]))
    elif mode == "signal":
        asyncio.run(_signal(int(argv[1]), argv[2]))
    elif mode == "clean":
        asyncio.run(_clean(argv[1]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
