"""deploy/prometheus: the config and rules are valid, the rule unit tests pass (promtool),
and every metric a rule names is one the services really export."""

from __future__ import annotations

import re
import subprocess

import yaml
from prometheus_client import generate_latest

from core.metrics import Outcome, ServiceMetrics
from core.topics import ServiceName, Topic
from tests.ops_helpers import ROOT
from tests.support.tools import required_tool

PROM = ROOT / "deploy" / "prometheus"


def _promtool() -> str:
    return required_tool("promtool", "prometheus")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], cwd=PROM, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool__rule_unit_tests_pass() -> None:
    done = _run("test", "rules", "cdb-rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_promtool__config_and_rules_are_valid() -> None:
    done = _run("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "16 rules found" in done.stdout + done.stderr


def test_rules__every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load((PROM / "cdb-rules.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROM / "cdb-rules.test.yml").read_text(encoding="utf-8"))
    tested = {
        a["alertname"] for case in tests["tests"] for a in case.get("alert_rule_test", []) if a["exp_alerts"]
    }
    assert alerts == tested


def test_rules__every_counter_alert_is_tested_on_a_series_that_starts_absent() -> None:
    """A labelled counter appears at its first increment; increase() alone misses that jump, so
    each alert on a counter needs a unit test where its series starts absent (``_``) and it fires."""
    rules = yaml.safe_load((PROM / "cdb-rules.yml").read_text(encoding="utf-8"))
    watched = {
        r["alert"]: set(re.findall(r"increase\((cdb_\w+)", r["expr"]))
        for g in rules["groups"]
        for r in g["rules"]
        if "alert" in r and "increase(" in r["expr"]
    }
    assert watched, "no alert on a counter"
    tests = yaml.safe_load((PROM / "cdb-rules.test.yml").read_text(encoding="utf-8"))
    first: dict[str, set[str]] = {}  # alert -> counters it fired on while they started absent
    for case in tests["tests"]:
        absent = {s["series"].split("{")[0] for s in case["input_series"] if s["values"].startswith("_")}
        for check in case.get("alert_rule_test", []):
            if check["exp_alerts"]:
                first.setdefault(check["alertname"], set()).update(absent)
    for alert, counters in watched.items():
        assert counters <= first.get(alert, set()), alert


def test_rules__every_metric_they_name_is_exported_by_a_service() -> None:
    metrics = ServiceMetrics(ServiceName.SIGNAL)
    # Touch each family once so labelled series (and their names) appear in the exposition.
    metrics.count_published(Topic.SIGNALS, "legacy")
    metrics.count_handled(Topic.MARKET_DATA, "legacy", Outcome.OK)
    metrics.count_validation_errors(Topic.MARKET_DATA, "legacy", {"missing": 1})
    metrics.count_dead_letters(Topic.MARKET_DATA, "legacy", "invalid")
    metrics.count_shadow(Topic.MARKET_DATA, ["price"], later=["v2.0"])
    metrics.set_backlog(Topic.MARKET_DATA, lag=1, pending=1)
    metrics.count_defaults(Topic.MARKET_DATA, {"api_version": 1})
    metrics.ops.count_received(Topic.MARKET_DATA, [(b"1-0", {b"symbol": b"x"})])
    metrics.ops.describe_instance(
        "signal-1", path="legacy", profile=None, shadow=False, partitions=1, started_ms=0, version="t"
    )
    metrics.ops.set_desired("legacy", None)
    metrics.ops.beat(1.0)
    exported = set(re.findall(r"^(cdb_\w+?)(?:\{| )", generate_latest(metrics.registry).decode(), re.M))
    text = (PROM / "cdb-rules.yml").read_text(encoding="utf-8")
    named = {m for m in re.findall(r"\b(cdb_[a-z_]+)\b", text)}
    assert named, "the rules name no metric"
    assert named <= exported, sorted(named - exported)


def test_compose__prometheus_scrapes_every_service_on_its_metrics_port() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    config = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    expected = {
        f"{name}:{spec['environment']['METRICS_PORT']}"
        for name, spec in compose["services"].items()
        if name in {s.value for s in ServiceName}
    }
    assert expected == {f"{s.value}:9108" for s in ServiceName}
    assert targets == expected
    prom = compose["services"]["prometheus"]
    assert prom["image"].startswith("${CDB_PROMETHEUS_IMAGE:-prom/prometheus:")
    assert "./deploy/prometheus:/etc/prometheus:ro" in prom["volumes"]
