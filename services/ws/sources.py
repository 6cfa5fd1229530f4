"""ws's resumable sources (replay file, synthetic market) and the settings that pick one.

A resumable source names itself (``identity``), goes on from a checkpoint
(:meth:`ResumableSource.resume`), hands each trade with a *mark* and turns a mark
into checkpoint text (:meth:`ResumableSource.encode`). :func:`run_resumable` wires it
to the :class:`~services.ws.outbox.Outbox` and :mod:`services.ws.position`, so the
position moves only when Redis confirmed the trades before it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.logging import get_logger
from services.ws.position import PositionError, SourcePositions
from services.ws.replay import BUNDLED_TRADES, load_trades, replay
from services.ws.synthetic import SyntheticMarket, SyntheticSpec
from services.ws.trades import Trade

__all__ = ["ReplaySource", "ResumableSource", "WsSourceSettings", "make_source", "run_resumable"]

Put = Callable[[Trade, object], Awaitable[None]]
"""Takes one trade and its mark (the outbox's ``put``)."""


class WsSourceSettings(BaseSettings):
    """Where ws takes trades from (env: WS_SOURCE, WS_REPLAY_FILE, WS_SYNTHETIC_*, WS_MEXC_URL, ...)."""

    model_config = SettingsConfigDict(env_prefix="WS_", frozen=True, extra="ignore")

    source: Literal["replay", "mexc", "synthetic"] = Field(
        default="replay", description="replay, mexc or synthetic"
    )
    replay_file: Path = Field(default=BUNDLED_TRADES, description="a trades CSV file")
    replay_pace: float = Field(default=1.0, ge=0, description="0 = full speed, 1 = recorded pace (>= 0)")
    from_start: bool = Field(
        default=False, description="replay/synthetic: ignore the saved position and begin at the first trade"
    )
    synthetic_seed: int = Field(default=1, ge=0, description="synthetic: the market's seed (>= 0)")
    synthetic_symbols: int = Field(default=20, ge=1, le=1000, description="synthetic: symbols (1..1000)")
    synthetic_rate: float = Field(
        default=300.0, ge=0, le=1_000_000, description="synthetic: trades per second, 0 = full speed"
    )
    synthetic_start_ms: int = Field(
        default=0, ge=0, description="synthetic: first trade time, epoch ms; 0 = when first started"
    )
    mexc_url: str = Field(default="wss://wbs-api.mexc.com/ws", description="MEXC spot v3 WebSocket URL")
    symbols: str = Field(default="BTC/USDT,ETH/USDT", description="comma-separated pairs, e.g. BTC/USDT")
    buffer_size: int = Field(
        default=10_000,
        gt=0,
        le=10_000_000,
        description="trades held while Redis is down; then replay waits, live sheds the oldest (1..10000000)",
    )

    @field_validator("replay_file")
    @classmethod
    def _readable_when_replaying(cls, value: Path, info: ValidationInfo) -> Path:
        """A replay source needs its file at start (one clear error, not a traceback later)."""
        if info.data.get("source") == "replay" and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value


class ResumableSource(Protocol):
    """A source whose position ws can store and go on from."""

    @property
    def identity(self) -> str:
        """Its field in the position hash."""
        ...

    def resume(self, checkpoint: str | None) -> int:
        """Go on after ``checkpoint`` (``None``: the beginning); returns the next trade's number."""
        ...

    def encode(self, mark: object) -> str:
        """The checkpoint text of a trade's mark."""
        ...

    def number(self, mark: object) -> int:
        """How many trades of the source come up to and including the mark's trade."""
        ...

    async def run(self, on_trade: Put, stop: asyncio.Event) -> int:
        """Hand trades to ``on_trade`` until the end or ``stop``; returns how many."""
        ...


class ReplaySource:
    """A trades file, resumable: its identity is the file's content hash (not its path, so
    the same file mounted elsewhere resumes), its mark the number of trades done."""

    def __init__(self, trades: Sequence[Trade], digest: str, *, pace: float = 0.0) -> None:
        self.trades = trades
        self.pace = pace
        self.identity = f"replay:{digest}"
        self.start = 0

    @classmethod
    def from_file(cls, path: Path, *, pace: float = 0.0) -> ReplaySource:
        """Load ``path`` (``SourceError`` naming the line when it is not a trades file)."""
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        return cls(load_trades(path), digest, pace=pace)

    def resume(self, checkpoint: str | None) -> int:
        """Go on after ``checkpoint`` (a trade count; clamped to the file's length); ``ValueError``
        when it is not a count (a negative one would slice the file from its end)."""
        done = int(checkpoint) if checkpoint else 0
        if done < 0:
            raise ValueError(f"a trade count cannot be negative: {done}")
        self.start = min(done, len(self.trades))
        return self.start

    def encode(self, mark: object) -> str:
        """A mark is the count of trades done; stored as its decimal text."""
        return str(mark)

    def number(self, mark: object) -> int:
        """The mark itself (trades done)."""
        assert isinstance(mark, int)
        return mark

    async def run(self, on_trade: Put, stop: asyncio.Event) -> int:
        """Replay from the resume point at ``pace``; returns how many trades were handed on."""
        done = self.start

        async def each(trade: Trade) -> None:
            nonlocal done
            done += 1
            await on_trade(trade, done)

        return await replay(self.trades[self.start :], each, pace=self.pace, stop=stop)


def make_source(settings: WsSourceSettings) -> ResumableSource:
    """The resumable source ``settings`` name (``replay`` or ``synthetic``)."""
    if settings.source == "synthetic":
        spec = SyntheticSpec(
            seed=settings.synthetic_seed,
            symbols=settings.synthetic_symbols,
            rate=settings.synthetic_rate,
            start_ms=settings.synthetic_start_ms,
        )
        return SyntheticMarket(spec)
    if settings.source == "replay":
        return ReplaySource.from_file(settings.replay_file, pace=settings.replay_pace)
    raise ValueError(f"{settings.source} is not a resumable source")


async def run_resumable(
    source: ResumableSource,
    positions: SourcePositions,
    put: Put,
    stop: asyncio.Event,
    *,
    from_start: bool = False,
) -> int:
    """Resume ``source`` from its saved position (or from the start), run it until it ends or
    ``stop``; returns the number of the next trade it would have handed on. A saved position
    the source cannot read raises :class:`PositionError` before any trade is handed on."""
    log = get_logger("services.ws.sources")
    if from_start:
        await positions.reset()
    checkpoint = None if from_start else await positions.load()
    try:
        first = source.resume(checkpoint)
    except (ValueError, KeyError, TypeError) as exc:
        # Refused, not guessed at: beginning the source again instead would send a replay's
        # whole file again, and make a synthetic market without a fixed start a new history
        # whose trades are newer than what signal has seen, so not ignored as duplicates.
        problem = f"{type(exc).__name__}: {exc}"
        raise PositionError(
            positions.keys.source_positions(), source.identity, checkpoint or "", problem
        ) from None
    log.info("ws.source_resumed", source=source.identity, next_trade=first, from_start=from_start)
    return first + await source.run(put, stop)
