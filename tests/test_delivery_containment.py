"""One bad message never harms another: [bad, good] batches through real services on real Redis.

Every kind of broken entry the transport fuzzer makes (tests/test_transport_dead_letters.py),
a string holding a lone surrogate (valid JSON, no UTF-8 form: the legacy guard lets it
through), a handler that raises for one message, an output that cannot be encoded, and
one whose failure only shows while the batch is packed: in each case every good message
of the batch is processed and only the bad one is dead-lettered.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import Decoded
from core.redis import outbox
from core.topics import KeySpace, ServiceName
from services.risk.service import RiskService
from services.signal.service import SignalService
from services.signal.strategy import SignalParams
from tests.delivery_helpers import PATHS, Drained, drain, service_settings, value_fields
from tests.test_transport_dead_letters import MUTATIONS

pytestmark = pytest.mark.integration

BASE_MS = 1_767_225_600_000
FIRING = SignalParams(window=2, threshold_bps=1, cooldown=0)
SURROGATE = '"X\\ud800/USDT"'  # JSON text of a string with a lone surrogate (no UTF-8 form)


def _trade(i: int, symbol: str = "X/USDT") -> dict[str, str]:
    return value_fields(
        {
            "symbol": symbol,
            "price": 100.0 + i,
            "volume": 1.0,
            "side": "BUY",
            "venue": "mexc",
            "timestamp": BASE_MS + i,
            "trade_id": f"t{i}",
        }
    )


def _signal(i: int, **raw: str) -> dict[str, str]:
    fields = value_fields(
        {
            "signal_id": f"sig-{i}",
            "symbol": f"S{i}/USDT",
            "side": "BUY",
            "price": 100.0,
            "strength": 0.5,
            "reason": "test",
        }
    )
    return {**fields, **raw}


def _as_bytes(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def _signal_ids(run: Drained) -> set[str]:
    return {json.loads(f[b"signal_id"]) for f in run.outputs}


def _assert_contained(run: Drained, bad: set[int], good: set[int]) -> None:
    """Only entries at positions ``bad`` (some of them) were dead-lettered, none of ``good``."""
    dead = {run.ids.index(i) for i in run.dead_ids}
    assert dead, "the bad entry must be dead-lettered"
    assert dead <= bad
    assert not dead & good


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
@pytest.mark.parametrize("path", PATHS)
async def test_signal__a_fuzzed_bad_entry_dead_letters_alone_and_its_batch_is_processed(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str, path: str, kind: str
) -> None:
    bad = MUTATIONS[kind](_as_bytes(_trade(50, "Y/USDT")), random.Random(kind))
    entries = [_trade(0), bad, _trade(1), _trade(2)]
    settings = service_settings(ServiceName.SIGNAL, keys, redis_url, path)

    run = await drain(redis_async, settings, lambda ctx: SignalService(ctx, FIRING), entries)

    assert [letter.stream_id for letter in run.letters] == [run.ids[1]]
    assert _signal_ids(run) == {f"sig-X/USDT-{BASE_MS + 1}", f"sig-X/USDT-{BASE_MS + 2}"}
    assert run.ctx.metrics.snapshot()["messages_ok"] == 3


@pytest.mark.parametrize("path", PATHS)
async def test_signal__a_signal_with_a_lone_surrogate_dead_letters_only_the_trade_that_fired_it(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str, path: str
) -> None:
    poison = {**_trade(10), "symbol": SURROGATE}
    poison_later = {**_trade(11), "symbol": SURROGATE}  # completes the window: fires, cannot be sent
    entries = [_trade(0), poison, _trade(1), poison_later, _trade(2)]
    settings = service_settings(ServiceName.SIGNAL, keys, redis_url, path)

    run = await drain(redis_async, settings, lambda ctx: SignalService(ctx, FIRING), entries)

    _assert_contained(run, bad={1, 3}, good={0, 2, 4})
    assert _signal_ids(run) == {f"sig-X/USDT-{BASE_MS + 1}", f"sig-X/USDT-{BASE_MS + 2}"}
    assert all(letter.reason != "max_deliveries" for letter in run.letters)


@pytest.mark.parametrize("path", PATHS)
async def test_signal__a_handler_that_raises_for_one_message_dead_letters_only_it(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str, path: str
) -> None:
    class RaisesOnPrice999(SignalService):
        async def handle(self, decoded: Decoded, entry_id: str) -> None:
            await super().handle(decoded, entry_id)  # defers its output first: it must not leak
            if decoded.message.price == 999.0:
                raise RuntimeError("this one message breaks the handler")

    entries = [_trade(0), {**_trade(1), "price": "999.0"}, _trade(2), _trade(3)]
    settings = service_settings(ServiceName.SIGNAL, keys, redis_url, path)

    run = await drain(redis_async, settings, lambda ctx: RaisesOnPrice999(ctx, FIRING), entries)

    assert [letter.stream_id for letter in run.letters] == [run.ids[1]]
    # The raising entry fired a signal before it raised: that output was taken back every time
    # (on its redelivery too, recognised as a duplicate); the others' signals went out.
    assert _signal_ids(run) == {f"sig-X/USDT-{BASE_MS + 2}", f"sig-X/USDT-{BASE_MS + 3}"}
    assert run.ctx.metrics.snapshot()["messages_ok"] == 3


@pytest.mark.parametrize("path", PATHS)
async def test_risk__an_order_that_cannot_be_encoded_dead_letters_only_its_signal(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str, path: str
) -> None:
    good = range(1, 10)
    entries = [_signal(0, symbol=SURROGATE), *(_signal(i) for i in good)]
    settings = service_settings(ServiceName.RISK, keys, redis_url, path)

    run = await drain(redis_async, settings, RiskService, entries)

    assert [letter.stream_id for letter in run.letters] == [run.ids[0]]
    assert run.letters[0].reason != "max_deliveries"
    assert sorted(json.loads(f[b"order_id"]) for f in run.outputs) == sorted(f"ord-sig-{i}" for i in good)


async def test_risk__an_output_that_fails_only_when_packed_dead_letters_only_its_input(
    redis_async: aioredis.Redis,
    keys: KeySpace,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Take away the check made when an output is deferred: the surrogate then fails in the
    # batch's flush, where the publisher must still pin it on the one input that made it.
    def unchecked(*_: Any) -> None:
        return None

    monkeypatch.setattr(outbox, "utf8_checked", unchecked)
    good = range(1, 10)
    entries = [_signal(i) for i in good]
    entries.insert(4, _signal(0, symbol=SURROGATE))
    settings = service_settings(ServiceName.RISK, keys, redis_url, "legacy")

    run = await drain(redis_async, settings, RiskService, entries)

    assert [letter.stream_id for letter in run.letters] == [run.ids[4]]
    assert run.letters[0].reason == "serialization"
    assert sorted(json.loads(f[b"order_id"]) for f in run.outputs) == sorted(f"ord-sig-{i}" for i in good)
