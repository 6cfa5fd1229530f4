"""``cdb dashboard`` in a real browser (Debian's chromium, headless, through chromedriver).

Against a running pipeline of four real service processes on the real Redis, with
mixed paths: the page loads without console errors and shows each service's path;
editing risk's env file shows "recreate" on the page; stopping risk names its partition
as having no live owner; restarting risk on the other path shows the new path and a flip in
the timeline within a few seconds. The test
prints the page load time and the update delay it measured; with
``CDB_DASHBOARD_SCREENSHOT=docs/dashboard.png`` it saves the screenshot there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from core.topics import KeySpace, ServiceName, Topic
from tests.ops_helpers import CDB, CLEAN_ENV, ROOT
from tests.service_procs import ServiceProcs, free_port, service_procs
from tests.support.tools import missing_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = TypeVar("T")
_FLAGS = {
    ServiceName.WS: False,
    ServiceName.SIGNAL: True,
    ServiceName.RISK: False,
    ServiceName.EXECUTION: True,
}
_CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1500",
]


def _browser_or_skip() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing_tool(
            "chromium/chromedriver missing (Debian: chromium, chromium-driver; scripts/ensure-tools.sh)"
        )
    return chromium, driver


def _until(what: str, probe: Callable[[], T | None], timeout_s: float = 20.0, every_s: float = 0.05) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


@pytest.fixture
def pipeline(redis_url: str, keys: KeySpace, tmp_path: Path) -> Iterator[ServiceProcs]:
    """ws legacy, signal pydantic, risk legacy (shadow), execution pydantic; ws replays at 8x."""
    client = redis.Redis.from_url(redis_url)
    client.xadd(keys.stream(Topic.MARKET_DATA), {b"symbol": b"not json"})
    client.close()
    with service_procs(redis_url, keys, tmp_path, WS_REPLAY_PACE="8") as procs:
        for service, pydantic in _FLAGS.items():
            procs.write_flags(service, pydantic=pydantic)
            procs.start(service, **({"CONTRACT_SHADOW": "true"} if service is ServiceName.RISK else {}))
        yield procs


@pytest.fixture
def dashboard(redis_url: str, keys: KeySpace, tmp_path: Path) -> Iterator[str]:
    """``cdb dashboard`` as a subprocess on a free port; yields its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    log = (tmp_path / "dashboard.log").open("wb")
    args = [
        "dashboard",
        "--redis-url",
        redis_url,
        "--prefix",
        keys.prefix,
        "--port",
        str(port),
        "--interval",
        "0.5",
    ]
    proc = subprocess.Popen([str(CDB), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _until("the dashboard to answer", lambda: _answers(port), timeout_s=30)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless chromium with a fresh profile; its console log is kept."""
    chromium, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*_CHROME_FLAGS, f"--user-data-dir={tmp_path / 'chrome-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _paths(driver: Any) -> dict[str, list[str]]:
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#instances tbody tr')]"
        ".map(r => [r.dataset.service, r.querySelector('td.path').textContent, r.textContent])"
    )
    out: dict[str, list[str]] = {}
    for service, path, _ in rows:
        out.setdefault(service, []).append(path)
    return out


def _row_text(driver: Any, service: str) -> str:
    return str(
        driver.execute_script(
            "const r = document.querySelector(`#instances tbody tr[data-service='${arguments[0]}']`);"
            "return r ? r.textContent : '';",
            service,
        )
    )


def test_dashboard__shows_every_path_and_a_flip_within_seconds(
    pipeline: ServiceProcs, dashboard: str, browser: Any, redis_url: str, keys: KeySpace, *, tmp_path: Path
) -> None:
    expected = {s.value: ["pydantic" if p else "legacy"] for s, p in _FLAGS.items()}
    # Wait until every service reports, so the page has something to show at once.
    client = redis.Redis.from_url(redis_url)
    status = keys.status_pattern()
    _until("four live instances", lambda: len(list(client.scan_iter(match=status))) >= 4, timeout_s=60)

    started = time.monotonic()
    browser.get(dashboard)
    _until("the first render", lambda: browser.execute_script("return document.body.dataset.rendered"))
    load_ms = browser.execute_script(
        "const nav = performance.getEntriesByType('navigation')[0];"
        "return {dom: nav.domContentLoadedEventEnd, data: firstRender};"
    )
    wall_load_s = time.monotonic() - started
    assert _until("every service's path on the page", lambda: _paths(browser) == expected or None)
    # ws is on the legacy path: all of market_data is legacy-shaped.
    # (Looked up on every probe: each refresh replaces the chart elements.)
    chart = "return document.querySelector(\"[data-topic='market_data']\").textContent"
    _until(
        "legacy-shaped market_data in the chart",
        lambda: "legacy-shaped 100%" in browser.execute_script(chart),
    )

    # The operator edits risk's env file: the page says risk must be recreated.
    pipeline.write_flags(ServiceName.RISK, pydantic=True)
    _until("the recreate hint", lambda: "recreate" in _row_text(browser, "risk"), timeout_s=15)

    # ... and recreates risk: the new path shows on the page within a few seconds.
    pipeline.stop(ServiceName.RISK)
    # Until the new risk runs, the signals coming in are in no instance's lag: the page names
    # risk's partition as having no live owner.
    lag = browser.find_element("css selector", "#lag")
    _until("risk's partition without a live owner", lambda: "risk: partition 0 no live owner" in lag.text)
    flipped = time.monotonic()
    pipeline.start(ServiceName.RISK, CONTRACT_SHADOW="true")

    def redis_shows_pydantic() -> bool:
        import json

        docs = [client.get(k) for k in client.scan_iter(match=status)]
        return any(
            d and json.loads(d)["service"] == "risk" and json.loads(d)["path"] == "pydantic" for d in docs
        )

    _until("risk on pydantic in Redis", redis_shows_pydantic, timeout_s=30, every_s=0.02)
    in_redis = time.monotonic()
    _until(
        "risk on pydantic on the page",
        lambda: _paths(browser).get("risk") == ["pydantic"],
        timeout_s=10,
        every_s=0.02,
    )
    on_page = time.monotonic()
    client.close()
    timeline = browser.find_element("css selector", "#timeline").text
    assert "legacy -> pydantic/lenient" in timeline
    assert "live" in _row_text(browser, "risk")

    # The verdict is checked every 10 s: wait for one taken after risk came back.
    cutover = browser.find_element("css selector", "#cutover")
    _until("a verdict with risk running", lambda: "risk: no live" not in cutover.text, timeout_s=20)
    assert "NO-GO" in cutover.text  # ws is still on the legacy path
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe

    shot = tmp_path / "dashboard.png"
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    target = os.environ.get("CDB_DASHBOARD_SCREENSHOT")
    if target:
        shutil.copyfile(shot, ROOT / target)
    ms = {k: round(v * 1000) for k, v in {"redis": in_redis - flipped, "page": on_page - in_redis}.items()}
    print(
        f"\ndashboard page load: DOM ready {load_ms['dom']:.0f} ms,"
        f" first data render {load_ms['data']:.0f} ms"
        f" (wall {wall_load_s * 1000:.0f} ms); flip: restart -> Redis {ms['redis']} ms,"
        f" Redis -> page {ms['page']} ms, restart -> page {ms['redis'] + ms['page']} ms"
    )
