"""``cdb dashboard`` without a browser: its history arithmetic, the bind rule, the token, the JSON."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import uvicorn

from cdb.cli.dashboard import needs_token
from cdb.cli.dashboard_app import Sampler, create_app
from core.dashboard_state import History, Snapshot
from core.errors import ContractError
from core.redis.dead_letters import DeadLetters
from core.redis.modes import RedisTarget
from core.status import STOPPED, LiveState, StatusReporter
from core.topics import KeySpace, ServiceName, Topic
from tests.ops_helpers import cdb, report_state, service_settings
from tests.service_procs import free_port


def _state(service: str, instance: str, started: int, path: str, shapes: dict[str, int]) -> LiveState:
    profile = "lenient" if path == "pydantic" else None
    return LiveState(service, instance, path, profile, False, "t", started, counts={"wire_shape": shapes})


def _snap(at_ms: int, *states: LiveState) -> Snapshot:
    return Snapshot(at_ms, list(states), 1, {})


def test_history__rate_and_legacy_share_per_topic_over_the_window() -> None:
    history = History(window_ms=2000)
    history.add(_snap(0, _state("signal", "s1", 0, "pydantic", {})))
    shapes = {"received.market_data.legacy": 30, "received.market_data.v1.0": 10}
    history.add(_snap(2000, _state("signal", "s1", 0, "pydantic", shapes)))
    [point] = history.topic_series()["market_data"]
    assert point["rate"] == 20.0  # 40 messages in 2 s
    assert point["legacy_share"] == 0.75
    assert history.topic_series()["signals"][0]["legacy_share"] == -1.0  # nothing came in


def test_history__a_restart_counts_from_zero_and_never_goes_negative() -> None:
    history = History(window_ms=1000)
    history.add(_snap(0, _state("signal", "s1", 0, "legacy", {"received.market_data.legacy": 500})))
    # Restarted (new start time): its counters begin again at 4.
    history.add(_snap(1000, _state("signal", "s1", 900, "pydantic", {"received.market_data.legacy": 4})))
    [point] = history.topic_series()["market_data"]
    assert point["rate"] == 4.0


def test_history__timeline_names_each_flip_of_a_service() -> None:
    history = History()
    history.add(_snap(10, _state("risk", "r1", 1, "legacy", {}), _state("ws", "w1", 2, "legacy", {})))
    history.add(_snap(20, _state("risk", "r1", 15, "pydantic", {}), _state("ws", "w1", 2, "legacy", {})))
    history.add(_snap(30, _state("risk", "r1", 25, "pydantic", {})))
    flips = [(s["service"], s["started_ms"], s["flip"]) for s in history.timeline()]
    assert flips == [
        ("risk", 1, None),
        ("ws", 2, None),
        ("risk", 15, "legacy -> pydantic/lenient"),
        ("risk", 25, None),  # a restart on the same path is no flip
    ]


@pytest.mark.parametrize(
    ("host", "needed"),
    [("127.0.0.1", False), ("::1", False), ("localhost", False), ("0.0.0.0", True), ("10.0.0.5", True)],
)
def test_needs_token__only_loopback_goes_without(host: str, needed: bool) -> None:
    assert needs_token(host) is needed


def test_cdb_dashboard__other_bind_without_token_is_refused_naming_the_option() -> None:
    result = cdb("dashboard", "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "--host='0.0.0.0'" in result.output
    assert "--token" in result.output


@contextlib.contextmanager
def _serving(sampler: Sampler, token: str | None) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(sampler, token=token), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _get(url: str, **headers: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            body = reply.read()
            return reply.status, json.loads(body) if reply.headers["content-type"].startswith(
                "application/json"
            ) else body
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _wait_json(url: str, ready: Any, **headers: str) -> Any:
    deadline = time.monotonic() + 20
    while True:
        status, body = _get(url, **headers)
        if status == 200 and ready(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


@pytest.mark.integration
async def test_dashboard_app__token_guards_every_route_but_healthz(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await report_state(
        redis_async, service_settings(ServiceName.RISK, keys, "risk-9", use_pydantic_contracts=True)
    )
    sampler = Sampler(RedisTarget(url=redis_url), keys.prefix, interval_s=0.1)
    with _serving(sampler, token="s3cret") as base:
        assert _get(f"{base}/api/state")[0] == 401
        assert _get(f"{base}/")[0] == 401
        assert _get(f"{base}/api/state?token=wrong")[0] == 401
        assert _get(f"{base}/healthz")[0] == 200
        body = _wait_json(f"{base}/api/state?token=s3cret", lambda b: b["instances"])
        assert [(r["instance"], r["path"]) for r in body["instances"]] == [("risk-9", "pydantic")]
        status, _ = _get(f"{base}/api/state", Authorization="Bearer s3cret")
        assert status == 200


@pytest.mark.integration
async def test_dashboard_app__lists_dead_letters_and_counts_them_by_error_type(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    error = ContractError(
        topic="signals",
        path="legacy",
        profile=None,
        raw=b'{"side":"UP"}',
        errors=[{"type": "enum", "loc": ("side",), "msg": "x"}],
    )
    await DeadLetters(redis_async, keys).park(
        Topic.SIGNALS, b'{"side":"UP"}', error, service=ServiceName.RISK, path="legacy"
    )
    sampler = Sampler(RedisTarget(url=redis_url), keys.prefix, interval_s=0.1)
    with _serving(sampler, token=None) as base:
        state = _wait_json(f"{base}/api/state", lambda b: b["dead_letters"])
        assert state["dead_letters"]["signals"] == {"entries": 1, "by_type": {"enum": 1}, "sampled": 1}
        status, listing = _get(f"{base}/api/dead-letters/signals")
        assert status == 200
        [letter] = listing["dead_letters"]
        assert (letter["service"], letter["reason"], letter["raw_preview"]) == (
            "risk",
            "enum",
            '{"side":"UP"}',
        )
        assert _get(f"{base}/api/dead-letters/nope")[0] == 404
        status, page = _get(f"{base}/")
        assert status == 200
        assert b"cdb migration" in page


@pytest.mark.integration
async def test_dashboard_app__a_partition_no_live_instance_owns_is_named_and_its_backlog_in_the_lag(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    """Risk's only instance stopped: the signals waiting for it are in no instance's lag, and
    the page still shows them (and names the partition)."""
    stopped = LiveState("risk", "risk-1", "pydantic", "lenient", False, "t", started_ms=1, owned=[0])
    stopped.state = STOPPED
    await StatusReporter(redis_async, keys, lambda: stopped).report_once()
    for n in range(2):
        await redis_async.xadd(keys.stream(Topic.SIGNALS), {"n": str(n)})
    sampler = Sampler(RedisTarget(url=redis_url), keys.prefix, interval_s=0.1)
    with _serving(sampler, token=None) as base:
        state = _wait_json(f"{base}/api/state", lambda b: b["instances"])
    assert state["unowned"] == [{"service": "risk", "partitions": [0], "waiting": 2}]
    assert state["lag"] == {"risk": 2}
