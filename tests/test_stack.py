"""The compose stack, built and run for real: the runbook walked with real containers.

One long scenario, top to bottom, as an operator runs it (docs/migration-runbook.md):
all legacy; signal flipped by editing its env file and recreating that container; shadow on
risk; `cdb cutover check` NO-GO while legacy-shaped messages flow and GO once every producer is
on Pydantic; `cdb cutover apply` with the containers recreated in the order it prints;
`cdb cutover rollback`. Throughout, ws resumes rather than replays, and at the end every trade
ws published is in `market_data` once and every order has exactly one result, in PostgreSQL and
on `order_results` (none lost, none twice). Images come from scripts/stack.sh (official ones,
or offline builds from Debian packages); the transcript goes to var/stack-transcript.md.

Needs a Docker engine: `scripts/stack.sh test` (called by scripts/test.sh) makes sure of one.
Without one it skips, and in CI a skip fails the run.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from services.ws.replay import BUNDLED_TRADES, load_trades
from tests.stack_helpers import ROOT, Stack, docker_available, set_env_value, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.stack,
    pytest.mark.skipif(
        not docker_available(), reason="no Docker engine (scripts/stack.sh docker starts one)"
    ),
    pytest.mark.skipif(os.environ.get("CDB_STACK") == "0", reason="CDB_STACK=0 (local runs; CI runs it)"),
    pytest.mark.timeout(1500),
]

SERVICES = ("ws", "signal", "risk", "execution")
# Replay the bundled trades ten times faster than recorded: ~45 s of traffic per pass, and a
# resumed ws keeps going where it stopped, so the whole walk sees a steady stream.
FAST_WS = {"WS_REPLAY_PACE": "10"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack.create(tmp_path_factory.mktemp("stack"))
    for key, value in FAST_WS.items():
        set_env_value(s.directory / "env" / "ws.env", key, value)
    started = time.monotonic()
    try:
        s.compose("up", "-d", "--no-build")
        healthy_s = wait_for(
            "every container healthy",
            lambda: (
                (h := s.health()) and all(h.get(n) == "healthy" for n in ("redis", "postgres", *SERVICES))
            ),
            timeout=240,
            every=1.0,
        )
        s.note(f"# stack healthy {time.monotonic() - started:.1f}s after `up` ({healthy_s:.1f}s of waiting)")
        yield s
    finally:
        s.compose("logs", "--no-color", "--tail=40", check=False)
        s.compose("down", "-v", "--remove-orphans", check=False, timeout=300)
        out = ROOT / "var" / "stack-transcript.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text("\n\n".join(s.transcript) + "\n", encoding="utf-8")


def _flip(stack: Stack, service: str, **values: str) -> float:
    """Edit ``service``'s env file, recreate only its container; seconds until `cdb status` shows it."""
    for key, value in values.items():
        set_env_value(stack.directory / "env" / f"{service}.env", key, value)
    before = stack.live().get(service, {}).get("started_ms", 0)
    stack.compose("up", "-d", "--no-deps", service)
    recreated = time.monotonic()
    want_path = "pydantic" if values.get("USE_PYDANTIC_CONTRACTS", "").lower() == "true" else None

    def shown() -> bool:
        inst = stack.live().get(service)
        if inst is None or inst["started_ms"] <= before:
            return False
        return want_path is None or inst["path"] == want_path

    wait_for(f"{service} restarted with {values}", shown, timeout=60)
    delay = time.monotonic() - recreated
    stack.note(f"# {service}: {values} visible in cdb status {delay:.1f}s after the recreate")
    return delay


def _recreate(stack: Stack, service: str) -> None:
    before = stack.live().get(service, {}).get("started_ms", 0)
    stack.compose("up", "-d", "--no-deps", service)
    wait_for(f"{service} recreated", lambda: stack.live().get(service, {}).get("started_ms", 0) > before, 60)


def _drained(stack: Stack) -> bool:
    live = stack.live()
    return all(
        live.get(s, {}).get("lag", 1) == 0 and live.get(s, {}).get("counts", {}).get("pending", 0) == 0
        for s in ("signal", "risk", "execution")
    )


def test_stack__the_runbook_with_real_containers_keeps_every_trade_and_result_once(stack: Stack) -> None:
    # Week 1: everything legacy, trades flowing end to end.
    wait_for("four live legacy instances", lambda: sorted(stack.live()) == sorted(SERVICES), timeout=60)
    assert {i["path"] for i in stack.live().values()} == {"legacy"}
    wait_for("signal handles trades", lambda: stack.live()["signal"]["handled"] > 50, timeout=120)
    stack.cdb("status")

    # Prometheus scrapes every service's /metrics (and loaded the migration rules).
    up_s = wait_for(
        "Prometheus reports every service target up", lambda: _targets_up(stack) == set(SERVICES), 90
    )
    stack.note(f"# Prometheus: every service target up ({up_s:.1f}s of waiting)")

    # Week 2: flip signal by editing its env file and recreating that one container.
    flip_delays = [_flip(stack, "signal", USE_PYDANTIC_CONTRACTS="true")]
    assert flip_delays[0] <= 10.0, f"the flip took {flip_delays[0]:.1f}s to show in cdb status"
    live = stack.live()
    assert live["signal"]["path"] == "pydantic"
    assert live["ws"]["path"] == "legacy", "the other containers keep running as they were"

    # Shadow on risk: both paths decode, mismatches counted.
    _flip(stack, "risk", CONTRACT_SHADOW="true")
    assert stack.live()["risk"]["shadow"] is True

    # Legacy-shaped messages still flow (ws, risk are legacy): the gate says NO-GO.
    verdict = stack.cdb("cutover", "check", "--window", "3", check=False)
    assert verdict.returncode != 0, "cutover check must refuse while legacy producers run"

    # Week 3: every service on Pydantic (lenient), shadow off again; from the end backwards.
    for service in ("execution", "risk", "ws"):
        flip_delays.append(_flip(stack, service, USE_PYDANTIC_CONTRACTS="true", CONTRACT_SHADOW="false"))
    assert {i["path"] for i in stack.live().values()} == {"pydantic"}

    # Clean now: GO (the dead letters, if any, were reviewed before this point).
    wait_for("signal consumes pydantic-shaped trades", lambda: stack.live()["signal"]["handled"] > 20, 120)
    go = stack.cdb(
        "cutover",
        "check",
        "--window",
        "5",
        "--dlq-reviewed-before",
        str(int(time.time() * 1000)),
        check=False,
    )
    assert go.returncode == 0, f"cutover check should say GO once every producer is on Pydantic:\n{go.stdout}"

    # Week 4: apply, recreate in the printed order, all strict.
    applied = stack.cdb(
        "cutover",
        "apply",
        "--env-dir",
        str(stack.directory / "env"),
        "--window",
        "3",
        "--dlq-reviewed-before",
        str(int(time.time() * 1000)),
    )
    order = [s for s in ("execution", "risk", "signal", "ws") if f"--no-deps {s}" in applied.stdout]
    assert order == ["execution", "risk", "signal", "ws"], applied.stdout
    for service in order:
        _recreate(stack, service)
    assert {i["profile"] for i in stack.live().values() if i["service"] != "ws"} == {"strict"}

    # Roll back: the files of before the apply, containers recreated, lenient again.
    stack.cdb("cutover", "rollback", "--env-dir", str(stack.directory / "env"))
    for service in ("execution", "risk", "signal", "ws"):
        _recreate(stack, service)
    assert {i["profile"] for i in stack.live().values() if i["service"] != "ws"} == {"lenient"}

    # None lost, none twice: stop the source, let the pipeline drain, compare by content.
    stack.compose("stop", "ws")
    wait_for("the pipeline drained", lambda: _drained(stack), timeout=120)
    stack.cdb("status")
    _assert_every_trade_and_result_once(stack)
    stack.note(f"# flip-to-visible delays (s): {', '.join(f'{d:.1f}' for d in flip_delays)}")


def _assert_every_trade_and_result_once(stack: Stack) -> None:
    env = stack.operator_env()
    r = redis.Redis.from_url(env["REDIS_URL"], decode_responses=True)
    try:
        # Stream entries hold one field per message field, each value JSON (core.codec.fields).
        # The legacy path does not carry trade_id, so a trade is known by its values.
        trades = [
            _trade_key({k: json.loads(v) for k, v in f.items()}) for _, f in r.xrange("market_data_stream")
        ]
        orders = [json.loads(f["order_id"]) for _, f in r.xrange("orders_stream")]
        results = [json.loads(f["order_id"]) for _, f in r.xrange("order_results_stream")]
    finally:
        r.close()
    bundled = Counter(_trade_key(t.as_values()) for t in load_trades(BUNDLED_TRADES))
    repeated = Counter(trades) - bundled
    assert trades, "ws published nothing: nothing was compared"
    assert not repeated, (
        f"{sum(repeated.values())} trades were published twice (ws replayed instead of resuming)"
    )
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        rows = [row[0] for row in conn.execute("SELECT order_id FROM order_results")]
    assert orders, "the run produced no orders: nothing was compared"
    assert Counter(results) == Counter(set(orders)), "each order has exactly one result on order_results"
    assert Counter(rows) == Counter(set(orders)), "each order has exactly one row in PostgreSQL"
    stack.note(f"# trades {len(trades)}, orders {len(set(orders))}, results {len(results)}, rows {len(rows)}")


def _targets_up(stack: Stack) -> set[str]:
    url = f"http://127.0.0.1:{stack.env['CDB_PROMETHEUS_PORT']}/api/v1/targets"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            targets = json.load(response)["data"]["activeTargets"]
    except (OSError, ValueError, KeyError):
        return set()
    return {t["labels"]["instance"].split(":")[0] for t in targets if t["health"] == "up"}


def _trade_key(values: dict[str, object]) -> tuple[object, ...]:
    return tuple(values[k] for k in ("symbol", "timestamp", "side", "price", "volume"))


def test_stack_helpers__set_env_value_keeps_other_lines(tmp_path: Path) -> None:
    env = tmp_path / "x.env"
    env.write_text("# comment\nA=1\nB=2\n", encoding="utf-8")
    set_env_value(env, "B", "3")
    set_env_value(env, "C", "4")
    assert env.read_text(encoding="utf-8") == "# comment\nA=1\nB=3\nC=4\n"
