"""The live MEXC spot v3 client against a local MEXC-like server (tests/support/fake_mexc.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from core.domain.contracts import Side
from core.metrics_ops import KNOWN_SOURCE_REASONS
from services.ws.mexc_frames import encode_deals
from services.ws.mexc_v3_client import Backoff, MexcV3Client, SubscriptionRefusedError
from services.ws.proto.PushDataV3ApiWrapper_pb2 import PushDataV3ApiWrapper
from services.ws.trades import Trade
from tests.support.fake_mexc import FakeMexc, eventually
from tests.support.servers import free_port

T0 = 1_767_225_600_000
FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.5)


def trade(
    symbol: str, price: float, side: Side = Side.BUY, *, offset: int = 0, trade_id: str | None = None
) -> Trade:
    return Trade(symbol, price, 0.25, side, T0 + offset, trade_id=trade_id)


@dataclass
class Sink:
    """Collects what the client hands out."""

    trades: list[Trade] = field(default_factory=list)
    bad: list[tuple[bytes, str]] = field(default_factory=list)

    async def on_trade(self, trade: Trade) -> None:
        self.trades.append(trade)

    async def on_bad_frame(self, raw: bytes, reason: str) -> None:
        self.bad.append((raw, reason))


@dataclass
class Running:
    client: MexcV3Client
    task: asyncio.Task[None]
    stop: asyncio.Event


@contextlib.asynccontextmanager
async def running(
    url: str,
    symbols: Sequence[str],
    sink: Sink,
    *,
    ping_interval: float = 20.0,
    stale_after: float | None = None,
) -> AsyncIterator[Running]:
    client = MexcV3Client(
        url,
        symbols,
        sink.on_trade,
        on_bad_frame=sink.on_bad_frame,
        ping_interval=ping_interval,
        stale_after=stale_after,
        backoff=FAST,
        open_timeout=2.0,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        yield Running(client, task, stop)
    finally:
        stop.set()
        with contextlib.suppress(SubscriptionRefusedError):
            await asyncio.wait_for(task, timeout=5)


async def test_client__delivers_trades_with_pair_symbol_side_price_and_ms() -> None:
    sink = Sink()
    async with FakeMexc() as fake, running(fake.url, ["BTC/USDT", "ETHUSDT"], sink) as run:
        await eventually(lambda: len(run.client.subscribed) == 2, what="both subscriptions acknowledged")
        await fake.push_trades("BTCUSDT", [trade("BTC/USDT", 94_321.5, trade_id="t-1")])
        await fake.push_trades("ETHUSDT", [trade("ETH/USDT", 3_301.25, Side.SELL, offset=7)])
        await eventually(lambda: len(sink.trades) == 2, what="two trades")
    btc, eth = sink.trades
    assert btc == Trade("BTC/USDT", 94_321.5, 0.25, Side.BUY, T0, venue="mexc", trade_id="t-1")
    assert eth == Trade("ETH/USDT", 3_301.25, 0.25, Side.SELL, T0 + 7, venue="mexc", trade_id=None)
    assert run.client.stats.trades == 2
    assert run.client.stats.frames == 2


async def test_client__subscribes_to_the_documented_aggregated_deals_channel() -> None:
    sink = Sink()
    async with FakeMexc() as fake, running(fake.url, ["SOL/USDT"], sink) as run:
        await eventually(lambda: bool(run.client.subscribed), what="subscription acknowledged")
    assert fake.subscriptions == ["spot@public.aggre.deals.v3.api.pb@100ms@SOLUSDT"]


async def test_client__delivers_every_deal_of_a_multi_deal_frame_in_order() -> None:
    sink = Sink()
    deals = [trade("BTC/USDT", 94_000.0 + i, offset=i) for i in range(50)]
    async with FakeMexc() as fake, running(fake.url, ["BTC/USDT"], sink) as run:
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="subscriber")
        await fake.push_trades("BTCUSDT", deals)
        await eventually(lambda: len(sink.trades) == 50, what="fifty trades")
    assert sink.trades == deals
    assert run.client.stats.frames == 1


async def test_client__sends_json_ping_on_its_interval_and_counts_pongs() -> None:
    sink = Sink()
    async with FakeMexc() as fake, running(fake.url, ["BTC/USDT"], sink, ping_interval=0.05) as run:
        await eventually(lambda: fake.pings >= 3 and run.client.stats.pongs >= 3, what="three PING/PONG")
    assert run.client.stats.pings >= fake.pings >= 3


async def test_client__resumes_and_resubscribes_after_a_dropped_connection() -> None:
    sink = Sink()
    async with FakeMexc() as fake, running(fake.url, ["BTC/USDT"], sink) as run:
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="first subscription")
        await fake.push_trades("BTCUSDT", [trade("BTC/USDT", 94_000.0)])
        await eventually(lambda: len(sink.trades) == 1, what="trade before the drop")

        fake.drop()
        await eventually(lambda: fake.subscribed_count("BTCUSDT") == 2, what="resubscription")
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="live again")
        await fake.push_trades("BTCUSDT", [trade("BTC/USDT", 94_100.0, offset=1)])
        await eventually(lambda: len(sink.trades) == 2, what="trade after the drop")
    assert [t.price for t in sink.trades] == [94_000.0, 94_100.0]
    assert fake.connections == 2
    assert run.client.stats.reconnects == 1


async def test_client__reconnects_when_the_server_goes_silent() -> None:
    sink = Sink()
    async with (
        FakeMexc(answer_pings=False) as fake,
        running(fake.url, ["BTC/USDT"], sink, ping_interval=0.05, stale_after=0.2) as run,
    ):
        await eventually(lambda: fake.connections >= 2, what="a reconnection after silence")
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="live again")
    assert run.client.stats.reconnects >= 1
    assert run.client.stats.pongs == 0


async def test_client__keeps_retrying_while_nothing_listens_and_stops_on_request() -> None:
    sink = Sink()
    async with running(f"ws://127.0.0.1:{free_port()}/ws", ["BTC/USDT"], sink) as run:
        await eventually(lambda: run.client.stats.connect_failures >= 3, what="three failed attempts")
        assert not run.task.done()
    assert run.task.done()
    assert run.task.exception() is None
    assert run.client.stats.connects == 0


def _frame(**deal: object) -> bytes:
    wrapper = PushDataV3ApiWrapper(
        channel="spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT", symbol="BTCUSDT"
    )
    item = wrapper.publicAggreDeals.deals.add()
    item.price, item.quantity, item.tradeType, item.time = "94000.5", "0.1", 1, T0
    for name, value in deal.items():
        setattr(item, name, value)
    return wrapper.SerializeToString()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"\xff\xff\xff\xff not protobuf", "protobuf_invalid", id="not-protobuf"),
        pytest.param(_frame(price="94k"), "price_invalid", id="unparsable-price"),
        pytest.param(_frame(tradeType=3), "trade_type_unknown", id="unknown-trade-type"),
        pytest.param(_frame(time=T0 // 1000), "time_invalid", id="seconds-not-ms"),
    ],
)
async def test_client__bad_frame_goes_to_on_bad_frame_and_the_stream_goes_on(raw: bytes, reason: str) -> None:
    sink = Sink()
    async with FakeMexc() as fake, running(fake.url, ["BTC/USDT"], sink) as run:
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="subscriber")
        await fake.push_raw(raw)
        await fake.push_trades("BTCUSDT", [trade("BTC/USDT", 94_000.0)])
        await eventually(lambda: len(sink.trades) == 1, what="the good trade after the bad frame")
        assert not run.task.done()
    assert sink.bad == [(raw, sink.bad[0][1])]
    assert sink.bad[0][1].startswith(f"{reason}: ")
    assert run.client.stats.bad_frames == 1
    assert run.client.stats.bad_frames_by_reason == {reason: 1}
    assert fake.connections == 1


async def test_client__one_bad_deal_is_refused_alone_and_the_frames_other_trades_arrive() -> None:
    sink = Sink()
    good = [trade("BTC/USDT", 94_000.0 + i, offset=i) for i in range(3)]
    frame = PushDataV3ApiWrapper.FromString(encode_deals("BTCUSDT", good))
    frame.publicAggreDeals.deals[1].price = "nan"
    async with FakeMexc() as fake, running(fake.url, ["BTC/USDT"], sink) as run:
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="subscriber")
        await fake.push_raw(frame.SerializeToString())
        await eventually(lambda: len(sink.trades) == 2 and len(sink.bad) == 1, what="two trades, one refusal")
    assert sink.trades == [good[0], good[2]]
    ((raw, reason),) = sink.bad
    assert reason.startswith("price_invalid: ")
    assert reason.endswith("@BTCUSDT deal 1)")
    # the dead letter holds the refused deal alone, not the trades that were published
    assert [d.price for d in PushDataV3ApiWrapper.FromString(raw).publicAggreDeals.deals] == ["nan"]
    assert run.client.stats.bad_frames_by_reason == {"price_invalid": 1}


async def test_client__a_frame_of_a_symbol_it_did_not_subscribe_is_refused_not_published() -> None:
    sink = Sink()
    doge = encode_deals("DOGEUSDT", [trade("DOGE/USDT", 0.1)])
    async with FakeMexc() as fake, running(fake.url, ["BTC/USDT"], sink) as run:
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="subscriber")
        await fake.push_raw(doge)
        await fake.push_trades("BTCUSDT", [trade("BTC/USDT", 94_000.0)])
        await eventually(lambda: len(sink.trades) == 1 and len(sink.bad) == 1, what="the BTC trade")
    assert [t.symbol for t in sink.trades] == ["BTC/USDT"]
    assert sink.bad[0][0] == doge
    assert sink.bad[0][1].startswith("symbol_unexpected: ")
    assert run.client.stats.bad_frames_by_reason == {"symbol_unexpected": 1}


async def test_client__a_frame_over_the_size_limit_is_counted_by_reason_and_the_stream_goes_on() -> None:
    sink = Sink()
    async with FakeMexc() as fake, running(fake.url, ["BTC/USDT"], sink) as run:
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="subscriber")
        await fake.push_raw(b"\x0a" + b"\xff" * (2 << 20))  # over the client's 1 MiB frame limit
        await eventually(lambda: fake.connections == 2, what="a reconnection")
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="live again")
        await fake.push_trades("BTCUSDT", [trade("BTC/USDT", 94_000.0)])
        await eventually(lambda: len(sink.trades) == 1, what="a trade after the big frame")
    assert run.client.stats.bad_frames == 1
    assert run.client.stats.bad_frames_by_reason == {"frame_too_big": 1}


@pytest.mark.parametrize(
    "reason",
    ["quantity_invalid", "volume_invalid", "symbol_unexpected", "frame_too_big", "text_invalid"],
)
def test_client__every_bad_frame_reason_is_a_metric_label_of_its_own(reason: str) -> None:
    # cdb_source_bad_frames_total{reason}: a reason missing here would be counted as "other"
    assert reason in KNOWN_SOURCE_REASONS


async def test_client__unexpected_text_frame_goes_to_on_bad_frame() -> None:
    sink = Sink()
    async with FakeMexc() as fake, running(fake.url, ["BTC/USDT"], sink) as run:
        await eventually(lambda: bool(run.client.subscribed), what="subscription acknowledged")
        await fake.push_raw("not json at all")
        await eventually(lambda: len(sink.bad) == 1, what="the bad text frame")
    assert sink.bad[0][0] == b"not json at all"
    assert sink.bad[0][1].startswith("control_invalid: ")


async def test_client__refused_symbol_with_code_0_is_reported_and_never_retried() -> None:
    sink = Sink()
    async with FakeMexc(refuse=["ETHUSDT"]) as fake, running(fake.url, ["BTC/USDT", "ETH/USDT"], sink) as run:
        await eventually(lambda: "ETH/USDT" in run.client.refused, what="the refusal")
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="BTC subscribed")
        fake.drop()
        await eventually(lambda: fake.subscribed_count("BTCUSDT") == 2, what="BTC resubscribed")
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="BTC live again")
        await fake.push_trades("BTCUSDT", [trade("BTC/USDT", 94_000.0)])
        await eventually(lambda: len(sink.trades) == 1, what="a BTC trade")
    assert run.client.refused["ETH/USDT"].startswith("Not Subscribed successfully!")
    assert run.client.symbols == ["BTC/USDT"]
    assert fake.subscribed_count("ETHUSDT") == 1


async def test_client__every_symbol_refused_stops_run_with_a_clear_error() -> None:
    sink = Sink()
    async with FakeMexc(refuse=["BTCUSDT"]) as fake:
        client = MexcV3Client(fake.url, ["BTC/USDT"], sink.on_trade, backoff=FAST)
        with pytest.raises(SubscriptionRefusedError) as caught:
            await asyncio.wait_for(client.run(asyncio.Event()), timeout=5)
    assert "BTC/USDT: Not Subscribed successfully!" in str(caught.value)
    assert caught.value.reason == "subscription_refused"
    assert fake.connections == 1


async def test_client__stats_snapshot_is_json_ready() -> None:
    sink = Sink()
    async with FakeMexc() as fake, running(fake.url, ["BTC/USDT"], sink) as run:
        await eventually(lambda: fake.live_subscribers("BTCUSDT") == 1, what="subscriber")
        await fake.push_raw(b"\x00bad")
        await eventually(lambda: run.client.stats.bad_frames == 1, what="a bad frame")
    snapshot = json.loads(json.dumps(run.client.stats.as_dict()))
    assert snapshot["connects"] == 1
    assert snapshot["bad_frames_by_reason"] == {"protobuf_invalid": 1}
