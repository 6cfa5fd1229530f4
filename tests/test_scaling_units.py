"""Past one machine, the parts that need no server: partition routing, key names, ownership,
settings and mode parsing (issue 10)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError, NotReplicatedError, TransportError
from core.redis.leases import desired_partitions
from core.redis.modes import RedisTarget, choose_master, masters_by_name, mode_of_hello
from core.settings import ServiceSettings
from core.topics import KeySpace, RedisMode, ServiceName, Topic, partition_of
from services.risk.limits import RiskLimits

pytestmark = pytest.mark.strict_path  # runs in the week-4 deletion rehearsal too (test_week4_deletion)


@pytest.mark.parametrize(
    ("symbol", "partition"),
    [("BTC/USDT", 3), ("ETH/USDT", 1), ("SOL/USDT", 3), ("XRP/USDT", 3), ("DOGE/USDT", 0)],
)
def test_partition_of__is_crc32_of_the_utf8_symbol_modulo_the_count(symbol: str, partition: int) -> None:
    assert partition_of(symbol, 4) == partition  # pinned: every process and version must agree


@given(st.text(min_size=1, max_size=32), st.integers(min_value=1, max_value=1024))
def test_partition_of__is_always_a_valid_partition(symbol: str, partitions: int) -> None:
    assert 0 <= partition_of(symbol, partitions) < partitions


def test_partition_of__one_partition_takes_every_symbol() -> None:
    assert {partition_of(s, 1) for s in ("BTC/USDT", "ETH/USDT", "x")} == {0}


def test_keyspace__one_partition_keeps_the_single_server_names() -> None:
    keys = KeySpace("p:")
    assert keys.stream(Topic.MARKET_DATA) == "p:market_data_stream"
    assert keys.streams(Topic.MARKET_DATA) == ["p:market_data_stream"]
    assert keys.dlq(Topic.MARKET_DATA) == "p:market_data_dlq"


def test_keyspace__partitions_are_suffixed_streams_while_channel_and_dlq_stay_one_key() -> None:
    keys = KeySpace("p:", 4)
    assert keys.streams(Topic.SIGNALS) == [f"p:signals_stream:p{i}" for i in range(4)]
    assert keys.channel(Topic.SIGNALS) == "p:signals"
    assert keys.dlq(Topic.SIGNALS) == "p:signals_dlq"
    assert keys.partition("BTC/USDT") == 3


def test_keyspace__a_partition_outside_the_count__is_refused() -> None:
    with pytest.raises(ValueError, match="partition 4"):
        KeySpace("", 4).stream(Topic.ORDERS, 4)


def test_keyspace__lease_members_and_topology_keys_follow_the_prefix() -> None:
    keys = KeySpace("p:", 2)
    assert keys.lease(ServiceName.RISK, 1) == "p:{p:signals_stream:p1}:lease:risk"
    assert keys.members(ServiceName.RISK) == "p:cdb:members:risk"
    assert keys.topology() == "p:cdb:topology"


@given(
    st.lists(st.text(alphabet="abcdef-0123", min_size=1, max_size=8), min_size=1, max_size=6, unique=True),
    st.integers(min_value=1, max_value=64),
)
def test_desired_partitions__each_partition_has_exactly_one_owner_and_shares_differ_by_one(
    members: list[str], partitions: int
) -> None:
    shares = [desired_partitions(members, m, partitions) for m in members]
    owned = [p for share in shares for p in share]
    assert sorted(owned) == list(range(partitions))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_desired_partitions__a_non_member_wants_nothing() -> None:
    assert desired_partitions(["a", "b"], "c", 4) == set()


def test_settings__redis_mode_accepts_the_three_modes_in_any_case_and_empty_means_detect() -> None:
    assert ServiceSettings.load(environ={"REDIS_MODE": "Cluster"}).redis_mode is RedisMode.CLUSTER
    assert ServiceSettings.load(environ={"REDIS_MODE": ""}).redis_mode is None


def test_settings__a_wrong_redis_mode__is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="REDIS_MODE='clustered'") as info:
        ServiceSettings.load(ServiceName.SIGNAL, environ={"REDIS_MODE": "clustered"})
    assert info.value.accepted[:3] == ("standalone", "cluster", "sentinel")


@pytest.mark.parametrize("value", ["0", "-1", "1025", "four"])
def test_settings__topic_partitions_outside_1_to_1024__is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="TOPIC_PARTITIONS"):
        ServiceSettings.load(environ={"TOPIC_PARTITIONS": value})


def test_settings__sentinels_must_be_host_port_pairs() -> None:
    ok = ServiceSettings.load(environ={"REDIS_SENTINELS": "10.0.0.1:26379, s2:26380"})
    assert ok.redis_sentinels.startswith("10.0.0.1")
    with pytest.raises(ConfigError, match="REDIS_SENTINELS"):
        ServiceSettings.load(environ={"REDIS_SENTINELS": "10.0.0.1"})


def test_settings__defaults_keep_one_stream_and_no_replica_wait() -> None:
    s = ServiceSettings.load(environ={})
    assert (s.topic_partitions, s.redis_wait_replicas, s.partition_lease_ms) == (1, 0, 5_000)


def test_redis_target__parses_sentinels_and_mode_from_option_text() -> None:
    target = RedisTarget.of("redis://u:pw@h:1/3", "SENTINEL", "a:26379,b:26380", "m")
    assert target.mode is RedisMode.SENTINEL
    assert target.sentinels == (("a", 26379), ("b", 26380))
    assert target.master_kwargs() == {"username": "u", "password": "pw", "db": 3}
    assert "pw" not in target.shown()


def test_redis_target__an_unknown_mode__names_redis_mode() -> None:
    with pytest.raises(ConfigError, match="REDIS_MODE"):
        RedisTarget.of("redis://h:1/0", "galaxy")


def test_redis_target__without_sentinels_the_url_host_is_the_sentinel() -> None:
    assert RedisTarget.of("redis://s1:26379/0").sentinel_addresses() == [("s1", 26379)]


@pytest.mark.parametrize(
    ("reply", "mode"),
    [
        ([b"server", b"redis", b"mode", b"cluster", b"role", b"master"], RedisMode.CLUSTER),
        ({"mode": "sentinel"}, RedisMode.SENTINEL),
        ([b"server", b"redis", b"mode", b"standalone"], RedisMode.STANDALONE),
    ],
)
def test_mode_of__reads_the_mode_field_of_a_hello_reply(reply: object, mode: RedisMode) -> None:
    assert mode_of_hello(reply) is mode


def test_choose_master__takes_the_only_one_or_the_named_one_and_refuses_ambiguity() -> None:
    one = masters_by_name([{"name": "m1"}])
    assert choose_master(RedisTarget("u"), one) == "m1"
    two = masters_by_name({"m1": {}, "m2": {}})
    assert choose_master(RedisTarget("u", master="m2"), two) == "m2"
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        choose_master(RedisTarget("u"), two)
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        choose_master(RedisTarget("u", master="m3"), two)


def test_risk_limits__exposure_is_shared_out_per_partition_and_per_symbol_limits_stay() -> None:
    limits = RiskLimits(max_exposure_notional=8_000.0, max_position_notional=3_000.0)
    split = limits.per_partition(4)
    assert split.max_exposure_notional == 2_000.0
    assert split.max_position_notional == 3_000.0
    assert limits.per_partition(1) is limits


def test_not_replicated_error__is_a_transport_error_naming_what_to_resend() -> None:
    err = NotReplicatedError("market_data", [3, 4], wanted=1, acknowledged=0)
    assert isinstance(err, TransportError)
    assert err.unacknowledged == [3, 4]
    assert "2 market_data message(s) not acknowledged by 1 replica(s)" in str(err)
