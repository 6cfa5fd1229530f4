"""Retrying Redis calls (core.redis.retry): what callers and their retry counters can rely on.

The first attempt is a plain call (no retry machinery is built for a call that succeeds); a
failed first attempt starts the policy, which then behaves exactly as if it had made that
attempt itself: same number of calls, same numbering in the callback, same give-up error.
"""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from core.errors import TransportError
from core.redis import retry as retry_module
from core.redis.retry import RetryPolicy, call_async, call_sync

FAST = RetryPolicy(attempts=4, initial_s=0.001, max_s=0.002, jitter_s=0.0, deadline_s=5.0)


class Flaky:
    """Fails with a connection error ``failures`` times, then returns ``"ok"``."""

    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self.error = error or RedisConnectionError("connection refused")

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"

    async def call(self) -> str:
        return self()


@pytest.fixture
def no_tenacity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any use of tenacity's retry loops fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the retry machinery was built for a call that did not fail")

    monkeypatch.setattr(retry_module, "AsyncRetrying", refuse)
    monkeypatch.setattr(retry_module, "Retrying", refuse)


async def test_call_async__succeeds_first_time__no_retry_machinery_is_built(no_tenacity: None) -> None:
    seen: list[int] = []
    fn = Flaky(0)
    assert await call_async(FAST, "read", fn.call, on_retry=lambda n, exc: seen.append(n)) == "ok"
    assert fn.calls == 1
    assert seen == []


def test_call_sync__succeeds_first_time__no_retry_machinery_is_built(no_tenacity: None) -> None:
    fn = Flaky(0)
    assert call_sync(FAST, "read", fn) == "ok"
    assert fn.calls == 1


@pytest.mark.parametrize("failures", [1, 2, 3])
async def test_call_async__fails_then_succeeds__every_failed_attempt_reported_in_order(failures: int) -> None:
    seen: list[tuple[int, str]] = []
    fn = Flaky(failures)
    result = await call_async(
        FAST, "read", fn.call, on_retry=lambda n, exc: seen.append((n, type(exc).__name__))
    )
    assert result == "ok"
    assert fn.calls == failures + 1
    assert seen == [(n, "ConnectionError") for n in range(1, failures + 1)]


@pytest.mark.parametrize("failures", [1, 3])
def test_call_sync__fails_then_succeeds__every_failed_attempt_reported_in_order(failures: int) -> None:
    seen: list[int] = []
    fn = Flaky(failures)
    assert call_sync(FAST, "read", fn, on_retry=lambda n, exc: seen.append(n)) == "ok"
    assert fn.calls == failures + 1
    assert seen == list(range(1, failures + 1))


async def test_call_async__keeps_failing__gives_up_after_exactly_the_policys_attempts() -> None:
    seen: list[int] = []
    fn = Flaky(100)
    with pytest.raises(TransportError, match="read: Redis unreachable after 4 attempt"):
        await call_async(FAST, "read", fn.call, on_retry=lambda n, exc: seen.append(n))
    assert fn.calls == FAST.attempts
    assert seen == [1, 2, 3]  # no pause (and no report) after the last attempt


def test_call_sync__keeps_failing__gives_up_after_exactly_the_policys_attempts() -> None:
    fn = Flaky(100)
    with pytest.raises(TransportError, match="after 4 attempt"):
        call_sync(FAST, "read", fn)
    assert fn.calls == FAST.attempts


async def test_call_async__one_attempt_policy__gives_up_after_the_first_failure() -> None:
    fn = Flaky(100)
    with pytest.raises(TransportError, match="after 1 attempt"):
        await call_async(RetryPolicy(attempts=1), "read", fn.call)
    assert fn.calls == 1


async def test_call_async__refused_command__raised_at_once_not_retried() -> None:
    fn = Flaky(1, error=ResponseError("WRONGTYPE"))
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await call_async(FAST, "read", fn.call)
    assert fn.calls == 1


async def test_call_async__refused_on_a_retry__raised_not_retried_further() -> None:
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        raise RedisConnectionError("reset") if calls == 1 else ResponseError("NOSCRIPT")

    with pytest.raises(ResponseError, match="NOSCRIPT"):
        await call_async(FAST, "read", fn)
    assert calls == 2


def test_after_first__continues_the_same_schedule() -> None:
    policy = RetryPolicy(attempts=10, initial_s=0.05, max_s=2.0, jitter_s=0.1, deadline_s=30.0)
    rest = policy.after_first(1.5)
    assert rest.attempts == 9
    assert rest.initial_s == pytest.approx(0.1)  # the wait after attempt 2 is the policy's second step
    assert rest.max_s == policy.max_s
    assert rest.jitter_s == policy.jitter_s
    assert rest.deadline_s == pytest.approx(28.5)
    assert policy.initial_s <= policy.first_pause_s() <= policy.initial_s + policy.jitter_s
