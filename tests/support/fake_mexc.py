"""A local stand-in for MEXC's spot v3 market-stream WebSocket, for the live client's tests.

It speaks the protocol as MEXC documents it: JSON ``SUBSCRIPTION`` requests answered
``{"id": 0, "code": 0, "msg": "<channel>"}``, ``{"method": "PING"}`` answered
``{"id": 0, "code": 0, "msg": "PONG"}``, and binary protobuf frames
(``PushDataV3ApiWrapper`` with ``publicAggreDeals``) for the trades a test scripts.
It can refuse a symbol the way MEXC does (``code`` 0, refusal only in ``msg``), push
arbitrary bytes, stay silent, and drop every connection without a close handshake.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from services.ws.mexc_frames import encode_deals
from services.ws.trades import Trade, to_mexc_symbol

__all__ = ["FakeMexc", "eventually", "refusal_text"]


def refusal_text(channel: str) -> str:
    """MEXC's refusal ``msg`` (full-width colon included, as MEXC sends it)."""
    return f"Not Subscribed successfully! [{channel}].  Reason\uff1a Blocked!"


class FakeMexc:
    """A MEXC-like server on 127.0.0.1 and a free port; use as ``async with FakeMexc() as fake``."""

    def __init__(self, *, refuse: Iterable[str] = (), answer_pings: bool = True) -> None:
        self.refuse = {to_mexc_symbol(s) for s in refuse}
        self.answer_pings = answer_pings
        self.pings = 0
        self.connections = 0
        self.subscriptions: list[str] = []
        """Every channel a client asked for, in order, over all connections."""
        self._subscribed: dict[ServerConnection, set[str]] = {}
        self._server: Server | None = None

    async def __aenter__(self) -> FakeMexc:
        self._server = await serve(self._handle, "127.0.0.1", 0, ping_interval=None)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/ws``."""
        assert self._server is not None, "use FakeMexc as an async context manager"
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    def subscribed_count(self, symbol: str) -> int:
        """How many times a client asked for ``symbol``'s channel (refused ones included)."""
        name = to_mexc_symbol(symbol)
        return sum(1 for channel in self.subscriptions if channel.endswith(f"@{name}"))

    def live_subscribers(self, symbol: str) -> int:
        """Open connections with an accepted subscription for ``symbol``."""
        name = to_mexc_symbol(symbol)
        return sum(1 for chans in self._subscribed.values() if any(c.endswith(f"@{name}") for c in chans))

    async def push_trades(self, symbol: str, trades: Sequence[Trade]) -> int:
        """One deals frame for ``trades`` to every connection subscribed to ``symbol``."""
        frame = encode_deals(to_mexc_symbol(symbol), trades)
        name = to_mexc_symbol(symbol)
        targets = [c for c, chans in self._subscribed.items() if any(ch.endswith(f"@{name}") for ch in chans)]
        for conn in targets:
            await conn.send(frame)
        return len(targets)

    async def push_raw(self, data: bytes | str) -> None:
        """Send ``data`` as is (binary for bytes, text for str) to every connection."""
        for conn in list(self._subscribed):
            await conn.send(data)

    def drop(self) -> None:
        """Cut every connection at the TCP level: no close frame, as a network failure would."""
        for conn in list(self._subscribed):
            conn.transport.abort()

    async def _handle(self, conn: ServerConnection) -> None:
        self.connections += 1
        self._subscribed[conn] = set()
        try:
            async for message in conn:
                if isinstance(message, str):
                    await self._on_request(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self._subscribed.pop(conn, None)

    async def _on_request(self, conn: ServerConnection, text: str) -> None:
        request = json.loads(text)
        method = request.get("method")
        if method == "PING":
            self.pings += 1
            if self.answer_pings:
                await conn.send(json.dumps({"id": 0, "code": 0, "msg": "PONG"}))
        elif method == "SUBSCRIPTION":
            for channel in request.get("params", []):
                self.subscriptions.append(channel)
                if channel.rpartition("@")[2] in self.refuse:
                    await conn.send(json.dumps({"id": 0, "code": 0, "msg": refusal_text(channel)}))
                else:
                    self._subscribed[conn].add(channel)
                    await conn.send(json.dumps({"id": 0, "code": 0, "msg": channel}))


async def eventually(condition: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition") -> None:
    """Wait until ``condition()`` holds; fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)
