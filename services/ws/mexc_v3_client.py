"""The live source: MEXC's spot v3 public WebSocket, aggregated trades, protobuf frames.

One connection carries every configured symbol (MEXC allows 30 subscriptions per
connection). The client subscribes to ``spot@public.aggre.deals.v3.api.pb@100ms@<SYMBOL>``
for each symbol, checks every reply, sends MEXC's JSON ``PING`` on a timer, decodes
binary frames into :class:`~services.ws.trades.Trade` and awaits ``on_trade`` for each.

What never stops it: a frame that does not decode goes to ``on_bad_frame(raw, reason)``
and is counted by reason, and so does a frame of a symbol it did not subscribe to; a bad
deal goes there alone (a frame of that deal only), the frame's other trades are delivered;
a frame the WebSocket layer refuses (over 1 MiB, text not UTF-8) costs the connection and
is counted by reason too; a dropped or silent connection is reopened with exponential backoff and
jitter, and every symbol is subscribed again. What does stop it: ``stop`` being set
(``run`` returns), every symbol refused by MEXC (:class:`SubscriptionRefusedError`; a
refused symbol is never retried, so a blocked channel cannot spin the loop), a bad URL,
or an exception raised by ``on_trade``/``on_bad_frame`` (those are the caller's errors
and propagate).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.frames import CloseCode

from core.utils.tasks import cancel_firmly
from services.ws.mexc_control import PING, ControlReply, parse_control, subscription
from services.ws.mexc_frames import deals_channel, decode_frame
from services.ws.trades import QUOTE_CURRENCIES, SourceError, Trade, to_mexc_symbol, to_pair

__all__ = [
    "DEFAULT_URL",
    "Backoff",
    "ClientStats",
    "MexcV3Client",
    "OnBadFrame",
    "OnTrade",
    "StaleConnectionError",
    "SubscriptionRefusedError",
]

DEFAULT_URL = "wss://wbs-api.mexc.com/ws"
"""MEXC's documented spot v3 market-stream endpoint."""

OnTrade = Callable[[Trade], Awaitable[None]]
"""Receives each decoded trade, in arrival order; awaited before the next frame is read."""

OnBadFrame = Callable[[bytes, str], Awaitable[None]]
"""Receives a frame that did not decode and the reason, ``"<code>: <detail>"``."""

log = structlog.get_logger("services.ws.mexc")


class SubscriptionRefusedError(SourceError):
    """MEXC refused every configured symbol; ``refused`` maps pair -> MEXC's ``msg``."""

    def __init__(self, refused: dict[str, str]) -> None:
        self.refused = dict(refused)
        detail = "; ".join(f"{pair}: {msg}" for pair, msg in refused.items())
        super().__init__("subscription_refused", f"MEXC refused every symbol: {detail}")


class StaleConnectionError(Exception):
    """Nothing arrived (not even a PONG) for longer than ``stale_after``; reconnect."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between reconnection attempts: ``initial * multiplier**n`` capped at ``maximum``,
    plus up to ``jitter`` of itself at random so many clients do not reconnect in step."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt ``attempt`` (0 = first retry after a failure)."""
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return base + rng.uniform(0.0, self.jitter * base)


@dataclass(slots=True)
class ClientStats:
    """Counters for ``cdb status``; they only grow while the client lives."""

    connects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    frames: int = 0
    trades: int = 0
    bad_frames: int = 0
    pings: int = 0
    pongs: int = 0
    bad_frames_by_reason: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready snapshot."""
        out = asdict(self)
        out["bad_frames_by_reason"] = dict(self.bad_frames_by_reason)
        return out


_RETRYABLE = (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, StaleConnectionError)

_REFUSED_BY_PROTOCOL: dict[int, str] = {
    CloseCode.MESSAGE_TOO_BIG: "frame_too_big",
    CloseCode.INVALID_DATA: "text_invalid",
}
"""Close codes the client's WebSocket layer sends when it refuses a frame -> bad-frame reason."""


class MexcV3Client:
    """Streams MEXC spot aggregated trades for ``symbols`` into ``on_trade`` until stopped.

    ``symbols`` may be pairs (``"BTC/USDT"``) or MEXC names (``"BTCUSDT"``); trades carry
    the pair form. A symbol whose quote currency is unknown raises :class:`SourceError`
    here, at start, not later on the wire.
    """

    def __init__(
        self,
        url: str,
        symbols: Sequence[str],
        on_trade: OnTrade,
        *,
        on_bad_frame: OnBadFrame | None = None,
        ping_interval: float = 20.0,
        stale_after: float | None = None,
        backoff: Backoff | None = None,
        interval: str = "100ms",
        venue: str = "mexc",
        quotes: Iterable[str] = QUOTE_CURRENCIES,
        open_timeout: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if not symbols:
            raise SourceError("symbols_missing", "MexcV3Client needs at least one symbol")
        self.url = url
        self._quotes = tuple(quotes)
        pairs = [to_pair(s, self._quotes) for s in symbols]
        self._channels: dict[str, str] = {deals_channel(to_mexc_symbol(p), interval): p for p in pairs}
        self._on_trade = on_trade
        self._on_bad_frame = on_bad_frame
        self._ping_interval = ping_interval
        self._stale_after = stale_after if stale_after is not None else 3 * ping_interval
        self._backoff = backoff or Backoff()
        self._venue = venue
        self._open_timeout = open_timeout
        self._rng = rng or random.Random()
        self._pending: list[str] = []
        self.stats = ClientStats()
        self.refused: dict[str, str] = {}
        """Pairs MEXC refused, with its ``msg``; never subscribed again by this client."""
        self.subscribed: set[str] = set()
        """Channels MEXC acknowledged on the current connection."""
        self.connected = False

    @property
    def symbols(self) -> list[str]:
        """The pairs still streamed (configured minus refused)."""
        return list(self._channels.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe and stream until ``stop`` is set, reconnecting on failures."""
        failures = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                return
            except _RETRYABLE as exc:
                if self.subscribed:
                    failures = 0  # the link worked: start the backoff from the beginning again
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self.connected = False
                self.subscribed.clear()
            delay = self._backoff.delay(failures, self._rng)
            failures += 1
            log.warning("mexc.connection_lost", url=self.url, error=error, retry_in_s=round(delay, 3))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _open(self) -> ClientConnection:
        # close_timeout bounds a stop: the close handshake waits at most this for the server.
        return await connect(self.url, ping_interval=None, open_timeout=self._open_timeout, close_timeout=1)

    async def _session(self, stop: asyncio.Event) -> None:
        # Connecting can take up to open_timeout (a slow handshake, a black-holed address):
        # a stop must not wait for it.
        opening = asyncio.ensure_future(self._open())
        halt = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((opening, halt), return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.cancel()
        if not opening.done():
            await cancel_firmly(opening)
            return
        try:
            ws = opening.result()
        except _RETRYABLE:
            self.stats.connect_failures += 1
            raise
        async with ws:
            self.connected = True
            self.stats.connects += 1
            if self.stats.connects > 1:
                self.stats.reconnects += 1
            log.info("mexc.connected", url=self.url, symbols=self.symbols, connects=self.stats.connects)
            self._pending = list(self._channels)
            for channel in self._pending:
                await ws.send(subscription([channel]))
            helpers = [
                asyncio.create_task(self._ping_forever(ws)),
                asyncio.create_task(self._close_when_set(stop, ws)),
            ]
            try:
                await self._receive(ws, stop)
            finally:
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)

    async def _receive(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        while True:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=self._stale_after)
            except TimeoutError:
                raise StaleConnectionError(f"nothing received for {self._stale_after}s") from None
            except ConnectionClosed as exc:
                if stop.is_set():
                    return
                await self._refused_by_protocol(exc)
                raise
            if isinstance(message, bytes):
                await self._on_binary(message)
            else:
                await self._on_text(message)

    async def _on_binary(self, raw: bytes) -> None:
        self.stats.frames += 1
        try:
            trades, refused = decode_frame(raw, venue=self._venue, quotes=self._quotes)
        except SourceError as exc:
            await self._bad_frame(raw, exc)
            return
        if trades and trades[0].symbol not in self._channels.values():
            # Not asked for (or refused): the pipeline gets only the symbols it is configured for.
            detail = f"{trades[0].symbol} is not among the subscribed symbols {self.symbols}"
            await self._bad_frame(raw, SourceError("symbol_unexpected", detail))
            return
        for trade in trades:
            await self._on_trade(trade)
            self.stats.trades += 1
        for deal, error in refused:
            await self._bad_frame(deal, error)

    async def _on_text(self, text: str) -> None:
        try:
            reply = parse_control(text)
        except SourceError as exc:
            await self._bad_frame(text.encode(), exc)
            return
        if reply.is_pong:
            self.stats.pongs += 1
            return
        channel = self._pending_for(reply)
        if channel is None:
            error = SourceError("control_unexpected", f"reply to nothing pending: {reply.msg[:200]!r}")
            await self._bad_frame(text.encode(), error)
            return
        self._pending.remove(channel)
        if not reply.refuses():
            self.subscribed.add(channel)
            log.info("mexc.subscribed", channel=channel)
            return
        pair = self._channels.pop(channel)
        self.refused[pair] = reply.msg
        log.error("mexc.subscription_refused", channel=channel, symbol=pair, code=reply.code, msg=reply.msg)
        if not self._channels:
            raise SubscriptionRefusedError(self.refused)

    def _pending_for(self, reply: ControlReply) -> str | None:
        for channel in self._pending:
            if reply.names(channel):
                return channel
        # A refusal that quotes no channel we know: MEXC answers in request order.
        if reply.refuses() and self._pending:
            return self._pending[0]
        return None

    async def _refused_by_protocol(self, closed: ConnectionClosed) -> None:
        # The frame never reached us (no bytes to park), but it was dropped: count it by reason.
        sent = closed.sent
        if sent is None or closed.rcvd_then_sent:  # the server closed first: nothing was refused here
            return
        reason = _REFUSED_BY_PROTOCOL.get(sent.code)
        if reason is not None:
            await self._bad_frame(b"", SourceError(reason, sent.reason or str(sent.code)))

    async def _bad_frame(self, raw: bytes, error: SourceError) -> None:
        self.stats.bad_frames += 1
        self.stats.bad_frames_by_reason[error.reason] += 1
        where = f" ({error.where})" if error.where else ""
        reason = f"{error.reason}: {error.detail}{where}"
        log.warning("mexc.bad_frame", reason=error.reason, detail=reason, size=len(raw), head=raw[:48].hex())
        if self._on_bad_frame is not None:
            await self._on_bad_frame(raw, reason)

    async def _ping_forever(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self._ping_interval)
                await ws.send(PING)
                self.stats.pings += 1

    @staticmethod
    async def _close_when_set(stop: asyncio.Event, ws: ClientConnection) -> None:
        await stop.wait()
        await ws.close()
