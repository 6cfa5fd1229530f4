"""Each service's own contract version (core/versions/own.py): chosen in one place, honoured by
the codec on the Pydantic path only, and building in it keeps decimals exact."""

from __future__ import annotations

from decimal import Decimal

import fakeredis
import pytest

from core.codec import build_codec, codec_for
from core.codec.fields import decode_field_map
from core.errors import ContractError
from core.settings import ServiceSettings
from core.topics import CodecPath, Profile, ServiceName, Topic
from core.versions.codec import VersionedCodec
from core.versions.models import OrderResultV2
from core.versions.own import OWN_VERSIONS, own_version
from services.execution.paper import PaperVenue
from services.execution.service import ExecutionService
from services.runtime import ServiceContext
from tests.versions_helpers import order

RESULT = {
    "order_id": "o1",
    "symbol": "BTC/USDT",
    "side": "BUY",
    "status": "FILLED",
    "filled_quantity": Decimal("0.123456789012345678"),
    "average_price": Decimal("64250.10000001"),
    "fee": Decimal("7.93211104"),
    "reason": None,
    "simulated": True,
}


def _codec(service: ServiceName, **flags: object) -> object:
    return codec_for(ServiceSettings.load(service, environ={}, overrides=flags))


def test_own_versions__one_row_per_service() -> None:
    assert set(OWN_VERSIONS) == set(ServiceName)


def test_codec_for__execution_code_is_on_v2_and_signal_risk_on_v1() -> None:
    execution = _codec(ServiceName.EXECUTION, use_pydantic_contracts=True)
    assert own_version(execution, Topic.ORDERS) == own_version(execution, Topic.ORDER_RESULTS) == "v2.0"
    for service in (ServiceName.SIGNAL, ServiceName.RISK):
        codec = _codec(service, use_pydantic_contracts=True)
        assert {own_version(codec, t) for t in Topic} == {"v1.0"}, service


@pytest.mark.parametrize("writes", ["v1.0", "v2.0"])
def test_codec_for__ws_builds_market_data_in_the_version_it_writes(writes: str) -> None:
    ws = _codec(ServiceName.WS, use_pydantic_contracts=True, produce_version_market_data=writes)
    assert own_version(ws, Topic.MARKET_DATA) == writes


@pytest.mark.parametrize(
    "flags",
    [{"use_pydantic_contracts": False}, {"use_pydantic_contracts": True, "contract_shadow": True}],
    ids=["legacy", "shadow"],
)
def test_codec_for__legacy_path_and_shadow_mode_hand_the_code_v1_0(flags: dict[str, object]) -> None:
    codec = _codec(ServiceName.EXECUTION, **flags)
    assert own_version(codec, Topic.ORDERS) == "v1.0"


@pytest.mark.parametrize("writes", ["v1.1", "v2.0"])
def test_codec_for__shadow_mode_does_not_change_what_execution_writes(writes: str) -> None:
    # Shadow mode compares the two paths' readings of the topic a service reads (v1.0); what it
    # builds and writes must be what it writes without shadow: here a result's ordered_quantity
    # (v1.1+) and its exact decimals (v2.0), which a v1.0 build would drop or round.
    fill = PaperVenue().fill(order(quantity=0.123456789012345678))
    written = []
    for shadow in (False, True):
        codec = _codec(
            ServiceName.EXECUTION,
            use_pydantic_contracts=True,
            contract_shadow=shadow,
            produce_version_order_results=writes,
        )
        assert own_version(codec, Topic.ORDERS) == ("v1.0" if shadow else "v2.0")
        result = ExecutionService(_context(codec), store=None)._result(fill)  # type: ignore[arg-type]
        fields = codec.to_fields(Topic.ORDER_RESULTS, result)  # type: ignore[attr-defined]
        written.append({k: v for k, v in decode_field_map(fields).items() if k != "timestamp"})
    assert written[0]["ordered_quantity"] is not None  # the order's size, which v1.1 carries
    assert written[1] == written[0]


def _context(codec: object) -> ServiceContext:
    settings = ServiceSettings.load(ServiceName.EXECUTION, environ={})
    ctx = ServiceContext.create(ServiceName.EXECUTION, settings, fakeredis.FakeAsyncRedis())
    ctx.codec = codec  # type: ignore[assignment]
    return ctx


def _v2_results() -> VersionedCodec:
    return VersionedCodec(build_codec(CodecPath.PYDANTIC, Profile.STRICT), own={Topic.ORDER_RESULTS: "v2.0"})


def test_build__in_the_own_version_keeps_decimals_exact() -> None:
    message = _v2_results().build(Topic.ORDER_RESULTS, RESULT)
    assert isinstance(message, OrderResultV2)
    assert message.filled_quantity == Decimal("0.123456789012345678")


def test_build__v1_0_values_are_built_as_v1_0_and_converted_up() -> None:
    floats = {**RESULT, "filled_quantity": 0.1, "average_price": 100.0, "fee": 0.0001}
    message = _v2_results().build(Topic.ORDER_RESULTS, floats)
    assert isinstance(message, OrderResultV2)
    assert (message.filled_quantity, message.fee) == (Decimal("0.1"), Decimal("0.0001"))


def test_build__refused_by_both_versions_reports_the_own_versions_errors() -> None:
    with pytest.raises(ContractError) as caught:
        _v2_results().build(Topic.ORDER_RESULTS, {**RESULT, "fee": "-1"})
    assert any(e.get("loc") == ("fee",) for e in caught.value.errors)


def test_encode__a_v2_result_written_as_v1_0_carries_the_nearest_floats() -> None:
    codec = VersionedCodec(
        build_codec(CodecPath.PYDANTIC, Profile.STRICT),
        own={Topic.ORDER_RESULTS: "v2.0"},
        writes={Topic.ORDER_RESULTS: "v1.0"},
    )
    fields = codec.to_fields(Topic.ORDER_RESULTS, codec.build(Topic.ORDER_RESULTS, RESULT))
    assert fields["api_version"] in ('"v1.0"', b'"v1.0"')
    assert float(fields["filled_quantity"]) == float(Decimal("0.123456789012345678"))
