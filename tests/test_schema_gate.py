"""The compatibility gate: committed snapshots against the models, and deliberate changes.

The first test *is* the gate in the suite: a breaking change to a contract without
a new ``api_version`` fails it with a message naming the field and the readers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, create_model
from typer.testing import CliRunner

from cdb.cli.main import app
from core.codec import CONTRACTS
from core.domain.contracts import MarketDataV1, OrderV1
from core.schema import GateStatus, Reader, check, default_contracts_dir, write_snapshots
from core.topics import Topic

SNAPSHOTS = default_contracts_dir() / "snapshots"


def test_schema_gate__current_contracts_are_compatible_with_their_frozen_snapshots() -> None:
    report = check(CONTRACTS, SNAPSHOTS)
    assert report.ok, "\n".join(v.message() for v in report.failures)


def test_schema_gate__v1_0_snapshot_is_committed_for_every_topic() -> None:
    assert {p.stem for p in (SNAPSHOTS / "v1.0").glob("*.json")} == {t.value for t in Topic}


@pytest.fixture
def frozen(tmp_path: Path) -> Path:
    """A snapshot directory frozen from the current contracts."""
    root = tmp_path / "snapshots"
    write_snapshots(CONTRACTS, root)
    return root


def _with_fields(base: type[BaseModel], **fields: Any) -> type[BaseModel]:
    """A copy of ``base`` (same name, validators and docs) with fields added or redefined."""
    return create_model(base.__name__, __base__=base, __doc__=base.__doc__, **fields)


def _without_field(base: type[BaseModel], name: str) -> type[BaseModel]:
    """A copy of ``base`` with one field removed (same name, config and docs)."""
    kept = {n: (f.annotation, f) for n, f in base.model_fields.items() if n != name}
    return create_model(base.__name__, __config__=base.model_config, __doc__=base.__doc__, **kept)


def _gate(frozen: Path, topic: Topic, model: type[BaseModel]) -> Any:
    report = check({**CONTRACTS, topic: model}, frozen)
    (verdict,) = [v for v in report.verdicts if v.topic is topic]
    return report, verdict


def test_schema_gate__additive_optional_field__passes(frozen: Path) -> None:
    model = _with_fields(OrderV1, note=(str | None, Field(default=None, description="Free text.")))
    report, verdict = _gate(frozen, Topic.ORDERS, model)
    assert report.ok
    assert verdict.status is GateStatus.COMPATIBLE
    assert [c.field for c in verdict.changes] == ["note"]


def test_schema_gate__new_required_field__fails_for_new_consumers(frozen: Path) -> None:
    model = _with_fields(OrderV1, account=(str, Field(description="Account to trade on.")))
    report, verdict = _gate(frozen, Topic.ORDERS, model)
    assert not report.ok
    assert verdict.status is GateStatus.BREAKING
    text = verdict.message()
    assert "'account'" in text
    assert Reader.NEW_CONSUMERS.value in text
    assert "api_version" in text


def test_schema_gate__removed_field__fails_for_old_consumers(frozen: Path) -> None:
    model = _without_field(MarketDataV1, "venue")
    report, verdict = _gate(frozen, Topic.MARKET_DATA, model)
    assert not report.ok
    (change,) = [c for c in verdict.changes if c.breaking]
    assert change.field == "venue"
    assert change.compatibility.broken_readers == (Reader.OLD_CONSUMERS,)


def test_schema_gate__narrowed_bound__fails_for_new_consumers(frozen: Path) -> None:
    quantity = Annotated[float, Field(gt=0, le=1_000, description="Order size in base currency; > 0.")]
    model = _with_fields(OrderV1, quantity=(quantity, ...))
    report, verdict = _gate(frozen, Topic.ORDERS, model)
    assert not report.ok
    (change,) = [c for c in verdict.changes if c.breaking]
    assert (change.field, change.compatibility.broken_readers) == ("quantity", (Reader.NEW_CONSUMERS,))


class SideWithoutSell(StrEnum):
    """Direction of a trade, signal or order."""

    BUY = "BUY"


class SideWithHold(StrEnum):
    """Direction of a trade, signal or order."""

    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


def test_schema_gate__enum_value_removed__fails_for_new_consumers(frozen: Path) -> None:
    model = _with_fields(MarketDataV1, side=(SideWithoutSell, Field(description="Taker side of the trade.")))
    report, verdict = _gate(frozen, Topic.MARKET_DATA, model)
    assert not report.ok
    assert Reader.NEW_CONSUMERS in verdict.compatibility.broken_readers


def test_schema_gate__enum_value_added__fails_for_old_consumers(frozen: Path) -> None:
    model = _with_fields(MarketDataV1, side=(SideWithHold, Field(description="Taker side of the trade.")))
    report, verdict = _gate(frozen, Topic.MARKET_DATA, model)
    assert not report.ok
    assert verdict.compatibility.broken_readers == (Reader.OLD_CONSUMERS,)


def test_schema_gate__breaking_change_with_a_new_api_version__passes_and_waits_to_be_frozen(
    frozen: Path,
) -> None:
    model = _with_fields(
        OrderV1,
        api_version=(Literal["v1.1"], Field(description="Contract version of this message.")),
        account=(str, ...),
    )
    report, verdict = _gate(frozen, Topic.ORDERS, model)
    assert report.ok
    assert (verdict.status, verdict.version, verdict.baseline) == (GateStatus.VERSIONED, "v1.1", "v1.0")
    assert "cdb schema snapshot" in verdict.message()
    written = write_snapshots({Topic.ORDERS: model}, frozen)
    assert written == [frozen / "v1.1" / "orders.json"]
    assert _gate(frozen, Topic.ORDERS, model)[1].status is GateStatus.UNCHANGED


def test_schema_gate__topic_never_frozen__fails(tmp_path: Path) -> None:
    report = check(CONTRACTS, tmp_path / "empty")
    assert not report.ok
    assert {v.status for v in report.verdicts} == {GateStatus.NO_SNAPSHOT}


def test_write_snapshots__keeps_a_frozen_version_unless_forced(frozen: Path) -> None:
    model = _with_fields(OrderV1, note=(str | None, None))
    assert write_snapshots({Topic.ORDERS: model}, frozen) == []
    assert write_snapshots({Topic.ORDERS: model}, frozen, force=True) == [frozen / "v1.0" / "orders.json"]
    assert "note" in json.loads((frozen / "v1.0" / "orders.json").read_text())["properties"]


runner = CliRunner()


def _breaking_snapshots(tmp_path: Path) -> Path:
    """A contracts dir whose orders snapshot lacks signal_id: today's OrderV1 adds a required field."""
    write_snapshots({**CONTRACTS, Topic.ORDERS: _without_field(OrderV1, "signal_id")}, tmp_path / "snapshots")
    return tmp_path


def test_cli_schema_check__committed_snapshots__exit_0_with_a_table() -> None:
    result = runner.invoke(app, ["schema", "check"])
    assert result.exit_code == 0, result.output
    assert "compatibility gate: passed" in result.output
    assert "order_results" in result.output


def test_cli_schema_check__unversioned_breaking_change__exits_1_and_says_who_breaks(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema", "check", "--dir", str(_breaking_snapshots(tmp_path))])
    assert result.exit_code == 1
    assert "FAILED" in result.output
    assert "signal_id" in result.output


def test_cli_schema_check_json__lists_changes_for_scripts(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema", "check", "--json", "--dir", str(_breaking_snapshots(tmp_path))])
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    orders = next(t for t in body["topics"] if t["topic"] == "orders")
    assert body["ok"] is False
    assert orders["status"] == "breaking"
    assert orders["changes"][0]["breaks"] == [Reader.NEW_CONSUMERS.value]


def test_cli_schema_export__check_on_an_empty_dir__exits_1_and_says_what_to_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema", "export", "--check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "cdb schema export" in result.output


def test_cli_schema_export__writes_then_is_up_to_date(tmp_path: Path) -> None:
    assert runner.invoke(app, ["schema", "export", "--dir", str(tmp_path)]).exit_code == 0
    assert (tmp_path / "json-schema" / "OrderV1Lenient.json").is_file()
    (tmp_path / "json-schema" / "RemovedV0.json").write_text("{}")
    stale = runner.invoke(app, ["schema", "export", "--check", "--dir", str(tmp_path)])
    assert stale.exit_code == 1
    assert runner.invoke(app, ["schema", "export", "--dir", str(tmp_path)]).exit_code == 0
    assert not (tmp_path / "json-schema" / "RemovedV0.json").exists()
    assert runner.invoke(app, ["schema", "export", "--check", "--dir", str(tmp_path)]).exit_code == 0


def test_cli_schema_check__as_a_real_subprocess__exits_0_with_json() -> None:
    cdb = Path(sys.executable).parent / "cdb"
    done = subprocess.run(
        [str(cdb), "schema", "check", "--json"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
