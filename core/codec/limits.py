"""Wire-level limits every path and form applies before any parser: nesting depth and text.

One place, so a message is refused or accepted alike by the legacy and the Pydantic path,
as a JSON body or as stream fields (before this, each parser had its own nesting limit
-- ``json.loads`` about 1000, Pydantic's about 200 -- and only Pydantic refused a lone
surrogate, so one bad message could pass the legacy path and crash its re-encoding).

- **Nesting**: at most :data:`MAX_NESTING_DEPTH` levels of arrays/objects, the message
  object itself counting as one (a stream field's value is one level below it). The
  contracts are flat; this leaves room for nested unknown fields of newer producers.
- **Text**: a string may not hold a lone UTF-16 surrogate escape (``"\\ud800"``): it is not
  Unicode text, UTF-8 cannot encode it, and forwarding it would fail. A valid pair
  (``"\\ud83d\\ude80"``) is fine. Raw bytes cannot carry one (they are decoded as strict UTF-8).

Both checks cost one substring scan on the common path; the exact scan runs only when
that finds something (an escape, more brackets than the limit).
"""

from __future__ import annotations

import re

from core.errors import ErrorDetail

__all__ = ["MAX_NESTING_DEPTH", "nesting_error", "surrogate_error"]

MAX_NESTING_DEPTH = 32
"""Deepest accepted nesting of a message (its own object is level 1), on every path and form."""

# Every escape of a JSON string, left to right: a surrogate pair, a lone surrogate, anything
# else (which also consumes an escaped backslash, so "\\\\ud800" is not read as an escape).
_ESCAPES = re.compile(
    rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)",
    re.DOTALL,
)
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*+"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def surrogate_error(raw: bytes | str, loc: tuple[str, ...] = ()) -> ErrorDetail | None:
    """A ``string_unicode`` error if JSON text ``raw`` has a lone surrogate escape, else ``None``."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if b"\\u" not in data:
        return None
    for match in _ESCAPES.finditer(data):
        lone = match.group(1)
        if lone is not None:
            escape = "\\" + lone.decode("ascii")
            return {
                "type": "string_unicode",
                "loc": loc,
                "msg": f"string holds a lone surrogate escape '{escape}': not Unicode text, refused "
                "(UTF-8 cannot encode it, so the message could not be forwarded)",
            }
    return None


def nesting_error(
    raw: bytes | str, loc: tuple[str, ...] = (), *, levels_above: int = 0
) -> ErrorDetail | None:
    """A ``json_invalid`` error if JSON text ``raw`` nests deeper than :data:`MAX_NESTING_DEPTH`
    (counting ``levels_above`` enclosing levels, 1 for a stream field's value), else ``None``."""
    limit = MAX_NESTING_DEPTH - levels_above
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if data.count(b"[") + data.count(b"{") <= limit:
        return None  # fewer brackets than the limit: cannot nest deeper (the common case)
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", data)):
        depth += 1 if bracket in (b"[", b"{") else -1
        deepest = max(deepest, depth)
        if deepest > limit:
            return {
                "type": "json_invalid",
                "loc": loc,
                "msg": f"JSON nests deeper than {MAX_NESTING_DEPTH} levels "
                "(MAX_NESTING_DEPTH, the same limit on every path and form)",
            }
    return None
