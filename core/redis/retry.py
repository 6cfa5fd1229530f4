"""Reconnect with bounded exponential backoff and jitter (tenacity) around Redis calls.

Only connection trouble is retried (``redis.ConnectionError``, ``redis.TimeoutError``,
which includes ``BusyLoadingError`` while a restarted server loads its AOF). A
command the server refuses (``ResponseError``) is not retried. When the retries
are used up the caller gets :class:`~core.errors.TransportError`, never silence.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from core.errors import TransportError

__all__ = ["RETRYABLE", "OnRetry", "RetryPolicy", "call_async", "call_sync"]

T = TypeVar("T")

RETRYABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, builtins.TimeoutError)
"""Errors that mean "the connection failed", worth a reconnect and another try."""

OnRetry = Callable[[int, BaseException], None]
"""Called before each retry with the attempt number that failed and its error."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: at most ``attempts`` calls within ``deadline_s`` seconds, waiting
    ``initial_s * 2**n`` (capped at ``max_s``) plus up to ``jitter_s`` random seconds between.

    The defaults ride out a Redis restart of several seconds (about 10 s of waiting
    in all) and then give up with :class:`~core.errors.TransportError`.
    """

    attempts: int = 10
    initial_s: float = 0.05
    max_s: float = 2.0
    jitter_s: float = 0.1
    deadline_s: float = 30.0

    def _kwargs(self, on_retry: OnRetry | None) -> dict[str, object]:
        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    on_retry(state.attempt_number, exc)

        backoff = wait_exponential(multiplier=self.initial_s, max=self.max_s)
        return {
            "stop": stop_after_attempt(max(1, self.attempts)) | stop_after_delay(self.deadline_s),
            "wait": backoff + wait_random(0, self.jitter_s),
            "retry": retry_if_exception_type(RETRYABLE),
            "before_sleep": before_sleep,
            "reraise": True,
        }


def _give_up(what: str, policy: RetryPolicy, exc: BaseException) -> TransportError:
    return TransportError(f"{what}: Redis unreachable after {policy.attempts} attempt(s): {exc}")


async def call_async(
    policy: RetryPolicy,
    what: str,
    fn: Callable[[], Awaitable[T]],
    *,
    on_retry: OnRetry | None = None,
) -> T:
    """``await fn()``, retried on connection errors; :class:`TransportError` when it keeps failing."""
    try:
        async for attempt in AsyncRetrying(**policy._kwargs(on_retry)):  # type: ignore[arg-type]
            with attempt:
                return await fn()
    except RETRYABLE as exc:
        raise _give_up(what, policy, exc) from exc
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


def call_sync(
    policy: RetryPolicy,
    what: str,
    fn: Callable[[], T],
    *,
    on_retry: OnRetry | None = None,
) -> T:
    """``fn()``, retried on connection errors; :class:`TransportError` when it keeps failing."""
    try:
        for attempt in Retrying(**policy._kwargs(on_retry)):  # type: ignore[arg-type]
            with attempt:
                return fn()
    except RETRYABLE as exc:
        raise _give_up(what, policy, exc) from exc
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
