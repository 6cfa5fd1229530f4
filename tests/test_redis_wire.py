"""The hand-packed publish pipeline (core/redis/wire.py) against the general forms it shortcuts.

The packer writes an all-ASCII message's XADD part from one template; its bytes must be exactly
the RESP of the same commands packed argument by argument, whatever the names hold. Replies are
read straight from hiredis's buffer; they must be what redis-py's ``read_response`` gives one by
one (an error reply in place), on both readers.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from core.redis import wire
from core.redis.wire import PublishPacker, StreamTrim, pack_command, send_pipelined
from core.topics import KeySpace

TRIMS = [StreamTrim(), StreamTrim(maxlen=None, retention_ms=60_000), StreamTrim(maxlen=None)]
FIELD_MAPS = [
    {"symbol": '"BTC/USDT"', "price": "94000.5", "reason": "null"},  # the common, ASCII map
    {"symbol": '"BTC/USDT"', "note": '"caf\u00e9 \u2603"'},  # a value that is not ASCII
    {"100%": "1", "%d%s": '"%s"', "%%": '"%"'},  # names and values holding format characters
    {"pr\u00efce": "1.5", "side": '"BUY"'},  # a name that is not ASCII
    {},
]


def _reference(channel: str, stream: str, trim: StreamTrim, body: bytes, fields: dict[str, str]) -> bytes:
    xadd = ["XADD", stream, *trim.args(1_767_225_600_000), "*"]
    for name, value in fields.items():
        xadd += [name, value]
    return pack_command(["PUBLISH", channel, body]) + pack_command(xadd)


@pytest.mark.parametrize("trim", TRIMS)
@pytest.mark.parametrize("fields", FIELD_MAPS)
def test_pack__writes_exactly_the_commands_packed_argument_by_argument(
    trim: StreamTrim, fields: dict[str, str]
) -> None:
    packer = PublishPacker("p:market_data", "p:market_data_stream", trim)
    body = b'{"symbol":"BTC/USDT","price":94000.5}'
    for _ in range(2):  # the second time from the remembered template
        packed = packer.pack([(body, fields, 0), (body + b" ", fields, 0, "source")], 1_767_225_600_000)
        assert packed == [
            _reference("p:market_data", "p:market_data_stream", trim, body, fields),
            _reference("p:market_data", "p:market_data_stream", trim, body + b" ", fields),
        ]


def test_pack__refuses_a_value_without_utf8_as_before() -> None:
    packer = PublishPacker("p:c", "p:s", StreamTrim())
    with pytest.raises(UnicodeEncodeError):
        packer.pack([(b"{}", {"symbol": '"X\ud800"'}, 0)], 0)


@pytest.mark.integration
@pytest.mark.parametrize("reader", ["hiredis", "redis-py"])
async def test_send_pipelined__hands_over_every_reply_in_order_an_error_in_place(
    redis_async: aioredis.Redis, keys: KeySpace, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if reader == "redis-py":
        monkeypatch.setattr(wire, "_HiredisParser", None)  # the general, one-by-one loop
    else:
        assert wire._HiredisParser is not None, "hiredis is a dependency: its reader must be in use"
    text, stream = f"{keys.prefix}text", f"{keys.prefix}stream"
    commands = [
        ["SET", text, "x"],
        ["XADD", text, "*", "a", "1"],  # WRONGTYPE: an error reply, handed over in place
        ["XADD", stream, "*", "a", "1"],
        ["PING"],
    ]
    # Big enough that the replies of one chunk arrive in several socket reads.
    filler = [["ECHO", "y" * 70_000] for _ in range(20)]
    chunks = [([pack_command(c) for c in commands], len(commands)), ([pack_command(c) for c in filler], 20)]
    got: list[list[object]] = []

    await send_pipelined(redis_async, chunks, got.append)

    first, second = got
    assert first[0] == b"OK"
    assert isinstance(first[1], ResponseError)
    assert "WRONGTYPE" in str(first[1])
    assert isinstance(first[2], bytes)
    assert first[2].count(b"-") == 1  # a stream id
    assert first[3] == b"PONG"
    assert second == [b"y" * 70_000] * 20
    assert await redis_async.ping()  # the connection went back to the pool in a clean state


@pytest.mark.integration
@pytest.mark.parametrize("reader", ["hiredis", "redis-py"])
async def test_send_pipelined__a_resp3_push_between_replies_is_handed_to_the_parser_not_counted(
    redis_async: aioredis.Redis, keys: KeySpace, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py 8 speaks RESP3 unless told otherwise: with client tracking on, the server pushes
    # an invalidation to this very connection when it changes a key it read, between replies.
    fast_reads: list[int] = []
    if reader == "redis-py":
        monkeypatch.setattr(wire, "_HiredisParser", None)
    else:
        read_hiredis = wire._read_hiredis

        async def counted(conn: object, parser: object, count: int, limit: float) -> list[object]:
            fast_reads.append(count)
            return await read_hiredis(conn, parser, count, limit)

        monkeypatch.setattr(wire, "_read_hiredis", counted)
    assert await redis_async.ping()
    conn = await redis_async.connection_pool.get_connection()
    protocol = conn.protocol
    await redis_async.connection_pool.release(conn)
    assert str(protocol) == "3", "the client under test speaks RESP3"
    key = f"{keys.prefix}tracked"
    commands = [
        ["CLIENT", "TRACKING", "ON"],
        ["SET", key, "a"],
        ["GET", key],  # tracked from now on
        ["SET", key, "b"],  # an invalidation push for the GET above
        ["CLIENT", "TRACKING", "OFF"],
        ["PING"],
    ]
    got: list[list[object]] = []

    await send_pipelined(redis_async, [([pack_command(c) for c in commands], len(commands))], got.append)

    assert got == [[b"OK", b"OK", b"a", b"OK", b"OK", b"PONG"]]
    assert fast_reads == ([len(commands)] if reader == "hiredis" else [])  # RESP3 on the fast reader
    assert await redis_async.get(key) == b"b"  # the connection went back to the pool in step
