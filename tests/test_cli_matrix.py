"""``cdb matrix`` from the command line: subsets, faults, CI artifacts, exit status."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from cdb.cli.main import app
from core.logging import configure_logging
from services.ws.replay import BUNDLED_TRADES_SMALL
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`cdb matrix` points the JSON logs at CliRunner's stderr, closed after the call: point
    them back at the real stderr so later tests do not log into a closed file."""
    yield
    configure_logging()


def _invoke(redis_url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["matrix", "--data", str(BUNDLED_TRADES_SMALL), "--redis-url", redis_url, *args],
        env={"COLUMNS": "200"},
    )
    return result.exit_code, result.output


def test_cdb_matrix__two_mix_subset__prints_the_table_and_writes_json_and_markdown(
    redis_url: str, tmp_path: Path
) -> None:
    json_out, md_out = tmp_path / "ci" / "matrix.json", tmp_path / "ci" / "matrix.md"
    code, output = _invoke(
        redis_url,
        "--mix",
        "ws=pydantic,signal=legacy,risk=pydantic",
        "--mix",
        "PSSS",
        "--json-out",
        str(json_out),
        "--markdown-out",
        str(md_out),
    )
    assert code == 0, output
    assert "2 of 2 rows as expected" in output
    report = json.loads(json_out.read_text())
    assert report["ok"] is True
    assert report["baseline"]["mix"] == "LLLL"
    assert [r["mix"] for r in report["rows"]] == ["PLPL", "PSSS"]
    assert report["rows"][1]["services"] == {
        "ws": "pydantic",
        "signal": "strict",
        "risk": "strict",
        "execution": "strict",
    }
    assert report["rows"][0]["order_results"] == report["baseline"]["order_results"] > 0
    markdown = md_out.read_text()
    assert "**PASSED**: 2 of 2 rows" in markdown
    assert markdown.count("\n| PLPL |") == 1
    assert markdown.count("\n| PSSS |") == 1


def test_cdb_matrix__strict_consumer_of_legacy_producer__is_shown_as_expected_dead_letters(
    redis_url: str,
) -> None:
    code, output = _invoke(redis_url, "--mix", "LSSS", "--json")
    assert code == 0, output
    row = json.loads(output)["rows"][0]
    assert row["expected"]["outcome"] == "dead_letters"
    assert row["outcome"] == "dead-letters 400 legacy market_data messages, as expected"
    assert row["dead_letters"]["market_data"] == row["messages"]["market_data"] == 400


def test_cdb_matrix__fault_option__adds_a_row_per_fault_for_each_matching_mix(redis_url: str) -> None:
    code, output = _invoke(redis_url, "--mix", "LPLP", "--mix", "LSSS", "--fault", "malformed", "--json")
    assert code == 0, output
    rows = json.loads(output)["rows"]
    assert [(r["mix"], r["fault"]) for r in rows] == [("LPLP", None), ("LSSS", None), ("LPLP", "malformed")]
    assert rows[2]["fault_facts"]["malformed"]["injected"] == {"market_data": 21, "signals": 21, "orders": 21}


def test_cdb_matrix__broken_candidate_codec__exits_1_naming_the_mismatch(
    redis_url: str, tmp_path: Path
) -> None:
    md_out = tmp_path / "matrix.md"
    code, output = _invoke(
        redis_url,
        "--mix",
        "LLLL",
        "--mix",
        "LLLP",
        "--codec-factory",
        "tests.matrix_helpers:broken_legacy_execution",
        "--markdown-out",
        str(md_out),
    )
    assert code == 1, output
    assert "1 of 2 rows as expected" in output
    assert "MISMATCH" in output
    markdown = md_out.read_text()
    assert "**FAILED**" in markdown
    assert "status='REJECTED' (baseline 'FILLED')" in markdown


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--mix", "ws=json"], "--mix"),
        (["--fault", "power-cut"], "--fault"),
        (["--mix", "LLLL", "--only-strict"], "--mix"),
        (["--codec-factory", "tests.nowhere:nothing"], "--codec-factory"),
    ],
)
def test_cdb_matrix__bad_option__exits_2_naming_it(redis_url: str, args: list[str], named: str) -> None:
    code, output = _invoke(redis_url, *args)
    assert code == 2
    assert named in output


def test_cdb_matrix__unreachable_redis__exits_2_without_a_traceback() -> None:
    code, output = _invoke(f"redis://127.0.0.1:{free_port()}/0", "--mix", "LLLL")
    assert code == 2
    assert "does not answer" in output
    assert "Traceback" not in output


def test_cdb_matrix__as_a_real_subprocess__prints_json(redis_url: str, tmp_path: Path) -> None:
    cdb = Path(sys.executable).parent / "cdb"
    done = subprocess.run(
        [
            str(cdb),
            "matrix",
            "--data",
            str(BUNDLED_TRADES_SMALL),
            "--redis-url",
            redis_url,
            "--mix",
            "PPPP",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["rows"][0]["outcome"].startswith("matches all-legacy")


def test_cdb_matrix__keep__leaves_each_run_in_its_own_key_prefix(redis_url: str) -> None:
    code, output = _invoke(redis_url, "--mix", "PPPP", "--keep", "--json")
    assert code == 0, output
    report = json.loads(output)
    kept = [report["baseline"]["kept"], report["rows"][0]["kept"]]
    prefixes = [k["key_prefix"] for k in kept]
    files = [Path(k["sqlite"]) for k in kept]
    assert all(f.is_file() for f in files)
    for f in files:
        shutil.rmtree(f.parent)
    client = redis.Redis.from_url(redis_url)
    try:
        found = {p: list(client.scan_iter(match=f"{p}*")) for p in prefixes}
        for keys in found.values():
            if keys:
                client.unlink(*keys)
    finally:
        client.close()
    assert len(set(prefixes)) == 2
    assert all(keys for keys in found.values())


def test_cdb_matrix__sigterm_mid_run__exits_143_and_leaves_no_server_directory_or_file(
    redis_url: str, tmp_path: Path
) -> None:
    """A cancelled CI job stops the matrix with SIGTERM: it cleans up as after Ctrl-C (the fault's
    own redis-server stopped, every run's directory removed) instead of dying on the spot."""
    cdb = Path(sys.executable).parent / "cdb"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    args = ["matrix", "--data", str(BUNDLED_TRADES_SMALL), "--redis-url", redis_url, "--mix", "PPPP"]
    proc = subprocess.Popen(
        [str(cdb), *args, "--fault", "redis-restart"],
        env={**os.environ, "TMPDIR": str(scratch)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(scratch.glob("cdb-redis-*")):  # the fault run's own server is up
            assert proc.poll() is None, "the matrix ended before its fault run started"
            assert time.monotonic() < deadline, "no fault run started within 60 s"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted by SIGTERM" in out
    assert list(scratch.iterdir()) == []
    servers = subprocess.run(["pgrep", "-f", str(scratch)], capture_output=True, text=True, check=False)
    assert servers.stdout == ""  # no redis-server left running from the scratch directory
