"""A bad message is refused for the same reasons on the legacy path and on the Pydantic path.

Operators read ``cdb_validation_errors_total{reason}`` and the dead letters' errors before and
after a service flips ``USE_PYDANTIC_CONTRACTS``; the same bad input must not change its reason
with the flip. So the legacy guard (migration.legacy_guard) names the error type Pydantic gives
(``int_type`` for a null integer, ``enum`` for a number where a side belongs, ``literal_error``
for a wrong ``api_version``), and the Pydantic path names a value one way whether it came as a
JSON body or as a stream entry (an integer past the float range: ``finite_number``).

Compared with the strict profile, which like the legacy path fills nothing. Two differences are
the legacy path's by design and stay: it does not check regular-expression patterns (a symbol
such as ``x``: shadow mode shows it), and it does not ask for the fields the legacy producers
never wrote (``api_version``, ``timestamp`` on most topics, ``trade_id``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.codec import build_codec
from core.errors import ContractError
from core.topics import CodecPath, Profile, Topic
from tests.samples import VALID_MESSAGES
from tests.strategies import LEGACY_FIELDS, contract_values
from tests.support.raw_json import DELETE, REPLACEMENTS, Raw, dumps, text_of

LEGACY = build_codec(CodecPath.LEGACY)
STRICT = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
ENTRY_ID = b"1767225600000-0"

Reasons = list[tuple[str, tuple[Any, ...]]]


def _refusal(read: Any) -> Reasons:
    """The (type, loc) of every error ``read()`` raised, sorted; [] if it accepted."""
    try:
        read()
    except ContractError as exc:
        return sorted((e["type"], tuple(e["loc"])) for e in exc.errors)
    return []


def _both_ways(codec: Any, topic: Topic, values: dict[str, Any]) -> dict[str, Reasons]:
    """The refusal of ``values`` as a JSON body and as a stream entry."""
    body = dumps(values)
    fields = {name.encode(): text_of(value).encode() for name, value in values.items()}
    return {
        "body": _refusal(lambda: codec.decode(topic, body)),
        "entry": _refusal(lambda: codec.from_fields(topic, fields, entry_id=ENTRY_ID)),
    }


def _what_legacy_checks(topic: Topic, reasons: Reasons) -> Reasons:
    """The strict refusal without what the legacy path does not check by design."""
    unread = set(VALID_MESSAGES[topic]) - set(LEGACY_FIELDS[topic])
    return [
        (kind, loc)
        for kind, loc in reasons
        if kind != "string_pattern_mismatch" and not (kind == "missing" and loc[0] in unread)
    ]


@settings(max_examples=500, deadline=None)
@given(data=st.data(), topic=st.sampled_from(list(Topic)))
def test_one_bad_field__refused_for_the_same_reason_on_both_paths(data: st.DataObject, topic: Topic) -> None:
    values: dict[str, Any] = data.draw(contract_values(topic))
    name = data.draw(st.sampled_from(sorted(VALID_MESSAGES[topic])))
    value = data.draw(REPLACEMENTS)
    if value is DELETE:
        values.pop(name, None)
    else:
        values[name] = value
    legacy, strict = _both_ways(LEGACY, topic, values), _both_ways(STRICT, topic, values)
    for way in ("body", "entry"):
        assert legacy[way] == _what_legacy_checks(topic, strict[way]), (way, name, value)


# The cases that differed before (the legacy guard's own ``none_forbidden``, ``string_type`` for
# a number given as a side, ``enum`` for a wrong api_version, Pydantic's ``float_type`` for a
# huge integer in a stream entry), each with the reason both paths give now.
CASES = [
    (Topic.SIGNALS, "timestamp", None, "int_type"),
    (Topic.MARKET_DATA, "price", None, "float_type"),
    (Topic.ORDERS, "order_id", None, "string_type"),
    (Topic.ORDER_RESULTS, "simulated", None, "bool_type"),
    (Topic.ORDERS, "side", None, "enum"),
    (Topic.ORDERS, "side", 1, "enum"),
    (Topic.ORDER_RESULTS, "status", ["FILLED"], "enum"),
    (Topic.SIGNALS, "api_version", None, "literal_error"),
    (Topic.SIGNALS, "api_version", 1, "literal_error"),
    (Topic.ORDERS, "api_version", "v9.9", "literal_error"),
    (Topic.MARKET_DATA, "price", Raw(str(10**400)), "finite_number"),
    (Topic.ORDERS, "quantity", Raw("1e400"), "finite_number"),
]


@pytest.mark.parametrize(("topic", "name", "value", "reason"), CASES, ids=lambda v: json.dumps(str(v))[1:-1])
def test_known_case__both_paths_give_the_pydantic_reason_either_way_in(
    topic: Topic, name: str, value: Any, reason: str
) -> None:
    values = {**VALID_MESSAGES[topic], name: value}
    for codec in (LEGACY, STRICT):
        assert _both_ways(codec, topic, values) == {"body": [(reason, (name,))], "entry": [(reason, (name,))]}


def test_pattern__only_the_pydantic_path_checks_it() -> None:
    """The documented difference: the legacy guard reads no regular expressions."""
    values = {**VALID_MESSAGES[Topic.ORDERS], "symbol": "btc usdt"}
    assert _both_ways(LEGACY, Topic.ORDERS, values) == {"body": [], "entry": []}
    assert _both_ways(STRICT, Topic.ORDERS, values)["entry"] == [("string_pattern_mismatch", ("symbol",))]


@pytest.mark.parametrize("topic", [Topic.ORDERS, Topic.ORDER_RESULTS])
def test_a_newer_version_s_message__counted_for_its_api_version_first_on_both_paths(topic: Topic) -> None:
    """A v2.0 message (decimals as strings) at a v1.0 reader: several fields break, and the
    reason counted, the first error, is the version on both paths (not a price's type)."""
    numbers = {"quantity", "price", "filled_quantity", "average_price", "fee"}
    values = {k: str(v) if k in numbers and v is not None else v for k, v in VALID_MESSAGES[topic].items()}
    values["api_version"] = "v2.0"
    body = dumps(values)
    firsts = []
    for codec in (LEGACY, STRICT):
        with pytest.raises(ContractError) as info:
            codec.decode(topic, body)
        firsts.append((info.value.errors[0]["type"], tuple(info.value.errors[0]["loc"])))
    assert firsts == [("literal_error", ("api_version",))] * 2
