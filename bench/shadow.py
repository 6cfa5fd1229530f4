"""What shadow mode costs: stream-entry decodes per second, plain codec vs ShadowCodec.

In memory (no Redis), so it measures the codec alone: ``python -m bench.shadow [N]``.
"""

from __future__ import annotations

import sys
import time

from core.codec import Codec, build_codec
from core.topics import CodecPath, Profile, Topic
from migration.shadow import ShadowCodec

__all__ = ["bench_shadow", "main"]


def _entries(codec: Codec, n: int) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        values = {
            "symbol": "BTC/USDT",
            "price": 50_000.5 + i / 100,
            "volume": 0.001 * (i % 97 + 1),
            "side": "BUY" if i % 2 else "SELL",
            "venue": "mexc",
            "timestamp": 1_767_225_600_000 + i,
        }
        out.append(codec.to_fields(Topic.MARKET_DATA, codec.build(Topic.MARKET_DATA, values)))
    return out


def _rate(codec: Codec, entries: list[dict[str, str]]) -> float:
    decode = codec.from_fields
    start = time.perf_counter()
    for fields in entries:
        decode(Topic.MARKET_DATA, fields)
    return len(entries) / (time.perf_counter() - start)


def bench_shadow(n: int = 20_000) -> list[tuple[str, float]]:
    """(codec, decodes per second) for each path alone and with shadow mode."""
    pydantic = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)
    legacy = build_codec(CodecPath.LEGACY)
    entries = _entries(pydantic, n)
    return [
        ("pydantic/lenient", _rate(pydantic, entries)),
        ("legacy", _rate(legacy, entries)),
        ("shadow: pydantic + legacy", _rate(ShadowCodec(pydantic, legacy), entries)),
        ("shadow: legacy + pydantic", _rate(ShadowCodec(legacy, pydantic), entries)),
    ]


def main() -> None:
    """Print the table."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rows = bench_shadow(n)
    base = rows[0][1]
    print(f"{'codec':<28} {'decodes/s':>12} {'vs pydantic':>12}")
    for name, rate in rows:
        print(f"{name:<28} {rate:>12,.0f} {rate / base:>11.2f}x")


if __name__ == "__main__":
    main()
