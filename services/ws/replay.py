"""The offline source: trades from a CSV file, replayed at full speed or at recorded pace.

File format (what :mod:`services.ws.make_dataset` writes): UTF-8, ``#`` lines are
comments, then a header ``timestamp,symbol,side,price,volume,trade_id`` and one trade
per line; ``timestamp`` in epoch ms, ``side`` BUY or SELL, ``trade_id`` may be empty.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.resources import files
from pathlib import Path

from core.domain.contracts import Side
from services.ws.trades import SourceError, Trade

__all__ = [
    "BUNDLED_TRADES",
    "BUNDLED_TRADES_SMALL",
    "COLUMNS",
    "DATA_DIR",
    "load_trades",
    "replay",
]

COLUMNS = ("timestamp", "symbol", "side", "price", "volume", "trade_id")
"""The header row of a trades file, in order."""

DATA_DIR = Path(str(files("services.ws") / "data"))
"""The bundled replay files, shipped inside the package (``services/ws/data``), so an installed
package (the container image) finds them as a checkout does."""

BUNDLED_TRADES = DATA_DIR / "trades.csv"
"""About 3,000 synthetic trades over five symbols (see the file's first line)."""

BUNDLED_TRADES_SMALL = DATA_DIR / "trades_small.csv"
"""About 400 synthetic trades, for fast tests."""

_YIELD_EVERY = 256  # at full speed, let other tasks run now and then


def load_trades(path: str | Path, *, venue: str = "mexc") -> list[Trade]:
    """Every trade in ``path``, in file order.

    Raises :class:`SourceError` naming the file (and line) for a file that cannot be
    read (``file_unreadable``), a missing or wrong header, a line with the wrong number
    of fields, or a value that is not a valid trade (``data/x.csv:17: price_invalid: ...``).
    """
    path = Path(path)
    try:
        return _read_trades(path, venue)
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SourceError(
            "file_unreadable", f"cannot read the trades file: {detail}", where=str(path)
        ) from None


def _read_trades(path: Path, venue: str) -> list[Trade]:
    trades: list[Trade] = []
    header_seen = False
    with path.open(encoding="utf-8", newline="") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith("#"):
                continue
            where = f"{path}:{lineno}"
            row = next(csv.reader([line]))
            if not header_seen:
                if tuple(row) != COLUMNS:
                    raise SourceError("header_invalid", f"expected header {','.join(COLUMNS)}", where=where)
                header_seen = True
                continue
            try:
                trades.append(_trade(row, venue))
            except SourceError as exc:
                raise exc.located(where) from None
    if not header_seen:
        raise SourceError("header_invalid", "no header line", where=str(path))
    return trades


async def replay(
    trades: Sequence[Trade],
    on_trade: Callable[[Trade], Awaitable[None]],
    *,
    pace: float = 0.0,
    stop: asyncio.Event | None = None,
) -> int:
    """Await ``on_trade`` for each trade in order; returns how many were delivered.

    ``pace`` 0 is full speed. Otherwise the gaps between trade timestamps are kept,
    divided by ``pace``: 1.0 is the recorded pace, 10.0 ten times faster. Waits are
    measured from the start, so slow callbacks do not add up to drift. Setting ``stop``
    ends the replay before the next trade.
    """
    if pace < 0:
        raise ValueError(f"pace must be >= 0, got {pace}")
    if not trades:
        return 0
    started = time.monotonic()
    first_ms = trades[0].timestamp
    for count, trade in enumerate(trades):
        if stop is not None and stop.is_set():
            return count
        if pace > 0:
            due = started + (trade.timestamp - first_ms) / 1000.0 / pace
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        elif count % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        await on_trade(trade)
    return len(trades)


def _trade(row: list[str], venue: str) -> Trade:
    if len(row) != len(COLUMNS):
        raise SourceError("line_malformed", f"expected {len(COLUMNS)} fields, got {len(row)}")
    timestamp, symbol, side, price, volume, trade_id = row
    try:
        side_value = Side(side)
    except ValueError:
        raise SourceError("side_invalid", f"side {side!r} is neither BUY nor SELL") from None
    return Trade.from_text(
        symbol=symbol,
        price=price,
        volume=volume,
        side=side_value,
        timestamp=_int("timestamp", timestamp),
        venue=venue,
        trade_id=trade_id or None,
    )


def _int(name: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise SourceError(f"{name}_invalid", f"{name} {text!r} is not a whole number of ms")
    return int(text)
