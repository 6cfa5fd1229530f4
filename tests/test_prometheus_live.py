"""A real Prometheus (Debian's binary) scrapes the four service processes and runs the rules.

The compose stack scrapes ``<service>:9108``; here the same rules file and job run against
the services as local processes on their METRICS_PORTs. Every target must be up, the
recording rules must see the legacy-shaped traffic, and editing an env file without a
restart must put ``CdbFlagNotApplied`` into pending.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.topics import KeySpace, ServiceName
from tests.ops_helpers import ROOT
from tests.service_procs import ServiceProcs, free_port, service_procs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        message = "prometheus is missing (Debian package prometheus; scripts/ensure-tools.sh installs it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=5) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]


def _until(what: str, probe: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture
def pipeline(redis_url: str, keys: KeySpace, tmp_path: Path) -> Iterator[ServiceProcs]:
    """ws legacy (replaying at 5x), signal and execution pydantic, risk legacy."""
    with service_procs(redis_url, keys, tmp_path, WS_REPLAY_PACE="5") as procs:
        for service in ServiceName:
            procs.write_flags(service, pydantic=service in (ServiceName.SIGNAL, ServiceName.EXECUTION))
            procs.start(service)
        yield procs


@pytest.fixture
def prometheus(pipeline: ServiceProcs, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping the pipeline every second with the repository's rules; yields its URL."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ROOT / "deploy" / "prometheus" / "cdb-rules.yml")]
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{pipeline.ports[s]}" for s in ServiceName]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            _prometheus_binary(),
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_prometheus__scrapes_every_service_and_the_rules_see_the_migration(
    prometheus: str, pipeline: ServiceProcs
) -> None:
    def all_up() -> bool:
        targets = _api(prometheus, "targets")["activeTargets"]
        return len(targets) == 4 and all(t["health"] == "up" for t in targets)

    _until("every target up", all_up)
    paths = _until(
        "instance info of all four",
        lambda: (r := _api(prometheus, "query", query="cdb_instance_info")["result"]) and len(r) == 4 and r,
    )
    assert {m["metric"]["service"]: m["metric"]["path"] for m in paths} == {
        "ws": "legacy",
        "signal": "pydantic",
        "risk": "legacy",
        "execution": "pydantic",
    }
    share = _until(
        "the legacy share of market_data",
        lambda: _api(prometheus, "query", query='cdb:legacy_share:ratio5m{topic="market_data"}')["result"],
    )
    assert float(share[0]["value"][1]) == 1.0  # ws is legacy: every market_data message is legacy-shaped

    rules = _api(prometheus, "rules")["groups"]
    assert {g["name"] for g in rules} == {"cdb-recording", "cdb-migration-alerts"}
    assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules

    pipeline.write_flags(ServiceName.RISK, pydantic=True)  # edited, not recreated
    pending = _until(
        "CdbFlagNotApplied pending",
        lambda: _api(prometheus, "query", query='ALERTS{alertname="CdbFlagNotApplied"}')["result"],
    )
    [alert] = pending
    assert (alert["metric"]["service"], alert["metric"]["path"]) == ("risk", "pydantic")
    assert alert["metric"]["alertstate"] == "pending"
