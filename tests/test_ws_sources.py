"""The ws service's trade sources: the Trade model, MEXC frames and control messages, CSV replay."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.codec import build_codec
from core.domain.contracts import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, MarketDataV1, Side
from core.topics import CodecPath, Profile, Topic
from services.ws.make_dataset import DATASETS, DatasetSpec, render
from services.ws.mexc_control import PING, parse_control, subscription
from services.ws.mexc_frames import decode_deals, encode_deals
from services.ws.proto.PublicAggreDealsV3Api_pb2 import PublicAggreDealsV3ApiItem
from services.ws.proto.PushDataV3ApiWrapper_pb2 import PushDataV3ApiWrapper
from services.ws.replay import BUNDLED_TRADES, BUNDLED_TRADES_SMALL, DATA_DIR, load_trades, replay
from services.ws.trades import SourceError, Trade, to_mexc_symbol, to_pair

T0 = 1_767_225_600_000
CHANNEL = "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"
BUNDLED = [BUNDLED_TRADES, BUNDLED_TRADES_SMALL]


# --- symbols and the Trade model -------------------------------------------------------------


@pytest.mark.parametrize(
    ("mexc", "pair"),
    [
        ("BTCUSDT", "BTC/USDT"),
        ("ethusdc", "ETH/USDC"),
        ("ETHBTC", "ETH/BTC"),
        ("MXUSDT", "MX/USDT"),
        ("BTCFDUSD", "BTC/FDUSD"),
        ("SOL/USDT", "SOL/USDT"),
    ],
)
def test_to_pair__maps_mexc_names_by_their_quote_currency(mexc: str, pair: str) -> None:
    assert to_pair(mexc) == pair
    assert to_mexc_symbol(pair) == mexc.replace("/", "").upper()


@pytest.mark.parametrize("name", ["BTCXYZ", "USDT", "", "BTC-USDT", "BTC/"])
def test_to_pair__refuses_a_name_without_a_known_quote(name: str) -> None:
    with pytest.raises(SourceError) as caught:
        to_pair(name)
    assert caught.value.reason == "symbol_unknown"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"price": 0.0}, "price_invalid"),
        ({"price": float("nan")}, "price_invalid"),
        ({"price": True}, "price_invalid"),
        ({"price": -1.0}, "price_invalid"),
        ({"price": float("inf")}, "price_invalid"),
        ({"price": "1.0"}, "price_invalid"),
        ({"volume": -1.0}, "volume_invalid"),
        ({"volume": float("inf")}, "volume_invalid"),
        ({"volume": float("nan")}, "volume_invalid"),
        ({"timestamp": T0 // 1000}, "time_invalid"),
        ({"timestamp": True}, "time_invalid"),
        ({"timestamp": float(T0)}, "time_invalid"),
        ({"side": "BUY"}, "side_invalid"),
        ({"symbol": "btc/usdt"}, "symbol_invalid"),
        ({"symbol": "BTC/USDT/"}, "symbol_invalid"),
        ({"symbol": "A" * 33}, "symbol_invalid"),
        ({"venue": ""}, "venue_invalid"),
    ],
)
def test_trade__refuses_values_the_contract_would_refuse(changes: dict[str, object], reason: str) -> None:
    values: dict[str, object] = {"symbol": "BTC/USDT", "price": 1.0, "volume": 1.0, "side": Side.BUY}
    values["timestamp"] = T0
    values.update(changes)
    with pytest.raises(SourceError) as caught:
        Trade(**values)  # type: ignore[arg-type]
    assert caught.value.reason == reason


def test_trade__stores_an_int_price_as_float() -> None:
    trade = Trade("BTC/USDT", 94_000, 1, Side.BUY, T0)
    assert (trade.price, trade.volume) == (94_000.0, 1.0)
    assert (type(trade.price), type(trade.volume)) == (float, float)


def test_trade__a_symbol_accepted_before_still_passes_and_a_bad_one_is_refused_every_time() -> None:
    # Accepted symbols are remembered (the check runs once per symbol): that must not let a
    # refused one through on a second try.
    for _ in range(2):
        assert Trade("SOL/USDT", 1.0, 1.0, Side.BUY, T0).symbol == "SOL/USDT"
        with pytest.raises(SourceError) as caught:
            Trade("sol/usdt", 1.0, 1.0, Side.BUY, T0)
        assert caught.value.reason == "symbol_invalid"


@pytest.mark.parametrize(
    ("path", "profile"),
    [
        (CodecPath.LEGACY, Profile.LENIENT),
        (CodecPath.PYDANTIC, Profile.LENIENT),
        (CodecPath.PYDANTIC, Profile.STRICT),
    ],
)
def test_trade_as_values__builds_market_data_on_every_path(path: CodecPath, profile: Profile) -> None:
    trade = Trade("ETH/USDT", 3_301.25, 0.5, Side.SELL, T0, trade_id="t-9")
    codec = build_codec(path, profile)
    message = codec.build(Topic.MARKET_DATA, trade.as_values())
    expected = {
        "symbol": "ETH/USDT",
        "price": 3_301.25,
        "volume": 0.5,
        "side": "SELL",
        "venue": "mexc",
        "timestamp": T0,
    }
    if path is CodecPath.PYDANTIC:  # the legacy class has no api_version and no trade_id
        expected |= {"api_version": "v1.0", "trade_id": "t-9"}
    assert codec.as_dict(Topic.MARKET_DATA, message) == expected


def test_trade_as_values__leaves_out_an_unknown_trade_id() -> None:
    assert "trade_id" not in Trade("BTC/USDT", 1.0, 1.0, Side.BUY, T0).as_values()


# --- MEXC protobuf frames -------------------------------------------------------------------


def test_proto__field_numbers_are_the_ones_mexc_publishes() -> None:
    # mexcdevelop/websocket-proto: PushDataV3ApiWrapper.proto and PublicAggreDealsV3Api.proto
    wrapper = {f.name: f.number for f in PushDataV3ApiWrapper.DESCRIPTOR.fields}
    item = {f.name: (f.number, f.type) for f in PublicAggreDealsV3ApiItem.DESCRIPTOR.fields}
    string, int32, int64 = 9, 5, 3  # FieldDescriptor.TYPE_STRING / TYPE_INT32 / TYPE_INT64
    assert wrapper == {
        "channel": 1,
        "publicAggreDeals": 314,
        "symbol": 3,
        "symbolId": 4,
        "createTime": 5,
        "sendTime": 6,
    }
    assert item == {
        "price": (1, string),
        "quantity": (2, string),
        "tradeType": (3, int32),
        "time": (4, int64),
        "tradeId": (5, string),
    }


trades_strategy = st.builds(
    Trade,
    symbol=st.sampled_from(["BTC/USDT", "ETH/BTC", "XRP/USDC"]),
    price=st.floats(min_value=1e-8, max_value=1e9, allow_nan=False, allow_infinity=False),
    volume=st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False),
    side=st.sampled_from(Side),
    timestamp=st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS),
    trade_id=st.none() | st.text("abcXYZ0123456789-", min_size=1, max_size=24),
)


@given(st.sampled_from(["BTC/USDT", "ETH/BTC"]), st.lists(trades_strategy, max_size=8))
def test_frames__encode_then_decode_gives_the_same_trades(symbol: str, trades: list[Trade]) -> None:
    trades = [Trade(symbol, t.price, t.volume, t.side, t.timestamp, trade_id=t.trade_id) for t in trades]
    assert decode_deals(encode_deals(to_mexc_symbol(symbol), trades)) == trades


def test_frames__a_frame_built_with_the_generated_classes_round_trips() -> None:
    wrapper = PushDataV3ApiWrapper(channel=CHANNEL, symbol="BTCUSDT", sendTime=T0 + 5)
    wrapper.publicAggreDeals.eventType = "spot@public.aggre.deals.v3.api.pb@100ms"
    wrapper.publicAggreDeals.deals.add(price="93220.00", quantity="0.04438243", tradeType=2, time=T0)
    parsed = PushDataV3ApiWrapper.FromString(wrapper.SerializeToString())
    assert parsed == wrapper
    assert decode_deals(parsed.SerializeToString()) == [
        Trade("BTC/USDT", 93_220.0, 0.04438243, Side.SELL, T0)
    ]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _wire_frame(item: bytes, *, wrapper_extra: bytes = b"", symbol: bytes | None = b"BTCUSDT") -> bytes:
    """A frame encoded by hand from MEXC's field numbers, independent of the generated code."""
    body = _len_field(1, item) + _len_field(2, b"spot@public.aggre.deals.v3.api.pb@100ms")
    head = _len_field(1, CHANNEL.encode()) + (_len_field(3, symbol) if symbol is not None else b"")
    return head + _len_field(314, body) + _int_field(6, T0 + 1) + wrapper_extra


OLDEST_ITEM = _len_field(1, b"94000.5") + _len_field(2, b"0.1") + _int_field(3, 1) + _int_field(4, T0)


def test_frames__hand_encoded_frame_of_the_oldest_revision_decodes() -> None:
    assert decode_deals(_wire_frame(OLDEST_ITEM)) == [Trade("BTC/USDT", 94_000.5, 0.1, Side.BUY, T0)]


@pytest.mark.parametrize(
    "newer",
    [
        pytest.param(_int_field(6, 1), id="isRpi-bool-at-6"),
        pytest.param(_int_field(6, 987_654_321), id="version-int64-at-6"),
        pytest.param(_int_field(7, 42) + _len_field(9, b"future"), id="fields-7-and-9"),
    ],
)
def test_frames__fields_of_newer_revisions_are_skipped(newer: bytes) -> None:
    item = OLDEST_ITEM + _len_field(5, b"505979017439002624X1") + newer
    frame = _wire_frame(item, wrapper_extra=_len_field(400, b"unknown wrapper field"))
    assert decode_deals(frame) == [
        Trade("BTC/USDT", 94_000.5, 0.1, Side.BUY, T0, trade_id="505979017439002624X1")
    ]


def test_frames__symbol_comes_from_the_channel_when_the_wrapper_has_none() -> None:
    assert decode_deals(_wire_frame(OLDEST_ITEM, symbol=None))[0].symbol == "BTC/USDT"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        pytest.param(b"\x00\x01", "protobuf_invalid", id="not-protobuf"),
        pytest.param(
            _len_field(1, CHANNEL.encode()) + _len_field(301, b""), "body_unexpected", id="publicDeals"
        ),
        pytest.param(_wire_frame(OLDEST_ITEM, symbol=b"BTCXYZ"), "symbol_unknown", id="unknown-quote"),
        pytest.param(_wire_frame(_len_field(1, b"nan") + OLDEST_ITEM[9:]), "price_invalid", id="nan-price"),
        pytest.param(_wire_frame(OLDEST_ITEM + _len_field(2, b"")), "quantity_invalid", id="empty-qty"),
    ],
)
def test_frames__undecodable_frame_raises_with_a_bounded_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(SourceError) as caught:
        decode_deals(frame)
    assert caught.value.reason == reason


# --- MEXC control messages ------------------------------------------------------------------


def test_control__requests_are_mexc_documented_json() -> None:
    assert PING == '{"method": "PING"}'
    assert subscription([CHANNEL]) == '{"method": "SUBSCRIPTION", "params": ["' + CHANNEL + '"]}'


def test_control__pong_ack_and_refusal_are_told_apart() -> None:
    pong = parse_control('{"id":0,"code":0,"msg":"PONG"}')
    ack = parse_control('{"id":0,"code":0,"msg":"' + CHANNEL + '"}')
    refusal = parse_control(
        '{"id":0,"code":0,"msg":"Not Subscribed successfully! [' + CHANNEL + '].  Reason\uff1a Blocked!"}'
    )
    assert (pong.is_pong, pong.refuses()) == (True, False)
    assert (ack.is_pong, ack.refuses(), ack.names(CHANNEL)) == (False, False, True)
    assert (refusal.refuses(), refusal.names(CHANNEL)) == (True, True)
    assert parse_control('{"id":0,"code":1,"msg":"' + CHANNEL + '"}').refuses()


@pytest.mark.parametrize("text", ["PONG", "[]", '{"code":0}', '{"code":"0","msg":"x"}'])
def test_control__a_text_frame_that_is_not_a_reply_raises(text: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse_control(text)
    assert caught.value.reason == "control_invalid"


# --- bundled replay files -------------------------------------------------------------------


@pytest.mark.parametrize(("path", "count"), [(BUNDLED_TRADES, 3_000), (BUNDLED_TRADES_SMALL, 400)])
def test_bundled_file__loads_all_trades_of_five_symbols(path: Path, count: int) -> None:
    trades = load_trades(path)
    assert len(trades) == count
    assert {t.symbol for t in trades} == {"BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT"}


@pytest.mark.parametrize("path", BUNDLED)
def test_bundled_file__says_it_is_synthetic_in_its_first_line(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# synthetic trades, generated by services/ws/make_dataset.py seed=")
    assert "not recorded from an exchange" in first


@pytest.mark.parametrize("spec", DATASETS, ids=lambda s: s.filename)
def test_bundled_file__is_regenerated_byte_for_byte_from_its_seed(spec: DatasetSpec) -> None:
    assert (DATA_DIR / spec.filename).read_bytes() == render(spec).encode("utf-8")


def test_make_dataset__module_writes_the_same_bytes_and_its_check_passes(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "services.ws.make_dataset"]
    subprocess.run([*run, "--out-dir", str(tmp_path)], check=True, capture_output=True)
    check = subprocess.run([*run, "--check"], check=False, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    for path in BUNDLED:
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("path", BUNDLED)
def test_bundled_file__has_several_same_millisecond_bursts_per_symbol_with_no_two_trades_alike(
    path: Path,
) -> None:
    trades = load_trades(path)
    groups = Counter((t.symbol, t.timestamp) for t in trades)
    bursts = Counter(symbol for (symbol, _), n in groups.items() if n > 1)
    assert set(bursts) == {t.symbol for t in trades}, "every symbol has same-millisecond trades"
    assert min(bursts.values()) >= 2
    content = Counter((t.symbol, t.timestamp, t.price, t.volume, t.side) for t in trades)
    assert max(content.values()) == 1, "the legacy path (no trade id) can tell every trade apart"
    assert len({t.trade_id for t in trades}) == len(trades)


@pytest.mark.parametrize("path", BUNDLED)
def test_bundled_file__every_trade_is_a_valid_market_data_v1(path: Path) -> None:
    codec = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
    messages = [codec.build(Topic.MARKET_DATA, t.as_values()) for t in load_trades(path)]
    assert all(isinstance(m, MarketDataV1) and m.api_version == "v1.0" for m in messages)


@pytest.mark.parametrize("path", BUNDLED)
def test_bundled_file__timestamps_never_go_back_and_repeat_only_within_one_symbols_burst(path: Path) -> None:
    trades = load_trades(path)
    assert all(b.timestamp >= a.timestamp for a, b in itertools.pairwise(trades))
    repeats = [(a, b) for a, b in itertools.pairwise(trades) if a.timestamp == b.timestamp]
    assert repeats, "the data must exercise same-millisecond trades"
    assert all(a.symbol == b.symbol and a.side == b.side for a, b in repeats)


@pytest.mark.parametrize("path", BUNDLED)
def test_bundled_file__has_up_and_down_trends_for_a_momentum_strategy(path: Path) -> None:
    window, threshold_bps = 20, 50.0
    by_symbol: dict[str, list[float]] = {}
    for t in load_trades(path):
        by_symbol.setdefault(t.symbol, []).append(t.price)
    moves = [
        (prices[i + window - 1] / prices[i] - 1) * 10_000
        for prices in by_symbol.values()
        for i in range(len(prices) - window + 1)
    ]
    assert max(moves) >= threshold_bps
    assert min(moves) <= -threshold_bps


# --- replay ---------------------------------------------------------------------------------


async def test_replay__full_speed_delivers_every_trade_in_order() -> None:
    trades = load_trades(BUNDLED_TRADES_SMALL)
    seen: list[Trade] = []

    async def collect(trade: Trade) -> None:
        seen.append(trade)

    assert await replay(trades, collect) == len(trades)
    assert seen == trades


async def test_replay__recorded_pace_waits_for_the_timestamp_gaps() -> None:
    trades = load_trades(BUNDLED_TRADES_SMALL)[:6]
    pace = 10.0
    expected = (trades[-1].timestamp - trades[0].timestamp) / 1000 / pace
    arrivals: list[float] = []

    async def stamp(trade: Trade) -> None:
        arrivals.append(time.monotonic())

    started = time.monotonic()
    await replay(trades, stamp, pace=pace)
    assert expected > 0.05
    assert arrivals[-1] - started >= expected - 0.005


async def test_replay__stops_before_the_next_trade_when_asked() -> None:
    trades = load_trades(BUNDLED_TRADES_SMALL)
    stop = asyncio.Event()

    async def stop_after_ten(trade: Trade) -> None:
        if trade is trades[9]:
            stop.set()

    assert await replay(trades, stop_after_ten, stop=stop) == 10


async def test_replay__negative_pace_is_refused() -> None:
    async def ignore(trade: Trade) -> None:
        return None

    with pytest.raises(ValueError, match="pace"):
        await replay([], ignore, pace=-1.0)


GOOD_LINE = "1767225600000,BTC/USDT,BUY,94000.5,0.1,t-1"


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("1767225600001,BTC/USDT,BUY,94000.5", "line_malformed"),
        ("1767225600001,BTC/USDT,HOLD,94000.5,0.1,", "side_invalid"),
        ("1767225600001,BTC/USDT,SELL,abc,0.1,", "price_invalid"),
        ("1767225600001,BTC/USDT,SELL,-3,0.1,", "price_invalid"),
        ("1767225600.5,BTC/USDT,SELL,1,0.1,", "timestamp_invalid"),
        ("1767225600,BTC/USDT,SELL,1,0.1,", "time_invalid"),
    ],
)
def test_load_trades__malformed_line_names_file_and_line_number(
    tmp_path: Path, bad_line: str, reason: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"# comment\ntimestamp,symbol,side,price,volume,trade_id\n{GOOD_LINE}\n{bad_line}\n")
    with pytest.raises(SourceError) as caught:
        load_trades(path)
    assert caught.value.reason == reason
    assert caught.value.where == f"{path}:4"
    assert str(caught.value).startswith(f"{path}:4: {reason}: ")


def test_load_trades__a_file_without_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "headless.csv"
    path.write_text(f"{GOOD_LINE}\n")
    with pytest.raises(SourceError) as caught:
        load_trades(path)
    assert (caught.value.reason, caught.value.where) == ("header_invalid", f"{path}:1")
