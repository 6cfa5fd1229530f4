"""Explaining a refused timestamp: seconds (or microseconds) where milliseconds belong.

Every contract timestamp is epoch **milliseconds**. The seed's own examples write
``utcnow().timestamp()`` (seconds, a float) and ``int(time.time())``; Pydantic then says
only ``int_type`` or ``greater_than_equal 946684800000``. These helpers rewrite the message
of such an error (its ``type`` stays, so counts by reason do not change) to say what the
value looks like and which helper gives milliseconds. They run on the error path only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "MAX_TIMESTAMP_MS",
    "MIN_TIMESTAMP_MS",
    "explain_details",
    "explain_validation_error",
    "timestamp_hint",
]

# 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z in ms: a seconds value (about 1.7e9)
# or a microseconds value (about 1.7e15) falls outside and is refused.
MIN_TIMESTAMP_MS = 946_684_800_000
"""Earliest accepted contract timestamp (2000-01-01T00:00:00Z, epoch ms)."""
MAX_TIMESTAMP_MS = 4_102_444_800_000
"""Latest accepted contract timestamp (2100-01-01T00:00:00Z, epoch ms)."""

_HELPER = "core.utils.clock.now_ms() or core.utils.clock.to_ms(datetime_or_seconds)"


def timestamp_hint(value: Any) -> str | None:
    """Why ``value`` is not an epoch-ms timestamp when its unit is the likely cause, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        if not math.isfinite(value):
            return None
    except OverflowError:  # an int past the float range
        return None
    if MIN_TIMESTAMP_MS / 1000 <= value <= MAX_TIMESTAMP_MS / 1000:
        unit = "epoch seconds"
    elif MIN_TIMESTAMP_MS * 1000 <= value <= MAX_TIMESTAMP_MS * 1000:
        unit = "epoch microseconds"
    elif isinstance(value, float) and MIN_TIMESTAMP_MS <= value <= MAX_TIMESTAMP_MS:
        return (
            f"timestamp {value!r} is a float; contract timestamps are epoch milliseconds as a JSON "
            f"integer (no fraction or exponent): use {_HELPER}"
        )
    else:
        return None
    return (
        f"timestamp {value!r} looks like {unit}; contract timestamps are epoch milliseconds "
        f"(UTC, {MIN_TIMESTAMP_MS}..{MAX_TIMESTAMP_MS}): use {_HELPER}"
    )


def _about_timestamp(loc: Iterable[Any]) -> bool:
    loc = tuple(loc)
    return bool(loc) and loc[-1] == "timestamp"


def explain_details(errors: list[Any]) -> list[Any]:
    """``errors`` (as ``ValidationError.errors()``) with a unit hint as the message of each
    timestamp error whose input looks like seconds/microseconds; the same list if none does."""
    out = None
    for i, err in enumerate(errors):
        if not _about_timestamp(err.get("loc", ())):
            continue
        hint = timestamp_hint(err.get("input"))
        if hint is None:
            continue
        if out is None:
            out = list(errors)
        out[i] = {**err, "msg": hint}
    return errors if out is None else out


def explain_validation_error(exc: ValidationError) -> ValidationError:
    """``exc`` rebuilt with :func:`explain_details` messages; ``exc`` itself when nothing changes."""
    errors = exc.errors(include_url=False)
    if explain_details(errors) is errors:
        return exc
    line_errors: list[InitErrorDetails] = []
    for err in errors:
        hint = timestamp_hint(err.get("input")) if _about_timestamp(err["loc"]) else None
        detail: InitErrorDetails
        if hint is not None:
            # Braces in the hint would be read as message placeholders.
            message = hint.replace("{", "{{").replace("}", "}}")
            detail = {
                "type": PydanticCustomError(err["type"], message),
                "loc": err["loc"],
                "input": err["input"],
            }
        else:
            detail = {"type": err["type"], "loc": err["loc"], "input": err["input"]}
            if "ctx" in err:
                detail["ctx"] = err["ctx"]
        line_errors.append(detail)
    return ValidationError.from_exception_data(exc.title, line_errors)
