"""ws on contract v2.0: MEXC's decimal strings (and the CSV's) reach the market_data wire exact.

A v2.0 producer (``PRODUCE_VERSION_MARKET_DATA=v2.0``) builds ``market_data`` as v2.0 from the
venue's own text, never through a binary float; a v1.0 producer still writes the nearest floats.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.codec import Codec, build_codec, codec_for
from core.domain.contracts import Side
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from core.versions.codec import VersionedCodec
from core.versions.own import own_version
from services.runtime import ServiceContext
from services.ws.mexc_frames import deals_channel, decode_deals
from services.ws.mexc_v3_client import Backoff, MexcV3Client
from services.ws.proto.PushDataV3ApiWrapper_pb2 import PushDataV3ApiWrapper
from services.ws.replay import load_trades
from services.ws.service import WsService
from services.ws.trades import Trade
from tests.ops_helpers import service_settings
from tests.support.fake_mexc import FakeMexc, eventually

T0 = 1_767_225_600_000
LONG_PRICE = "64250.100000000000000000001"  # 27 significant digits: no float holds it


def _ws_codec(writes: str) -> Codec:
    settings = service_settings(
        ServiceName.WS,
        KeySpace("x:"),
        "ws-1",
        use_pydantic_contracts=True,
        produce_version_market_data=writes,
    )
    return codec_for(settings)


V2_READER = VersionedCodec(build_codec(CodecPath.PYDANTIC, Profile.STRICT), own={Topic.MARKET_DATA: "v2.0"})
"""A consumer whose code is on market_data v2.0."""


def _frame(price: str, quantity: str) -> bytes:
    """One MEXC aggregated-deals frame carrying ``price`` and ``quantity`` as MEXC writes them."""
    channel = deals_channel("BTCUSDT")
    wrapper = PushDataV3ApiWrapper(channel=channel, symbol="BTCUSDT", sendTime=T0)
    wrapper.publicAggreDeals.eventType = channel.rpartition("@")[0]
    deal = wrapper.publicAggreDeals.deals.add()
    deal.price, deal.quantity, deal.tradeType, deal.time = price, quantity, 1, T0
    return wrapper.SerializeToString()


def _on_the_wire(codec: Codec, trade: Trade) -> dict[str, bytes]:
    message = codec.build(Topic.MARKET_DATA, trade.as_values(own_version(codec, Topic.MARKET_DATA)))
    return {
        str(k): v if isinstance(v, bytes) else str(v).encode()
        for k, v in codec.to_fields(Topic.MARKET_DATA, message).items()
    }


_digits = st.text("0123456789", min_size=1, max_size=12)
# MEXC's decimal strings: digits, an optional fraction, up to 64 characters once written plainly
# (the v2.0 limit); a price is > 0.
_decimal_text = st.builds(
    lambda whole, fraction: (
        whole.lstrip("0") or "0" if fraction is None else f"{whole.lstrip('0') or '0'}.{fraction}"
    ),
    _digits,
    st.none() | st.text("0123456789", min_size=1, max_size=30),
)
_price_text = _decimal_text.filter(lambda t: Decimal(t) > 0)


@given(price=_price_text, quantity=_decimal_text)
@example(price="64250.10000001", quantity="0.000123")
@example(price=LONG_PRICE, quantity="1.50")
@example(price="0.00000000000000000001", quantity="0")
@settings(max_examples=300, deadline=None)
def test_ws_v2__a_mexc_decimal_string_reaches_a_v2_reader_unchanged(price: str, quantity: str) -> None:
    (trade,) = decode_deals(_frame(price, quantity))
    fields = _on_the_wire(_ws_codec("v2.0"), trade)
    assert json.loads(fields["api_version"]) == "v2.0"
    assert Decimal(json.loads(fields["price"])) == Decimal(price)  # a JSON string, exact
    message = V2_READER.from_fields(Topic.MARKET_DATA, fields).message
    assert (message.price, message.quantity) == (Decimal(price), Decimal(quantity))


@given(price=_price_text)
@settings(max_examples=100, deadline=None)
def test_ws_v1__the_same_frame_still_writes_the_nearest_float(price: str) -> None:
    (trade,) = decode_deals(_frame(price, "1"))
    fields = _on_the_wire(_ws_codec("v1.0"), trade)
    assert json.loads(fields["api_version"]) == "v1.0"
    assert json.loads(fields["price"]) == float(price)


def test_ws_v2__the_csv_replay_keeps_the_file_decimal(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text(
        f"timestamp,symbol,side,price,volume,trade_id\n{T0},BTC/USDT,BUY,{LONG_PRICE},0.10,t-1\n",
        encoding="utf-8",
    )
    (trade,) = load_trades(path)
    message = V2_READER.from_fields(Topic.MARKET_DATA, _on_the_wire(_ws_codec("v2.0"), trade)).message
    assert (message.price, message.quantity) == (Decimal(LONG_PRICE), Decimal("0.10"))
    assert trade.price == float(LONG_PRICE)  # the float view is still the nearest one


@pytest.mark.integration
async def test_ws_v2__live_client_to_redis_keeps_mexc_digits(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    """The whole ws service: fake MEXC server -> client -> WsService -> the real Redis stream."""
    settings = service_settings(
        ServiceName.WS, keys, "ws-1", use_pydantic_contracts=True, produce_version_market_data="v2.0"
    )
    ws = WsService(ServiceContext.create(ServiceName.WS, settings, redis_async), batch_size=1)
    sent = Trade.from_text(
        symbol="BTC/USDT", price=LONG_PRICE, volume="0.000001", side=Side.BUY, timestamp=T0
    )
    async with FakeMexc() as fake:
        client = MexcV3Client(
            fake.url,
            ["BTC/USDT"],
            ws.on_trade,
            on_bad_frame=ws.on_bad_frame,
            backoff=Backoff(initial=0.01, maximum=0.05, jitter=0.5),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(client.run(stop))
        try:
            await eventually(lambda: bool(client.subscribed), what="subscription acknowledged")
            await fake.push_trades("BTCUSDT", [sent])
            await eventually(lambda: ws.ctx.extra_counts.get("trades_published", 0) == 1, what="one trade")
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=5)
    ((_, fields),) = await redis_async.xrange(keys.stream(Topic.MARKET_DATA))
    assert json.loads(fields[b"price"]) == LONG_PRICE
    assert json.loads(fields[b"quantity"]) == "0.000001"
    message = V2_READER.from_fields(Topic.MARKET_DATA, fields).message
    assert message.price == Decimal(LONG_PRICE)
