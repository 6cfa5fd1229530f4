"""Wire limits the same on every path and form: lone surrogates and nesting depth (issue 14).

A lone surrogate (``"\\ud800"``) passed the legacy guard and later broke the re-encoding of
the stream entry (the whole batch went to the dead-letter stream); a nested unknown field
was refused on one path and form and accepted on the others. Both are now decided once,
before any parser (:mod:`core.codec.limits`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.codec import Codec, build_codec
from core.codec.limits import MAX_NESTING_DEPTH
from core.errors import ContractError
from core.topics import CodecPath, Profile, Topic
from tests.samples import VALID_MESSAGES as VALID

CODECS = {
    "legacy": build_codec(CodecPath.LEGACY),
    "lenient": build_codec(CodecPath.PYDANTIC, Profile.LENIENT),
    "strict": build_codec(CodecPath.PYDANTIC, Profile.STRICT),
}
FORMS = ["json", "fields-bytes", "fields-text"]
Decode = Callable[[], Any]


def _json_text(values: dict[str, Any]) -> dict[str, str]:
    # ensure_ascii: every non-ASCII character (and every surrogate) as a \\u escape
    return {k: json.dumps(v, ensure_ascii=True) for k, v in values.items()}


def _decoder(codec: Codec, form: str, topic: Topic, values: dict[str, Any]) -> Decode:
    if form == "json":
        raw = json.dumps(values, ensure_ascii=True).encode()
        return lambda: codec.decode(topic, raw)
    fields = _json_text(values)
    if form == "fields-bytes":
        as_bytes = {k.encode(): v.encode() for k, v in fields.items()}
        return lambda: codec.from_fields(topic, as_bytes)
    return lambda: codec.from_fields(topic, fields)


def _signal(**changes: Any) -> dict[str, Any]:
    return {**VALID[Topic.SIGNALS], **changes}


# --- lone surrogates ---------------------------------------------------------------------------

LONE = ["\ud800", "\udc00", "\udbff", "x\ud83d", "\ude80y", "\ud83d\ud83d\ude80"]


@pytest.mark.parametrize("text", LONE)
@pytest.mark.parametrize("where", ["reason", "ignored", "nested_ignored"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("codec_name", list(CODECS))
def test_lone_surrogate__is_refused_on_every_path_and_form(
    codec_name: str, form: str, where: str, text: str
) -> None:
    changes: dict[str, Any] = {
        "reason": {"reason": text},
        "ignored": {"comment": text},
        "nested_ignored": {"meta": {"notes": ["ok", text]}},
    }[where]
    decode = _decoder(CODECS[codec_name], form, Topic.SIGNALS, _signal(**changes))
    with pytest.raises(ContractError) as info:
        decode()
    [error] = info.value.errors
    assert error["type"] == "string_unicode"
    assert "lone surrogate" in error["msg"]
    if form != "json":
        assert error["loc"] == ({"reason": "reason", "ignored": "comment", "nested_ignored": "meta"}[where],)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("codec_name", list(CODECS))
def test_surrogate_pair_and_escaped_backslash__are_text_and_accepted(codec_name: str, form: str) -> None:
    codec = CODECS[codec_name]
    reason = "go \U0001f680 C:\\ud800"  # a pair (as \\ud83d\\ude80), then a backslash before "ud800"
    decoded = _decoder(codec, form, Topic.SIGNALS, _signal(reason=reason))()
    assert decoded.message.reason == reason


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(alphabet=st.characters(codec=None, categories=["Cs", "Ll", "So"]), max_size=6),
    codec_name=st.sampled_from(list(CODECS)),
    form=st.sampled_from(FORMS),
)
def test_surrogates__refused_exactly_when_the_text_is_not_unicode(
    text: str, codec_name: str, form: str
) -> None:
    try:
        # As JSON carries it: adjacent high + low surrogates are read back as one pair.
        json.loads(json.dumps(text)).encode("utf-8")
        is_text = True
    except UnicodeEncodeError:
        is_text = False
    decode = _decoder(CODECS[codec_name], form, Topic.SIGNALS, _signal(reason=text))
    reason = "ok"
    try:
        decode()
    except ContractError as exc:
        reason = exc.reason
    assert reason == ("ok" if is_text else "string_unicode")


# --- nesting depth -----------------------------------------------------------------------------


def _nested(levels: int) -> Any:
    value: Any = 1
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("codec_name", list(CODECS))
@pytest.mark.parametrize("topic", list(Topic))
def test_nesting__ignored_field_at_the_limit_is_accepted_one_deeper_refused_everywhere(
    topic: Topic, codec_name: str, form: str
) -> None:
    codec = CODECS[codec_name]
    # The message object is level 1, so a field value may nest MAX_NESTING_DEPTH - 1 levels.
    at_limit = {**VALID[topic], "extra": _nested(MAX_NESTING_DEPTH - 1)}
    too_deep = {**VALID[topic], "extra": _nested(MAX_NESTING_DEPTH)}
    _decoder(codec, form, topic, at_limit)()
    with pytest.raises(ContractError) as info:
        _decoder(codec, form, topic, too_deep)()
    [error] = info.value.errors
    assert error["type"] == "json_invalid"
    assert "MAX_NESTING_DEPTH" in error["msg"]


@settings(max_examples=120, deadline=None)
@given(
    levels=st.integers(min_value=0, max_value=3 * MAX_NESTING_DEPTH),
    in_string=st.booleans(),
    codec_name=st.sampled_from(list(CODECS)),
    form=st.sampled_from(FORMS),
)
def test_nesting__every_path_and_form_decides_alike(
    levels: int, in_string: bool, codec_name: str, form: str
) -> None:
    """Brackets inside a string are text, not nesting."""
    extra = json.dumps(_nested(levels)) if in_string else _nested(levels)
    decode = _decoder(CODECS[codec_name], form, Topic.ORDERS, {**VALID[Topic.ORDERS], "extra": extra})
    try:
        decode()
        accepted = True
    except ContractError:
        accepted = False
    assert accepted == (in_string or levels <= MAX_NESTING_DEPTH - 1)
