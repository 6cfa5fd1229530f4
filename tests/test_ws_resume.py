"""A recreated ws resumes its replay where the last one stopped (real ``cdb service ws``
processes on the real Redis): SIGTERM repeats nothing, SIGKILL at most the batch whose
position was not yet written; ``--from-start`` replays the file again."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from core.redis import connect_async
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic
from services.runtime import ServiceContext
from services.ws.outbox import Outbox, Overflow
from services.ws.position import PositionError, SourcePositions
from services.ws.replay import BUNDLED_TRADES_SMALL, load_trades
from services.ws.service import WsService
from services.ws.sources import ReplaySource, ResumableSource, run_resumable
from services.ws.synthetic import SyntheticMarket, SyntheticSpec
from services.ws.trades import Trade
from tests.proc_helpers import ServiceProc, poll, status_rows
from tests.stream_reading import published_trade_ids

pytestmark = pytest.mark.integration

FILE_IDS = [t.trade_id for t in load_trades(BUNDLED_TRADES_SMALL)]
PACE = "25"  # the 400-trade file then takes about 2.5 s: long enough to stop it mid-way


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[ServiceProc]]:
    made: list[ServiceProc] = []
    yield made
    for proc in made:
        proc.close()


def _ws(procs: list[ServiceProc], tmp_path: Path, redis_url: str, keys: KeySpace, *args: str) -> ServiceProc:
    env = {
        "REDIS_URL": redis_url,
        "KEY_PREFIX": keys.prefix,
        "INSTANCE": f"ws-{uuid.uuid4().hex[:6]}",
        "USE_PYDANTIC_CONTRACTS": "true",  # market_data then carries the trade id
        "WS_SOURCE": "replay",
        "WS_REPLAY_FILE": str(BUNDLED_TRADES_SMALL),
        "WS_REPLAY_PACE": PACE,
    }
    proc = ServiceProc("ws", env, tmp_path, args)
    procs.append(proc)
    return proc.start()


def _published_some(client: redis.Redis, keys: KeySpace, at_least: int) -> bool:
    n = len(published_trade_ids(client, keys))
    return at_least <= n < len(FILE_IDS)


def _position(client: redis.Redis, keys: KeySpace) -> int:
    identity = ReplaySource.from_file(BUNDLED_TRADES_SMALL).identity
    raw = client.hget(keys.source_positions(), identity)
    return int(raw) if raw else 0


def test_ws_resume__sigterm_mid_replay_then_restart_publishes_every_trade_once_in_order(
    procs: list[ServiceProc], tmp_path: Path, redis_url: str, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    first = _ws(procs, tmp_path, redis_url, keys)
    poll(lambda: _published_some(redis_sync, keys, 50), timeout_s=60, what="ws mid-replay")
    code, took = first.terminate()
    assert code == 0, first.log()
    stopped_at = len(published_trade_ids(redis_sync, keys))
    assert 0 < stopped_at < len(FILE_IDS), "the stop must land mid-replay for this test to mean anything"
    assert _position(redis_sync, keys) == stopped_at, "a clean stop saves exactly what it published"
    row = next(r for r in status_rows(redis_url, keys.prefix) if r["instance"] == first.instance)
    assert row["state"] == "stopped"
    print(f"ws replay SIGTERM stop: {took:.3f}s after {stopped_at} trades")

    second = _ws(procs, tmp_path, redis_url, keys)
    poll(lambda: _position(redis_sync, keys) == len(FILE_IDS), timeout_s=60, what="the replay to finish")
    assert published_trade_ids(redis_sync, keys) == FILE_IDS
    assert second.terminate()[0] == 0


def test_ws_resume__sigkill_mid_replay_repeats_at_most_the_unsaved_batch(
    procs: list[ServiceProc], tmp_path: Path, redis_url: str, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    first = _ws(procs, tmp_path, redis_url, keys)
    poll(lambda: _published_some(redis_sync, keys, 50), timeout_s=60, what="ws mid-replay")
    first.kill()
    killed_at = len(published_trade_ids(redis_sync, keys))
    saved = _position(redis_sync, keys)
    assert 0 < saved <= killed_at < len(FILE_IDS)

    _ws(procs, tmp_path, redis_url, keys)
    poll(lambda: _position(redis_sync, keys) == len(FILE_IDS), timeout_s=60, what="the replay to finish")
    ids = published_trade_ids(redis_sync, keys)
    repeated = killed_at - saved
    # Everything the crash had published, then the file again from the saved position:
    # the only repeats are the trades published after the last saved position.
    assert ids == FILE_IDS[:killed_at] + FILE_IDS[saved:]
    assert repeated <= 500, "at most one outbox batch"
    print(f"ws replay SIGKILL: {repeated} trade(s) repeated (published, position not yet saved)")


def test_ws_resume__from_start_replays_the_file_again(
    procs: list[ServiceProc], tmp_path: Path, redis_url: str, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    first = _ws(procs, tmp_path, redis_url, keys)
    poll(lambda: _position(redis_sync, keys) == len(FILE_IDS), timeout_s=60, what="the replay to finish")
    assert first.terminate()[0] == 0

    plain = _ws(procs, tmp_path, redis_url, keys)  # without the flag: resumes at the end, sends nothing
    poll(lambda: '"next_trade": 400' in plain.log() or '"next_trade":400' in plain.log(), what="the resume")
    assert plain.terminate()[0] == 0
    assert published_trade_ids(redis_sync, keys) == FILE_IDS

    again = _ws(procs, tmp_path, redis_url, keys, "--from-start")
    poll(
        lambda: len(published_trade_ids(redis_sync, keys)) == 2 * len(FILE_IDS),
        timeout_s=60,
        what="the second replay",
    )
    assert again.terminate()[0] == 0
    assert published_trade_ids(redis_sync, keys) == FILE_IDS + FILE_IDS


async def test_outbox__confirms_the_last_mark_of_each_published_batch_refused_trades_included(
    redis_url: str, keys: KeySpace
) -> None:
    refused = {"t-4", "t-10"}

    class Refusing(WsService):
        async def build(self, trade: Trade) -> object | None:
            return None if trade.trade_id in refused else await super().build(trade)

    client = connect_async(redis_url)
    settings = ServiceSettings.load(
        ServiceName.WS, environ={}, overrides={"key_prefix": keys.prefix, "use_pydantic_contracts": True}
    )
    confirmed: list[object] = []

    async def on_confirmed(mark: object) -> None:
        published = await client.xlen(keys.stream(Topic.MARKET_DATA))
        confirmed.append((mark, published))

    outbox = Outbox(
        Refusing(ServiceContext.create(ServiceName.WS, settings, client)),
        capacity=100,
        overflow=Overflow.WAIT,
        on_confirmed=on_confirmed,
    )
    stop = asyncio.Event()
    sender = asyncio.create_task(outbox.run(stop))
    trades = load_trades(BUNDLED_TRADES_SMALL)[:10]
    try:
        for n, trade in enumerate(trades, start=1):
            await outbox.put(dataclasses.replace(trade, trade_id=f"t-{n}"), n)
        await asyncio.wait_for(outbox.drain(), timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(sender, timeout=30)
        await client.aclose()
    marks = [m for m, _ in confirmed]
    assert marks == sorted(marks)
    assert marks[-1] == 10, "the refused last trade still moves the position past it"
    for mark, published in confirmed:
        # when a mark is confirmed, every accepted trade up to it is on the stream
        assert isinstance(mark, int)
        assert published >= sum(1 for n in range(1, mark + 1) if f"t-{n}" not in refused)


SYNTHETIC = SyntheticSpec(seed=3, symbols=8, rate=400.0, start_ms=1_767_225_600_000)


def _synthetic_ws(procs: list[ServiceProc], tmp_path: Path, redis_url: str, keys: KeySpace) -> ServiceProc:
    env = {
        "REDIS_URL": redis_url,
        "KEY_PREFIX": keys.prefix,
        "INSTANCE": f"ws-{uuid.uuid4().hex[:6]}",
        "USE_PYDANTIC_CONTRACTS": "true",
        "WS_SOURCE": "synthetic",
        "WS_SYNTHETIC_SEED": str(SYNTHETIC.seed),
        "WS_SYNTHETIC_SYMBOLS": str(SYNTHETIC.symbols),
        "WS_SYNTHETIC_RATE": f"{SYNTHETIC.rate:g}",
        "WS_SYNTHETIC_START_MS": str(SYNTHETIC.start_ms),
    }
    proc = ServiceProc("ws", env, tmp_path)
    procs.append(proc)
    return proc.start()


def _synthetic_position(client: redis.Redis, keys: KeySpace) -> int:
    raw = client.hget(keys.source_positions(), SYNTHETIC.identity)
    return SyntheticMarket(SYNTHETIC).resume(raw.decode()) if raw else 0


def test_ws_resume__synthetic_market_goes_on_after_sigkill_and_sigterm(
    procs: list[ServiceProc], tmp_path: Path, redis_url: str, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    def published() -> int:
        return len(published_trade_ids(redis_sync, keys))

    first = _synthetic_ws(procs, tmp_path, redis_url, keys)
    poll(lambda: published() >= 300, timeout_s=60, what="synthetic trades")
    first.kill()
    killed_at, saved = published(), _synthetic_position(redis_sync, keys)
    assert 0 < saved <= killed_at

    second = _synthetic_ws(procs, tmp_path, redis_url, keys)
    poll(lambda: _synthetic_position(redis_sync, keys) >= killed_at + 300, timeout_s=60, what="the resume")
    assert second.terminate()[0] == 0
    total = _synthetic_position(redis_sync, keys)

    third = _synthetic_ws(procs, tmp_path, redis_url, keys)
    poll(lambda: _synthetic_position(redis_sync, keys) >= total + 300, timeout_s=60, what="the second resume")
    assert third.terminate()[0] == 0
    end = _synthetic_position(redis_sync, keys)

    expected = [f"syn-{SYNTHETIC.seed}-{n}" for n in range(end)]
    ids = published_trade_ids(redis_sync, keys)
    # The SIGKILL repeats only what it published after its last saved position; the SIGTERM nothing.
    assert ids == expected[:killed_at] + expected[saved:]
    print(f"synthetic: SIGKILL repeated {killed_at - saved} trade(s); {end} trades over 3 runs")


def test_ws_resume__unreadable_saved_position__refuses_to_start_with_one_line_naming_it_and_the_remedy(
    procs: list[ServiceProc], tmp_path: Path, redis_url: str, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    identity = ReplaySource.from_file(BUNDLED_TRADES_SMALL).identity
    redis_sync.hset(keys.source_positions(), identity, "12x")
    proc = _ws(procs, tmp_path, redis_url, keys)
    assert proc.proc is not None
    code = proc.proc.wait(timeout=60)
    out = proc.log()

    assert code != 0, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for part in (keys.source_positions(), identity, "'12x'", "--from-start", "HDEL"):
        assert part in errors[0], errors[0]
    assert "Traceback" not in out, out
    assert "unexpected" not in out, out
    # Loses nothing: no trade sent on a guess, and the value is left for the operator to look at.
    assert published_trade_ids(redis_sync, keys) == []
    assert redis_sync.hget(keys.source_positions(), identity) == b"12x"
    # cdb status says it failed and why (not "stale", as after a crash), the same line.
    (row,) = [r for r in status_rows(redis_url, keys.prefix) if r["instance"] == proc.instance]
    assert (row["state"], row["stale"]) == ("failed", False)
    assert row["error"] == errors[0].removeprefix("error: ")


def _replay() -> ResumableSource:
    return ReplaySource.from_file(BUNDLED_TRADES_SMALL)


def _synthetic() -> ResumableSource:
    return SyntheticMarket(SYNTHETIC)


@pytest.mark.parametrize(
    ("make", "bad"),
    [
        (_replay, "12x"),
        (_replay, "-5"),  # int() takes it, and the file's last 5 trades would go out again
        (_synthetic, "not json"),
        (_synthetic, "{}"),
        (_synthetic, '{"block": 1, "clock_ms": 0, "walks": [], "done": 0}'),  # another symbol count
    ],
)
async def test_run_resumable__unreadable_saved_position__raises_position_error_naming_key_field_and_value(
    make: Callable[[], ResumableSource], bad: str, redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    source = make()
    await redis_async.hset(keys.source_positions(), source.identity, bad)
    positions = SourcePositions(redis_async, keys, source.identity)
    sent: list[Trade] = []

    async def put(trade: Trade, mark: object) -> None:
        sent.append(trade)

    with pytest.raises(PositionError) as caught:
        await run_resumable(source, positions, put, asyncio.Event())
    assert (caught.value.key, caught.value.field, caught.value.value) == (
        keys.source_positions(),
        source.identity,
        bad,
    )
    assert sent == []
    assert await redis_async.hget(keys.source_positions(), source.identity) == bad.encode()
