"""Generate the bundled replay files ``trades.csv`` and ``trades_small.csv`` in ``services/ws/data/``.

The trades are **synthetic**: a seeded ``random.Random`` drives, per symbol, a price
random walk through regimes (trending up, trending down, flat) so a momentum strategy
sees both BUY and SELL set-ups. As on a real exchange, some trades come in bursts: one
taker order filling several resting orders, i.e. 2..4 trades of one symbol and side in
the **same millisecond**, each at its own price level or size (so no two trades of a
burst are alike, even without their trade ids). Nothing here was recorded from an
exchange, and the first line of each file says so. The same seed gives the same bytes, so

    python -m services.ws.make_dataset           # rewrite both files
    python -m services.ws.make_dataset --check   # exit 1 if a file differs from its seed

regenerates or verifies them byte for byte.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.ws.replay import COLUMNS, DATA_DIR

__all__ = ["DATASETS", "MARKETS", "DatasetSpec", "Market", "main", "render"]

START_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z: the first trade's timestamp."""


@dataclass(frozen=True, slots=True)
class Market:
    """One synthetic instrument: where its price starts and how it is quoted."""

    symbol: str
    start_price: float
    price_decimals: int
    typical_volume: float
    volume_decimals: int
    weight: int  # relative share of trades


MARKETS: tuple[Market, ...] = (
    Market("BTC/USDT", 94_250.00, 2, 0.04, 5, 34),
    Market("ETH/USDT", 3_310.00, 2, 0.9, 4, 24),
    Market("SOL/USDT", 187.50, 3, 18.0, 2, 18),
    Market("XRP/USDT", 2.3150, 4, 1_400.0, 1, 13),
    Market("DOGE/USDT", 0.32410, 5, 7_500.0, 0, 11),
)
"""Five spot pairs at roughly early-2026 price levels."""


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """One generated file: its name under ``data/``, seed and size."""

    filename: str
    seed: int
    trades: int


DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("trades.csv", seed=20_260_101, trades=3_000),
    DatasetSpec("trades_small.csv", seed=4_242, trades=400),
)
"""The bundled files."""

_TREND_BPS = 7.0  # drift per trade of a symbol in a trending regime
_NOISE_BPS = 4.0  # standard deviation of a trade-to-trade move
_REGIME_TRADES = (25, 70)  # a regime lasts this many trades of its symbol
_MEAN_GAP_MS = 150.0
_MAX_GAP_MS = 1_000
_BURST_SHARE = 0.08  # share of taker orders that fill several makers in one millisecond
_BURST_FILLS = (2, 4)  # trades in such a burst
_LEVEL_BPS = 0.8  # price step between the makers a burst walks through


@dataclass(slots=True)
class _Walk:
    price: float
    drift: float = 0.0
    left: int = 0


def _next_drift(rng: random.Random, previous: float) -> float:
    # Never repeat the previous regime, so up and down trends alternate with flat spells.
    options = [d for d in (_TREND_BPS, -_TREND_BPS, 0.0) if d != previous]
    return rng.choice(options)


def generate(spec: DatasetSpec) -> list[tuple[str, ...]]:
    """The rows of ``spec``'s file (without comment and header), as strings."""
    rng = random.Random(spec.seed)
    walks = {
        m.symbol: _Walk(m.start_price, rng.choice((_TREND_BPS, -_TREND_BPS)), rng.randint(*_REGIME_TRADES))
        for m in MARKETS
    }
    weights = [m.weight for m in MARKETS]
    timestamp = START_MS
    rows: list[tuple[str, ...]] = []
    while len(rows) < spec.trades:
        market = rng.choices(MARKETS, weights)[0]
        walk = walks[market.symbol]
        if walk.left <= 0:
            walk.drift = _next_drift(rng, walk.drift)
            walk.left = rng.randint(*_REGIME_TRADES)
        walk.left -= 1
        move_bps = walk.drift + rng.gauss(0.0, _NOISE_BPS)
        walk.price *= 1.0 + move_bps / 10_000.0
        buy_share = 0.5 + (0.15 if walk.drift > 0 else -0.15 if walk.drift < 0 else 0.0)
        side = "BUY" if rng.random() < buy_share else "SELL"
        timestamp += min(_MAX_GAP_MS, 3 + int(rng.expovariate(1.0 / _MEAN_GAP_MS)))
        fills = rng.randint(*_BURST_FILLS) if rng.random() < _BURST_SHARE else 1
        fills = min(fills, spec.trades - len(rows))
        seen: set[tuple[str, str]] = set()
        for level in range(fills):
            # A taker walks the book: a buyer pays more at each next level, a seller gets less.
            step = _LEVEL_BPS * level * (1.0 if side == "BUY" else -1.0)
            price = f"{walk.price * (1.0 + step / 10_000.0):.{market.price_decimals}f}"
            volume = _volume(rng, market)
            while (price, volume) in seen:  # rounding made two fills alike: make the size differ
                volume = f"{float(volume) + 10.0**-market.volume_decimals:.{market.volume_decimals}f}"
            seen.add((price, volume))
            rows.append(
                (str(timestamp), market.symbol, side, price, volume, f"syn-{spec.seed}-{len(rows):06d}")
            )
    return rows


def _volume(rng: random.Random, market: Market) -> str:
    step = 10.0**-market.volume_decimals
    size = market.typical_volume * rng.lognormvariate(0.0, 0.8)
    return f"{max(step, round(size, market.volume_decimals)):.{market.volume_decimals}f}"


def render(spec: DatasetSpec) -> str:
    """The full text of ``spec``'s file: provenance comment, header, rows."""
    lines = [
        f"# synthetic trades, generated by services/ws/make_dataset.py seed={spec.seed} "
        f"trades={spec.trades}; not recorded from an exchange",
        "# timestamp: epoch ms (UTC); price: quote currency per base unit; volume: base units",
        ",".join(COLUMNS),
        *(",".join(row) for row in generate(spec)),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check`` verify) every file in :data:`DATASETS`; exit status 0/1."""
    parser = argparse.ArgumentParser(prog="python -m services.ws.make_dataset", description=__doc__)
    parser.add_argument(
        "--out-dir", type=Path, default=DATA_DIR, help="folder of the files (default: services/ws/data/)"
    )
    parser.add_argument("--check", action="store_true", help="compare instead of writing; 1 if any differs")
    args = parser.parse_args(argv)
    status = 0
    for spec in DATASETS:
        target: Path = args.out_dir / spec.filename
        text = render(spec).encode("utf-8")
        if args.check:
            same = target.is_file() and target.read_bytes() == text
            print(f"{target}: {'up to date' if same else 'DIFFERS from its seed'}")
            status |= 0 if same else 1
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text)
            print(f"{target}: {spec.trades} trades, seed {spec.seed}")
    return status


if __name__ == "__main__":
    sys.exit(main())
