"""The versioned codec: reads every declared version, writes the configured one, refuses the unknown."""

from __future__ import annotations

import json
import math
import os
import subprocess
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.codec import build_codec, codec_for
from core.codec.fields import encode_field_map
from core.domain.contracts import OrderV1
from core.errors import ConfigError, ContractError
from core.settings import ServiceSettings
from core.topics import CodecPath, Profile, ServiceName, Topic
from core.versions.codec import VersionedCodec
from core.versions.declaration import known_versions
from core.versions.fields import DECIMAL_MAX_CHARS, plain_decimal
from core.versions.live import versions_of
from core.versions.models import OrderV1_1, OrderV2
from tests.ops_helpers import CDB, CLEAN_ENV, ROOT
from tests.strategies import contract_messages
from tests.versions_helpers import STRICT, TS
from tests.versions_helpers import order as _order

# --- the versioned codec --------------------------------------------------------------------


def _versioned(profile: Profile = Profile.STRICT, **writes: str) -> VersionedCodec:
    return VersionedCodec(
        build_codec(CodecPath.PYDANTIC, profile), writes={Topic(t): v for t, v in writes.items()}
    )


@pytest.mark.parametrize("version", ["v1.0", "v1.1", "v2.0"])
@pytest.mark.parametrize("form", ["body", "fields"])
def test_versioned_codec__every_declared_version_reaches_the_code_as_v1_0(version: str, form: str) -> None:
    writer, reader = _versioned(orders=version), _versioned()
    order = _order()
    if form == "body":
        decoded = reader.decode(Topic.ORDERS, writer.encode(Topic.ORDERS, order))
    else:
        decoded = reader.from_fields(Topic.ORDERS, writer.to_fields(Topic.ORDERS, order), entry_id=b"1-0")
    assert decoded.message == order
    assert type(decoded.message) is OrderV1


def test_versioned_codec__writes_decimal_strings_when_told_to_write_v2_0() -> None:
    fields = _versioned(orders="v2.0").to_fields(Topic.ORDERS, _order(quantity=0.1))
    assert (fields["api_version"], fields["quantity"], fields["price"]) == ('"v2.0"', '"0.1"', '"64000.25"')


def test_versioned_codec__a_reader_that_knows_v1_0_only_refuses_v2_0() -> None:
    body = _versioned(orders="v2.0").encode(Topic.ORDERS, _order())
    with pytest.raises(ContractError):
        STRICT.decode(Topic.ORDERS, body)  # why the live gate exists


@pytest.mark.parametrize("form", ["body", "fields"])
def test_versioned_codec__unknown_version_is_a_contract_error_naming_the_known_ones(form: str) -> None:
    values = {**_order().model_dump(mode="json"), "api_version": "v9.0"}
    reader = _versioned(Profile.LENIENT)
    body, fields = json.dumps(values).encode(), encode_field_map(values)
    with pytest.raises(ContractError) as caught:
        _ = (
            reader.decode(Topic.ORDERS, body)
            if form == "body"
            else reader.from_fields(Topic.ORDERS, fields, entry_id=b"1-0")
        )
    (error,) = caught.value.errors
    assert error["type"] == "unknown_api_version"
    assert "v1.0, v1.1, v2.0" in error["msg"]


def test_versioned_codec__invalid_v2_0_message_is_refused_with_the_field_named() -> None:
    values = {**_versioned(orders="v2.0").to_fields(Topic.ORDERS, _order()), "quantity": "0.5"}  # a number
    with pytest.raises(ContractError) as caught:
        _versioned().from_fields(Topic.ORDERS, values, entry_id=b"1-0")
    assert [e["loc"] for e in caught.value.errors] == [("quantity",)]


def test_versioned_codec__ioc_order_for_a_v1_0_topic_is_a_contract_error_not_a_silent_gtc() -> None:
    codec = VersionedCodec(build_codec(CodecPath.PYDANTIC, Profile.STRICT), own={Topic.ORDERS: "v1.1"})
    order = codec.build(
        Topic.ORDERS, {**_order().model_dump(exclude={"api_version"}), "time_in_force": "GTC"}
    )
    assert isinstance(order, OrderV1_1)
    ioc = OrderV1_1.model_validate({**order.model_dump(), "time_in_force": "IOC"})
    with pytest.raises(ContractError) as caught:
        codec.encode(Topic.ORDERS, ioc)
    assert caught.value.errors[0]["type"] == "version_conversion"


def test_versioned_codec__v1_0_bodies_are_byte_identical_to_the_plain_codec() -> None:
    order = _order()
    assert _versioned().encode(Topic.ORDERS, order) == STRICT.encode(Topic.ORDERS, order)
    assert _versioned().to_fields(Topic.ORDERS, order) == STRICT.to_fields(Topic.ORDERS, order)


# --- settings and live state -----------------------------------------------------------------


def test_settings__unknown_produce_version_is_refused_naming_the_variable() -> None:
    env = {"USE_PYDANTIC_CONTRACTS": "true", "PRODUCE_VERSION_ORDERS": "v3.0"}
    with pytest.raises(ConfigError) as caught:
        ServiceSettings.load(ServiceName.RISK, environ=env)
    assert caught.value.variable == "PRODUCE_VERSION_ORDERS"
    assert caught.value.accepted == ("v1.0", "v1.1", "v2.0")


def test_settings__legacy_path_cannot_write_a_later_version() -> None:
    with pytest.raises(ConfigError) as caught:
        ServiceSettings.load(ServiceName.WS, environ={"PRODUCE_VERSION_MARKET_DATA": "v2.0"})
    assert caught.value.variable == "PRODUCE_VERSION_MARKET_DATA"


def test_settings__a_legacy_service_ignores_the_produce_version_of_a_topic_it_does_not_write() -> None:
    # `PRODUCE_VERSION_ORDERS=v1.1 cdb run --pydantic risk --pydantic execution`: one environment
    # for every service, and only risk writes orders. ws and signal stay on the legacy path.
    env = {"PRODUCE_VERSION_ORDERS": "v1.1", "RISK_USE_PYDANTIC_CONTRACTS": "true"}
    assert ServiceSettings.load(ServiceName.WS, environ=env).produce_version(Topic.MARKET_DATA) == "v1.0"
    assert ServiceSettings.load(ServiceName.SIGNAL, environ=env).produce_version(Topic.SIGNALS) == "v1.0"
    assert ServiceSettings.load(ServiceName.RISK, environ=env).produce_version(Topic.ORDERS) == "v1.1"
    with pytest.raises(ConfigError) as caught:  # an undeclared version is a typo wherever it is
        ServiceSettings.load(ServiceName.WS, environ={"PRODUCE_VERSION_ORDERS": "v1.2"})
    assert caught.value.variable == "PRODUCE_VERSION_ORDERS"


def test_live_versions__pydantic_instance_reads_all_and_writes_its_setting_legacy_reads_v1_0() -> None:
    env = {"USE_PYDANTIC_CONTRACTS": "true", "PRODUCE_VERSION_ORDERS": "v1.1", "CONTRACT_SHADOW": "true"}
    risk = codec_for(ServiceSettings.load(ServiceName.RISK, environ=env))
    assert versions_of(ServiceName.RISK, risk) == ({"signals": ["v1.0", "v2.0"]}, {"orders": "v1.1"})
    legacy = codec_for(ServiceSettings.load(ServiceName.RISK, environ={}))
    assert versions_of(ServiceName.RISK, legacy) == ({"signals": ["v1.0"]}, {"orders": "v1.0"})


def test_cdb_run__refuses_a_producer_version_a_consumer_of_the_run_cannot_read() -> None:
    # The services of one run start together, before any of them reports what it reads, so the
    # live gate sees no consumer: without this check legacy risk dead-lettered every v2.0 signal.
    # (A process of its own: cdb run points the logs at its stderr.)
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    result = subprocess.run(
        [str(CDB), "run", "--pydantic", "signal"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        env={**env, "PRODUCE_VERSION_SIGNALS": "v2.0"},
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "PRODUCE_VERSION_SIGNALS='v2.0' is not accepted; use one of: v1.0" in result.stderr
    assert "cannot read v2.0: risk/" in result.stderr
    assert "cdb run on" not in result.stdout  # refused before anything ran


def test_v2__decimal_price_is_never_built_from_a_float_silently() -> None:
    with pytest.raises(ValueError, match=r"decimal_string|JSON string"):
        _order_v2(quantity=0.1)
    assert math.isclose(float(_order_v2(quantity="0.1").quantity), 0.1)


def _order_v2(quantity: Any) -> OrderV2:
    return OrderV2(
        order_id="o",
        signal_id="s",
        symbol="BTC",
        side="BUY",
        order_type="MARKET",
        quantity=quantity,
        timestamp=TS,
    )


def _fits_v2(message: Any) -> bool:
    floats = [v for k, v in message.model_dump().items() if isinstance(v, float) and k != "strength"]
    return all(len(plain_decimal(Decimal(repr(v)))) <= DECIMAL_MAX_CHARS for v in floats)


@pytest.mark.parametrize("version", ["v1.1", "v2.0"])
@pytest.mark.parametrize("topic", list(Topic))
@given(data=st.data())
def test_versioned_codec__any_v1_0_message_written_as_a_later_version_reads_back_equal(
    topic: Topic, version: str, data: st.DataObject
) -> None:
    if version not in known_versions(topic):
        return
    message = data.draw(contract_messages(topic))
    writer, reader = _versioned(**{topic.value: version}), _versioned()
    if version == "v2.0" and not _fits_v2(message):
        with pytest.raises(ContractError) as caught:
            writer.to_fields(topic, message)
        assert caught.value.errors[0]["type"] == "version_conversion"
        return
    fields = writer.to_fields(topic, message)
    assert json.loads(fields["api_version"]) == version
    assert reader.from_fields(topic, fields, entry_id=b"1-0").message == message
    assert reader.decode(topic, writer.encode(topic, message)).message == message
