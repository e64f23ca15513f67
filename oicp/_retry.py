"""The retry policy for calls to Hubject: a small, opinionated API on tenacity.

Retried: every ``RequestError`` whose ``retryable`` is true — transport failures, HTTP 408/429/5xx,
undecodable answers, and Acknowledgements with a retryable code (``oicp.codes``). Never retried:
permanent errors (other 4xx, permanent codes, TLS failures), which raise at once.

Waits grow exponentially with full jitter ("build some randomness into the backoff schedule to avoid a
thundering herd effect": Hubject Acceptable Use Policy, "Handling limiting gracefully"), capped at
``max_wait``. When Hubject sends ``Retry-After`` (429, 503) that wait is honoured, even past the cap:
Hubject asked for it. The policy gives up after ``max_attempts`` or once ``budget`` seconds have passed
since the first attempt, re-raising the last error.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from oicp.errors import RequestError

T = TypeVar("T")

RetryHook = Callable[[int, RequestError, float], None]
"""Called before each wait: (attempt that failed, its error, seconds about to be waited)."""


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RequestError) and exc.retryable


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_wait: float = 0.5
    multiplier: float = 2.0
    max_wait: float = 60.0
    budget: float = 300.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the wait after failed ``attempt`` (1-based)."""
        try:
            growth = self.initial_wait * self.multiplier ** (attempt - 1)
        except OverflowError:  # a float power past ~1e308: far beyond any cap
            growth = math.inf
        return self.rng.uniform(0, min(self.max_wait, growth))

    def wait_after(self, attempt: int, error: BaseException | None) -> float:
        if isinstance(error, RequestError) and error.retry_after is not None:
            # Honour Hubject's Retry-After; add a little jitter so many clients do not return at once.
            return error.retry_after + self.rng.uniform(0, min(1.0, error.retry_after * 0.1))
        return self.backoff(attempt)


async def call_with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: RetryHook | None = None,
) -> tuple[T, int]:
    """Run ``operation`` under ``policy``; returns its result and the number of attempts made."""
    started = clock()

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return policy.wait_after(state.attempt_number, error)

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        # tenacity has already drawn the wait it is about to sleep (upcoming_sleep): judge that one.
        return clock() - started + state.upcoming_sleep > policy.budget

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if on_retry is not None and isinstance(error, RequestError) and state.next_action is not None:
            on_retry(state.attempt_number, error, state.next_action.sleep)

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    attempts = 0
    async for attempt in retrying:
        with attempt:
            attempts = attempt.retry_state.attempt_number
            result = await operation()
    return result, attempts
