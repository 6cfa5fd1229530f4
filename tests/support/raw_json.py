"""JSON text with number spellings Python's encoder never writes, and the replacement values
the agreement specs put into valid messages (tests/test_schema_agreement.py,
tests/test_reason_agreement.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

__all__ = ["DELETE", "REPLACEMENTS", "Raw", "dumps", "text_of"]


class Raw:
    """A number written exactly as given (a spelling ``json.dumps`` would not produce)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


DELETE = object()
"""A replacement that removes the field."""

# NaN/Infinity; past the float range; whole-number floats where an integer belongs, in both
# spellings; seconds; plain values of every JSON type; the values the cross-field rules test.
REPLACEMENTS = st.sampled_from(
    [
        Raw("NaN"),
        Raw("Infinity"),
        Raw("-Infinity"),
        Raw("1e309"),
        Raw("-1e309"),
        Raw("1.7e12"),
        Raw("1767225600000.0"),
        Raw("1.7672256e12"),
        Raw("1767225600000"),
        Raw("0.0"),
        Raw("-0.0"),
        Raw("5e-324"),
        Raw("0.5"),
        Raw(str(10**400)),
        1_767_225_600,
        1_767_225_600_000,
        0,
        -1,
        1.5,
        None,
        True,
        "",
        "BUY",
        "LIMIT",
        "MARKET",
        "FILLED",
        "PARTIALLY_FILLED",
        "REJECTED",
        "CANCELLED",
        "v1.0",
        "v2.0",
        [1],
        {"a": 1},
        DELETE,
    ]
)


def dumps(obj: dict[str, Any]) -> bytes:
    """``obj`` as JSON text, each :class:`Raw` written as its text."""
    marks: dict[str, str] = {}

    def mark(value: Any) -> str:
        if not isinstance(value, Raw):
            raise TypeError(type(value).__name__)
        key = f"@@raw{len(marks)}@@"
        marks[key] = value.text
        return key

    text = json.dumps(obj, default=mark)
    for key, number in marks.items():
        text = text.replace(f'"{key}"', number)
    return text.encode()


def text_of(value: Any) -> str:
    """One value as JSON text (a :class:`Raw` as its text): a stream entry's field."""
    return value.text if isinstance(value, Raw) else json.dumps(value)
