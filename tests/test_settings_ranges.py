"""Numeric settings in sane ranges, a usable INSTANCE, URLs that parse: refused at start otherwise.

Each refusal is a ConfigError naming the variable actually read and the accepted range,
and a URL's password never appears in it.
"""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.settings import ServiceSettings
from core.topics import ServiceName


def _refusal(**environ: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        ServiceSettings.load(ServiceName.SIGNAL, environ=environ)
    return info.value


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("CONSUMER_BLOCK_MS", "60000", "<= 4,000"),
        ("CONSUMER_BLOCK_MS", "0", ">= 1"),
        ("CONSUMER_BATCH", "1000000", "<= 10,000"),
        ("RECLAIM_IDLE_MS", "100", ">= 1,000"),
        ("MAX_DELIVERIES", "0", ">= 1"),
        ("MAX_MESSAGE_BYTES", "10", ">= 256"),
        ("MAX_MESSAGE_BYTES", str(2**30), "<= 67,108,864"),
        ("DLQ_MAX_PAYLOAD_BYTES", "10", ">= 1,024"),
        ("STREAM_MAXLEN", "5", ">= 100"),
        ("PARTITION_LEASE_MS", "86400000", "<= 600,000"),
        ("REDIS_WAIT_TIMEOUT_MS", "3600000", "<= 60,000"),
        ("TOPIC_PARTITIONS", "0", ">= 1"),
    ],
)
def test_numeric_setting__out_of_range__refused_naming_variable_and_range(
    variable: str, value: str, accepted: str
) -> None:
    err = _refusal(**{variable: value})
    assert err.variable == variable
    assert accepted in str(err)
    assert str(err).startswith(f"{variable}=")


def test_numeric_setting__service_prefixed_variable__named_in_the_refusal() -> None:
    err = _refusal(SIGNAL_CONSUMER_BLOCK_MS="60000")
    assert err.variable == "SIGNAL_CONSUMER_BLOCK_MS"


def test_consumer_block_ms__above_half_the_partition_lease__refused() -> None:
    err = _refusal(CONSUMER_BLOCK_MS="3000")  # in range alone, but the lease is 5000 ms
    assert err.variable == "CONSUMER_BLOCK_MS"
    assert "PARTITION_LEASE_MS / 2 = 2500" in str(err)
    settings = ServiceSettings.load(environ={"CONSUMER_BLOCK_MS": "3000", "PARTITION_LEASE_MS": "6000"})
    assert settings.consumer_block_ms == 3000


def test_reclaim_idle_ms__not_above_the_block__refused() -> None:
    err = _refusal(CONSUMER_BLOCK_MS="2000", RECLAIM_IDLE_MS="2000")
    assert err.variable == "RECLAIM_IDLE_MS"
    assert "> CONSUMER_BLOCK_MS = 2000" in str(err)


@pytest.mark.parametrize("value", ["5", "59999"])
def test_dead_consumer_idle_ms__below_a_minute_but_not_zero__refused(value: str) -> None:
    assert _refusal(DEAD_CONSUMER_IDLE_MS=value).variable == "DEAD_CONSUMER_IDLE_MS"


def test_dead_consumer_idle_ms__zero_means_never__accepted() -> None:
    assert ServiceSettings.load(environ={"DEAD_CONSUMER_IDLE_MS": "0"}).dead_consumer_idle_ms == 0


@pytest.mark.parametrize("value", ["", " ", "a b", "sig*", "sig[1]", "-lead", "x" * 129])
def test_instance__empty_blank_or_glob__refused(value: str) -> None:
    err = _refusal(INSTANCE=value)
    assert err.variable == "INSTANCE"
    assert "1 to 128 letters" in str(err)


@pytest.mark.parametrize("value", ["signal-1", "host.example-42", "a", "pod_7:blue@eu"])
def test_instance__plain_names__accepted(value: str) -> None:
    assert ServiceSettings.load(environ={"INSTANCE": value}).instance == value


def test_instance__default_is_a_valid_name() -> None:
    assert ServiceSettings.load(environ={}).instance


def test_dlq_payload_limit__default_derived_from_max_message_bytes() -> None:
    assert ServiceSettings.load(environ={"MAX_MESSAGE_BYTES": "1000"}).dlq_payload_limit == 2 * 1000 + 4096
    assert ServiceSettings.load(environ={"DLQ_MAX_PAYLOAD_BYTES": ""}).dlq_payload_limit == 2 * 65_536 + 4096
    assert ServiceSettings.load(environ={"DLQ_MAX_PAYLOAD_BYTES": "5000"}).dlq_payload_limit == 5000


@pytest.mark.parametrize(
    ("variable", "url", "why"),
    [
        ("REDIS_URL", "redis//user:S3cret@host:6379/0", "not a URL"),
        ("REDIS_URL", "http://user:S3cret@host:6379/0", "scheme 'http'"),
        ("REDIS_URL", "redis://user:S3cret@host:99999/0", "port is not a number"),
        ("REDIS_URL", "redis://:S3cret@/0", "no host"),
        ("DATABASE_URL", "postgresq://user:S3cret@host/db", "scheme 'postgresq'"),
        ("DATABASE_URL", "user:S3cret@host/db", "not a URL"),
    ],
)
def test_url__unparseable__refused_naming_variable_without_password(
    variable: str, url: str, why: str
) -> None:
    err = _refusal(**{variable: url})
    assert err.variable == variable
    assert why in str(err)
    assert "S3cret" not in str(err)
    assert "S3cret" not in repr(err.value)


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("REDIS_URL", "redis://cdb-signal:pw@127.0.0.1:6379/0"),
        ("REDIS_URL", "rediss://h:6380"),
        ("REDIS_URL", "unix:///run/redis.sock?db=1"),
        ("DATABASE_URL", "postgresql://cdb@127.0.0.1:5432/cdb"),
        ("DATABASE_URL", "postgres://u:p@db/x"),
    ],
)
def test_url__well_formed__accepted(variable: str, url: str) -> None:
    settings = ServiceSettings.load(environ={variable: url})
    assert getattr(settings, variable.lower()) == url
