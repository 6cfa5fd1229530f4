"""Reconnect with bounded exponential backoff and jitter (tenacity) around Redis calls.

Only connection trouble is retried (``redis.ConnectionError``, ``redis.TimeoutError``,
which includes ``BusyLoadingError`` while a restarted server loads its AOF). A
command the server refuses (``ResponseError``) is not retried. When the retries
are used up the caller gets :class:`~core.errors.TransportError`, never silence.
"""

from __future__ import annotations

import asyncio
import builtins
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
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

    def first_pause_s(self) -> float:
        """The wait after a failed first attempt (before the second): ``initial_s`` plus jitter."""
        return min(self.initial_s, self.max_s) + random.uniform(0, self.jitter_s)

    def after_first(self, elapsed_s: float) -> RetryPolicy:
        """The rest of this policy once its first attempt failed and ``elapsed_s`` went by (that
        attempt and the pause after it): one attempt fewer, the backoff one step on, the deadline
        what is left of it. Running it after the first attempt is running this policy whole."""
        return replace(
            self,
            attempts=self.attempts - 1,
            initial_s=self.initial_s * 2,
            deadline_s=self.deadline_s - elapsed_s,
        )

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
    """``await fn()``, retried on connection errors; :class:`TransportError` when it keeps failing.

    The first attempt is a plain call: the retry machinery is built only once it failed (it
    costs more than many a command it would wrap), and then runs the policy's remaining
    attempts, waits and deadline exactly as if it had made the first attempt itself.
    """
    started = time.monotonic()
    try:
        return await fn()
    except RETRYABLE as exc:
        first = exc
    pause_s, rest_on_retry = _after_failure(policy, what, first, on_retry)
    await asyncio.sleep(pause_s)
    rest = policy.after_first(time.monotonic() - started)
    try:
        async for attempt in AsyncRetrying(**rest._kwargs(rest_on_retry)):  # type: ignore[arg-type]
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
    """``fn()``, retried on connection errors; :class:`TransportError` when it keeps failing
    (the first attempt a plain call, as in :func:`call_async`)."""
    started = time.monotonic()
    try:
        return fn()
    except RETRYABLE as exc:
        first = exc
    pause_s, rest_on_retry = _after_failure(policy, what, first, on_retry)
    time.sleep(pause_s)
    rest = policy.after_first(time.monotonic() - started)
    try:
        for attempt in Retrying(**rest._kwargs(rest_on_retry)):  # type: ignore[arg-type]
            with attempt:
                return fn()
    except RETRYABLE as exc:
        raise _give_up(what, policy, exc) from exc
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


def _after_failure(
    policy: RetryPolicy, what: str, first: BaseException, on_retry: OnRetry | None
) -> tuple[float, OnRetry | None]:
    """Report the failed first attempt (attempt 1); returns the pause before the second and the
    callback for the rest, which sees their attempts numbered from 2 on. A policy of one
    attempt gives up at once."""
    if policy.attempts <= 1:
        raise _give_up(what, policy, first) from first
    if on_retry is not None:
        on_retry(1, first)
    shifted = None if on_retry is None else (lambda n, exc: on_retry(n + 1, exc))
    return policy.first_pause_s(), shifted
