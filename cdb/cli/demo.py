"""``cdb demo``: one sample message of every topic through every path, both wire forms."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cdb.cli.output import console, print_json, shown, table
from core.codec import build_codec
from core.domain.contracts import OrderStatus, OrderType, Side
from core.errors import ContractError
from core.topics import CodecPath, Profile, Topic
from core.utils.clock import frozen

SAMPLE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SAMPLE_ENTRY_ID = f"{SAMPLE_MS + 7}-0"  # the sample's stream entry, added 7 ms after it happened

SAMPLES: dict[Topic, dict[str, Any]] = {
    Topic.MARKET_DATA: {
        "symbol": "BTC/USDT",
        "price": 87_250.5,
        "volume": 0.0125,
        "side": Side.BUY,
        "venue": "mexc",
        "timestamp": SAMPLE_MS,
    },
    Topic.SIGNALS: {
        "signal_id": "sig-BTC/USDT-1",
        "symbol": "BTC/USDT",
        "side": Side.BUY,
        "price": 87_250.5,
        "strength": 0.42,
        "reason": "momentum +0.42% over 20",
    },
    Topic.ORDERS: {
        "order_id": "ord-sig-BTC/USDT-1",
        "signal_id": "sig-BTC/USDT-1",
        "symbol": "BTC/USDT",
        "side": Side.BUY,
        "order_type": OrderType.MARKET,
        "quantity": 0.01,
        "price": None,
    },
    Topic.ORDER_RESULTS: {
        "order_id": "ord-sig-BTC/USDT-1",
        "symbol": "BTC/USDT",
        "side": Side.BUY,
        "status": OrderStatus.FILLED,
        "filled_quantity": 0.01,
        "average_price": 87_259.2,
        "fee": 0.87,
        "reason": None,
        "simulated": True,
    },
}
"""One realistic message per topic."""

_PATHS = [
    (CodecPath.LEGACY, Profile.LENIENT),
    (CodecPath.PYDANTIC, Profile.LENIENT),
    (CodecPath.PYDANTIC, Profile.STRICT),
]


def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Encode a sample of every topic on each producer path and decode it on each consumer path."""
    rows = []
    with frozen(SAMPLE_MS):
        for topic, values in SAMPLES.items():
            for producer, _ in _PATHS[:2]:
                out_codec = build_codec(producer)
                message = out_codec.build(topic, values)
                body = out_codec.encode(topic, message)
                fields = out_codec.to_fields(topic, message)
                for consumer, profile in _PATHS:
                    in_codec = build_codec(consumer, profile)
                    label = (
                        consumer.value
                        if consumer is CodecPath.LEGACY
                        else f"{consumer.value}/{profile.value}"
                    )
                    try:
                        # As a consumer reads them: with the stream entry's id, whose server time is
                        # what the lenient profile fills a missing timestamp with (never "now").
                        via_json = in_codec.decode(topic, body, entry_id=SAMPLE_ENTRY_ID)
                        via_stream = in_codec.from_fields(topic, fields, entry_id=SAMPLE_ENTRY_ID)
                        same = in_codec.as_dict(topic, via_json.message) == in_codec.as_dict(
                            topic, via_stream.message
                        )
                        outcome = "ok" if same else "MISMATCH"
                        defaulted = ",".join(via_json.defaulted) or "-"
                    except ContractError as exc:
                        outcome, defaulted = f"refused: {exc.reason} {_locs(exc)}", "-"
                    rows.append(
                        {
                            "topic": topic.value,
                            "producer": producer.value,
                            "consumer": label,
                            "bytes": len(body),
                            "outcome": outcome,
                            "defaulted": defaulted,
                        }
                    )
    if as_json:
        print_json(rows)
        return
    columns = [
        "topic",
        "producer",
        "consumer",
        "JSON bytes",
        "decoded (Pub/Sub == Stream)",
        "defaults filled",
    ]
    body_rows = [
        [r["topic"], r["producer"], r["consumer"], r["bytes"], r["outcome"], r["defaulted"]] for r in rows
    ]
    cells = [[shown(c) for c in r] for r in body_rows]
    console.print(table("Every topic, every producer path, every consumer path", columns, cells))


def _locs(exc: ContractError) -> str:
    return ",".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors)
