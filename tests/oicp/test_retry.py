"""call_with_retries and RetryPolicy, driven by a fake sleep and a fake clock (no real waiting)."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oicp._retry import RetryPolicy, call_with_retries, is_retryable
from oicp.codes import classify
from oicp.errors import (
    ConnectionLostError,
    HTTPStatusError,
    RateLimitedError,
    RejectedError,
    RequestError,
    RequestTimeoutError,
    ResponseDecodeError,
    TLSError,
)


class FakeTime:
    """A clock that only moves when the code under test sleeps; records every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class Flaky:
    """An operation that raises the given errors in turn, then returns ``result``."""

    def __init__(self, errors: list[BaseException], result: str = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class AlwaysFails:
    """An operation that fails every time, with a fresh error per attempt."""

    def __init__(self, retry_after: float | None = None) -> None:
        self.raised: list[RequestError] = []
        self.retry_after = retry_after

    async def __call__(self) -> str:
        error = ConnectionLostError(f"attempt {len(self.raised) + 1}", retry_after=self.retry_after)
        self.raised.append(error)
        raise error


class ScriptedRandom(random.Random):
    """A Random whose ``uniform`` returns scripted values (each clamped into [a, b])."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = list(values)

    def uniform(self, a: float, b: float) -> float:
        value = self.values.pop(0) if self.values else 0.0
        return min(max(value, a), b)


def policy(**overrides: float) -> RetryPolicy:
    settings: dict[str, float] = {
        "max_attempts": 10,
        "initial_wait": 0.5,
        "multiplier": 2.0,
        "max_wait": 60.0,
        "budget": 300.0,
    }
    settings.update(overrides)
    return RetryPolicy(
        max_attempts=int(settings["max_attempts"]),
        initial_wait=settings["initial_wait"],
        multiplier=settings["multiplier"],
        max_wait=settings["max_wait"],
        budget=settings["budget"],
        rng=random.Random(1234),
    )


# --- success and retryable failures ------------------------------------------------------------


async def test_success_on_first_attempt_does_not_wait() -> None:
    fake = FakeTime()
    op = Flaky([])
    result = await call_with_retries(op, policy(), sleep=fake.sleep, clock=fake.clock)
    assert result == ("ok", 1)
    assert op.calls == 1
    assert fake.waits == []


@pytest.mark.parametrize("failures", [1, 2, 5])
async def test_retryable_failures_then_success(failures: int) -> None:
    fake = FakeTime()
    op = Flaky([ConnectionLostError("x") for _ in range(failures)], result="done")
    result, attempts = await call_with_retries(op, policy(), sleep=fake.sleep, clock=fake.clock)
    assert result == "done"
    assert attempts == failures + 1
    assert op.calls == failures + 1
    assert len(fake.waits) == failures


@pytest.mark.parametrize(
    "error",
    [
        ConnectionLostError("reset"),
        RequestTimeoutError("slow"),
        ResponseDecodeError("garbled"),
        HTTPStatusError(500, "oops"),
        HTTPStatusError(503, ""),
        HTTPStatusError(408, ""),
        RateLimitedError(429, ""),
        RejectedError("001", None, None, info=classify("001")),
        RejectedError("999", None, None, info=classify("999")),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:30],
)
async def test_each_retryable_error_is_retried(error: RequestError) -> None:
    assert is_retryable(error)
    fake = FakeTime()
    op = Flaky([error])
    assert await call_with_retries(op, policy(), sleep=fake.sleep, clock=fake.clock) == ("ok", 2)
    assert len(fake.waits) == 1


# --- permanent failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        HTTPStatusError(400, ""),
        HTTPStatusError(401, "unauthorized"),
        HTTPStatusError(404, ""),
        TLSError("bad cert"),
        RejectedError("017", None, None, info=classify("017")),
        RejectedError("603", None, None, info=classify("603")),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:30],
)
async def test_permanent_error_is_raised_at_once(error: RequestError) -> None:
    assert not is_retryable(error)
    fake = FakeTime()
    op = Flaky([error, ConnectionLostError("never reached")])
    with pytest.raises(type(error)) as info:
        await call_with_retries(op, policy(), sleep=fake.sleep, clock=fake.clock)
    assert info.value is error
    assert op.calls == 1
    assert fake.waits == []


async def test_non_oicp_exception_is_not_retried() -> None:
    fake = FakeTime()
    op = Flaky([RuntimeError("bug")])
    with pytest.raises(RuntimeError, match="bug"):
        await call_with_retries(op, policy(), sleep=fake.sleep, clock=fake.clock)
    assert op.calls == 1
    assert fake.waits == []


# --- limits --------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 6])
async def test_max_attempts_reraises_the_last_error(max_attempts: int) -> None:
    fake = FakeTime()
    op = AlwaysFails()
    with pytest.raises(ConnectionLostError) as info:
        await call_with_retries(op, policy(max_attempts=max_attempts), sleep=fake.sleep, clock=fake.clock)
    assert len(op.raised) == max_attempts
    assert info.value is op.raised[-1]
    assert len(fake.waits) == max_attempts - 1


async def test_budget_stops_retries() -> None:
    # Retry-After 3 s gives waits in [3, 3.3]: three waits fit in a 10 s budget, a fourth does not.
    fake = FakeTime()
    op = AlwaysFails(retry_after=3.0)
    with pytest.raises(ConnectionLostError) as info:
        await call_with_retries(op, policy(max_attempts=100, budget=10.0), sleep=fake.sleep, clock=fake.clock)
    assert len(op.raised) == 4
    assert info.value is op.raised[-1]
    assert len(fake.waits) == 3
    assert sum(fake.waits) <= 10.0


async def test_budget_counts_time_spent_in_the_operation() -> None:
    fake = FakeTime()

    async def slow_failure() -> str:
        fake.now += 20.0  # each attempt itself takes 20 s of (fake) time
        raise ConnectionLostError("slow")

    with pytest.raises(ConnectionLostError):
        await call_with_retries(
            slow_failure, policy(max_attempts=100, budget=50.0), sleep=fake.sleep, clock=fake.clock
        )
    # 20 s, wait <= 0.5, 20 s, wait <= 1 -> at ~41 s a third attempt still starts; after it 60 s > 50 s.
    assert len(fake.waits) == 2


async def test_budget_is_judged_on_the_wait_actually_slept() -> None:
    # uniform() draws in call order. The 50 s wait drawn for attempt 1 does not fit the 10 s budget; a
    # second, smaller draw (1 s) must not be what the budget check looks at.
    fake = FakeTime()
    rng = ScriptedRandom([50.0, 1.0, 50.0, 50.0])
    retry_policy = RetryPolicy(max_attempts=10, initial_wait=100.0, max_wait=100.0, budget=10.0, rng=rng)
    op = AlwaysFails()
    with pytest.raises(ConnectionLostError):
        await call_with_retries(op, retry_policy, sleep=fake.sleep, clock=fake.clock)
    assert fake.waits == []
    assert len(op.raised) == 1


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    budget=st.floats(min_value=0.0, max_value=100.0),
    initial_wait=st.floats(min_value=0.01, max_value=50.0),
    retry_after=st.one_of(st.none(), st.floats(min_value=0.0, max_value=30.0)),
)
def test_sleeps_never_run_past_the_budget(
    seed: int, budget: float, initial_wait: float, retry_after: float | None
) -> None:
    fake = FakeTime()
    retry_policy = RetryPolicy(
        max_attempts=50, initial_wait=initial_wait, max_wait=60.0, budget=budget, rng=random.Random(seed)
    )
    op = AlwaysFails(retry_after=retry_after)
    with pytest.raises(ConnectionLostError):
        asyncio.run(call_with_retries(op, retry_policy, sleep=fake.sleep, clock=fake.clock))
    assert sum(fake.waits) <= budget + 1e-9
    assert len(op.raised) == len(fake.waits) + 1


# --- waits ------------------------------------------------------------------------------------------


async def test_retry_after_is_honoured() -> None:
    fake = FakeTime()
    op = Flaky([RateLimitedError(429, "slow down", retry_after=7.0)])
    await call_with_retries(op, policy(), sleep=fake.sleep, clock=fake.clock)
    assert len(fake.waits) == 1
    assert 7.0 <= fake.waits[0] < 7.7


async def test_retry_after_is_honoured_past_the_cap() -> None:
    fake = FakeTime()
    op = Flaky([HTTPStatusError(503, "", retry_after=7.0)])
    await call_with_retries(op, policy(max_wait=1.0), sleep=fake.sleep, clock=fake.clock)
    assert 7.0 <= fake.waits[0] < 7.7


@given(st.floats(min_value=0.0, max_value=10_000.0), st.integers(min_value=1, max_value=50))
def test_wait_after_retry_after_has_bounded_jitter(retry_after: float, attempt: int) -> None:
    p = RetryPolicy(rng=random.Random(attempt))
    wait = p.wait_after(attempt, ConnectionLostError("x", retry_after=retry_after))
    assert retry_after <= wait <= retry_after + min(1.0, retry_after * 0.1)


async def test_backoff_waits_grow_within_full_jitter_bounds_and_cap() -> None:
    fake = FakeTime()
    initial, multiplier, cap = 0.5, 2.0, 5.0
    op = Flaky([ConnectionLostError("x") for _ in range(9)])
    await call_with_retries(
        op,
        policy(initial_wait=initial, multiplier=multiplier, max_wait=cap),
        sleep=fake.sleep,
        clock=fake.clock,
    )
    assert len(fake.waits) == 9
    for n, wait in enumerate(fake.waits, start=1):
        assert 0.0 <= wait <= min(cap, initial * multiplier ** (n - 1))


def test_backoff_is_jittered() -> None:
    p = RetryPolicy(initial_wait=1.0, multiplier=2.0, max_wait=60.0, rng=random.Random(7))
    samples = {p.backoff(5) for _ in range(50)}
    assert len(samples) > 40  # full jitter, not a fixed schedule
    assert all(0.0 <= s <= 16.0 for s in samples)
    assert max(samples) > 8.0  # uses the whole range, not just the lower half


def test_wait_after_without_retry_after_is_backoff() -> None:
    a = RetryPolicy(rng=random.Random(3))
    b = RetryPolicy(rng=random.Random(3))
    assert a.wait_after(4, ConnectionLostError("x")) == b.backoff(4)
    assert a.wait_after(2, None) == b.backoff(2)


@given(
    attempt=st.integers(min_value=1, max_value=200),
    initial_wait=st.floats(min_value=0.0, max_value=10.0),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    max_wait=st.floats(min_value=0.0, max_value=3600.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_is_within_bounds(
    attempt: int, initial_wait: float, multiplier: float, max_wait: float, seed: int
) -> None:
    p = RetryPolicy(
        initial_wait=initial_wait, multiplier=multiplier, max_wait=max_wait, rng=random.Random(seed)
    )
    wait = p.backoff(attempt)
    assert 0.0 <= wait <= min(max_wait, initial_wait * multiplier ** (attempt - 1))


@pytest.mark.parametrize("attempt", [1025, 1100, 10_000])
def test_backoff_does_not_overflow_for_large_attempts(attempt: int) -> None:
    p = RetryPolicy(initial_wait=0.5, multiplier=2.0, max_wait=60.0, rng=random.Random(0))
    assert 0.0 <= p.backoff(attempt) <= 60.0


# --- on_retry hook ------------------------------------------------------------------------------------


async def test_on_retry_hook_receives_attempt_error_and_wait() -> None:
    fake = FakeTime()
    errors: list[BaseException] = [
        ConnectionLostError("a"),
        HTTPStatusError(503, "b"),
        ResponseDecodeError("c"),
    ]
    op = Flaky(list(errors))
    calls: list[tuple[int, RequestError, float]] = []

    def hook(attempt: int, error: RequestError, wait: float) -> None:
        calls.append((attempt, error, wait))

    result = await call_with_retries(op, policy(), sleep=fake.sleep, clock=fake.clock, on_retry=hook)
    assert result == ("ok", 4)
    assert [a for a, _, _ in calls] == [1, 2, 3]
    assert [e for _, e, _ in calls] == errors
    assert [w for _, _, w in calls] == fake.waits


async def test_on_retry_hook_not_called_for_permanent_errors() -> None:
    fake = FakeTime()
    calls: list[int] = []

    def hook(attempt: int, error: RequestError, wait: float) -> None:
        calls.append(attempt)

    with pytest.raises(HTTPStatusError):
        await call_with_retries(
            Flaky([HTTPStatusError(400, "")]), policy(), sleep=fake.sleep, clock=fake.clock, on_retry=hook
        )
    assert calls == []


async def test_on_retry_hook_not_called_after_the_last_attempt() -> None:
    fake = FakeTime()
    calls: list[int] = []

    def hook(attempt: int, error: RequestError, wait: float) -> None:
        calls.append(attempt)

    with pytest.raises(ConnectionLostError):
        await call_with_retries(
            AlwaysFails(), policy(max_attempts=3), sleep=fake.sleep, clock=fake.clock, on_retry=hook
        )
    assert calls == [1, 2]
