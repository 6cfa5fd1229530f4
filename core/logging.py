"""Structured JSON logs for every service: one JSON object per line, secrets scrubbed.

Promises:

- :func:`configure_logging` makes structlog render one JSON object per event
  (``event``, ``level``, ``timestamp`` in UTC ISO-8601, plus the bound fields).
- No password leaves a log line: any ``scheme://user:password@host`` inside a
  logged string is rewritten to ``scheme://user:***@host`` before rendering, as a
  safety net behind :func:`core.settings.redact_url` at the call sites.
- Callers log structured errors (``ContractError.loggable_errors()``) and a short
  ``raw_preview``, never a whole payload.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Mapping, MutableMapping
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.typing import FilteringBoundLogger

__all__ = ["configure_logging", "get_logger", "scrub_secrets", "scrubbed_excepthook"]

# scheme://user:password@ -> scheme://user:***@ ; the password is everything up to the last "@"
# of the token (greedy), so an unescaped "@", ":" or "/" in a password does not leak its tail.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<secret>\S+)@")


# libpq keyword form (a DSN psycopg may quote in an error): password=secret / password='sec ret'
_CONNINFO_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)")


def scrub_secrets(text: str) -> str:
    """``text`` with the password of every URL in it, and of every ``password=`` keyword,
    replaced by ``***``."""
    if "password" in text.lower():
        text = _CONNINFO_PASSWORD.sub(r"\g<1>***", text)
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def scrubbed_excepthook(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None, stream: TextIO | None = None
) -> None:
    """A :data:`sys.excepthook` that prints the traceback with :func:`scrub_secrets` applied:
    the last line of defence, for an error no call site expected (``cdb`` installs it)."""
    text = "".join(traceback.format_exception(kind, exc, tb))
    (stream or sys.stderr).write(scrub_secrets(text))


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_secrets(value)
    if isinstance(value, Mapping):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, BaseException):
        return scrub_secrets(f"{type(value).__name__}: {value}")
    return value


def _scrub_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        event_dict[key] = _scrub(value)
    return event_dict


def _dumps(obj: Any, **kwargs: Any) -> str:
    # A value JSON cannot carry (bytes, an enum in an error detail) must not break the
    # log line: fall back to its string form unless the renderer brought its own fallback.
    kwargs.setdefault("default", str)
    return json.dumps(obj, ensure_ascii=False, **kwargs)


def configure_logging(level: int | str = "INFO", *, stream: TextIO | None = None) -> None:
    """Log JSON lines at ``level`` and above to ``stream`` (default: stderr).

    May be called again (tests point it at a buffer); loggers obtained earlier
    follow the new configuration because they are not cached.
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrub_processor,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **initial_values: Any) -> FilteringBoundLogger:
    """A structlog logger with ``initial_values`` bound (e.g. ``service="signal"``);
    ``name`` (a module name) is logged as ``component``."""
    if name is not None:
        initial_values = {"component": name, **initial_values}
    logger: FilteringBoundLogger = structlog.get_logger(**initial_values)
    return logger
