"""Logs: one JSON object per line, structured errors, never a password."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from core.logging import configure_logging, get_logger, scrub_secrets

pytestmark = pytest.mark.strict_path  # runs in the week-4 deletion rehearsal too (test_week4_deletion)


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """The JSON log lines written during the test."""
    buffer = io.StringIO()
    configure_logging("INFO", stream=buffer)
    yield buffer
    configure_logging()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://cdb-signal:p@ss:w/rd@10.0.0.5:6380", "rediss://cdb-signal:***@10.0.0.5:6380"),
        ("connect to postgresql://app:pw@db/x failed", "connect to postgresql://app:***@db/x failed"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("no url here", "no url here"),
    ],
)
def test_scrub_secrets__url_passwords_replaced_everything_else_kept(text: str, expected: str) -> None:
    assert scrub_secrets(text) == expected


def test_logger__password_in_any_logged_value_is_redacted(log_buffer: io.StringIO) -> None:
    log = get_logger("test", service="signal")

    log.error(
        "redis.down",
        url="redis://cdb:topsecret@127.0.0.1:6379/0",
        nested={"errors": ["via redis://u:topsecret@h:1"]},
        error=ConnectionError("redis://u:topsecret@h:1 refused"),
    )

    line = log_buffer.getvalue()
    assert "topsecret" not in line
    assert json.loads(line)["url"] == "redis://cdb:***@127.0.0.1:6379/0"


def test_configure_logging__one_json_object_per_event_with_level_time_and_bound_fields(
    log_buffer: io.StringIO,
) -> None:
    log = get_logger("core.redis.consumer", service="risk")

    log.warning("consumer.invalid", errors=[{"type": "missing", "loc": ("price",)}], raw=b"\xff")
    log.debug("not shown at INFO")

    [line] = log_buffer.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"] == "consumer.invalid"
    assert event["level"] == "warning"
    assert event["service"] == "risk"
    assert event["component"] == "core.redis.consumer"
    assert event["errors"] == [{"type": "missing", "loc": ["price"]}]
    assert event["timestamp"].endswith("Z")
