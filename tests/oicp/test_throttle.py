"""The sans-I/O Throttle (token bucket), and the Retry-After and hint rules of oicp._http and oicp._hints."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oicp._hints import hint_for
from oicp._http import parse_retry_after
from oicp._throttle import MAX_SLOWDOWN, Throttle

EPS = 1e-6


def execution_times(throttle: Throttle, call_times: list[float]) -> list[float]:
    """Reserve at each (non-decreasing) time; a call is made when its wait is over."""
    executed = []
    for now in call_times:
        wait = throttle.reserve(now)
        assert wait >= 0.0
        executed.append(now + wait)
    return executed


def max_in_window(times: list[float], length: float) -> int:
    """The largest number of times in any half-open window [t, t + length)."""
    ordered = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(ordered):
        j = max(j, i)
        while j < len(ordered) and ordered[j] < start + length:
            j += 1
        best = max(best, j - i)
    return best


# --- token bucket ------------------------------------------------------------------------------------


def test_burst_is_allowed_without_waiting() -> None:
    throttle = Throttle(600)  # 10 calls/s, burst 60
    assert throttle.rate == pytest.approx(10.0)
    assert throttle.burst == pytest.approx(60.0)
    assert [throttle.reserve(0.0) for _ in range(60)] == [0.0] * 60


def test_waits_grow_after_the_burst() -> None:
    throttle = Throttle(600)
    for _ in range(60):
        throttle.reserve(0.0)
    waits = [throttle.reserve(0.0) for _ in range(5)]
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


def test_small_limit_has_a_burst_of_one() -> None:
    throttle = Throttle(6)  # one call every 10 s
    assert throttle.burst == 1.0
    assert throttle.reserve(0.0) == 0.0
    assert throttle.reserve(0.0) == pytest.approx(10.0)
    assert throttle.reserve(0.0) == pytest.approx(20.0)


def test_tokens_refill_with_time_up_to_the_burst() -> None:
    throttle = Throttle(600)
    for _ in range(60):
        throttle.reserve(0.0)
    assert throttle.reserve(1.0) == 0.0  # 10 tokens came back after 1 s
    # A long quiet period refills to the burst only, not beyond it.
    assert [throttle.reserve(1000.0) for _ in range(60)] == [0.0] * 60
    assert throttle.reserve(1000.0) > 0.0


def test_clock_going_backwards_does_not_add_tokens() -> None:
    throttle = Throttle(6)
    assert throttle.reserve(100.0) == 0.0
    assert throttle.reserve(50.0) == pytest.approx(10.0)


def test_steady_calls_at_the_allowed_rate_never_wait() -> None:
    throttle = Throttle(60)  # one per second
    for _ in range(6):
        throttle.reserve(0.0)  # use up the burst
    waits = [throttle.reserve(10.0 + i) for i in range(100)]
    assert all(w == pytest.approx(0.0, abs=1e-9) for w in waits)


@st.composite
def call_times(draw: st.DrawFn) -> list[float]:
    """Non-decreasing call times in bursts: several calls at one instant, then a pause."""
    bursts = draw(
        st.lists(
            st.tuples(st.integers(min_value=1, max_value=60), st.floats(min_value=0.0, max_value=90.0)),
            min_size=1,
            max_size=12,
        )
    )
    now, times = 0.0, []
    for count, pause in bursts:
        times.extend([now] * count)
        now += pause
    return times


@given(calls_per_minute=st.integers(min_value=1, max_value=120), times=call_times())
def test_never_more_than_calls_per_minute_in_any_60_s(calls_per_minute: int, times: list[float]) -> None:
    executed = execution_times(Throttle(calls_per_minute), times)
    assert max_in_window(executed, 60.0 - EPS) <= calls_per_minute


@given(calls_per_minute=st.integers(min_value=1, max_value=10), times=call_times())
def test_burst_of_one_spaces_calls_evenly(calls_per_minute: int, times: list[float]) -> None:
    executed = execution_times(Throttle(calls_per_minute), times)
    spacing = 60.0 / calls_per_minute
    assert all(b - a >= spacing - EPS for a, b in itertools.pairwise(executed))


@given(
    calls_per_minute=st.integers(min_value=1, max_value=120),
    events=st.lists(
        st.tuples(
            st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=20.0)),
            st.sampled_from(["call", "call", "call", "429", "ok"]),
        ),
        max_size=400,
    ),
)
def test_limit_holds_while_the_rate_adapts(calls_per_minute: int, events: list[tuple[float, str]]) -> None:
    throttle = Throttle(calls_per_minute)
    now, executed = 0.0, []
    for gap, event in events:
        now += gap
        if event == "call":
            wait = throttle.reserve(now)
            assert wait >= 0.0
            executed.append(now + wait)
        elif event == "429":
            throttle.rate_limited()
        else:
            throttle.succeeded()
    assert max_in_window(executed, 60.0 - EPS) <= calls_per_minute


@given(
    calls_per_minute=st.integers(min_value=1, max_value=5000),
    times=call_times(),
    window=st.floats(min_value=0.001, max_value=120.0),
)
def test_token_bucket_bound_in_any_window(calls_per_minute: int, times: list[float], window: float) -> None:
    throttle = Throttle(calls_per_minute)
    executed = execution_times(throttle, times)
    # Executions happen in the order the calls were reserved.
    assert executed == sorted(executed)
    bound = throttle.burst + throttle.rate * window
    assert max_in_window(executed, window) <= math.floor(bound + EPS) + 1


def test_default_limit_never_exceeded_in_any_60_s_window() -> None:
    # 2000/min is the default max_calls_per_minute (Hubject's published limit); the bucket alone would
    # let its burst of 200 through on top of a minute's refill.
    throttle = Throttle(2000)
    executed = execution_times(throttle, [0.0] * 2500)
    assert max_in_window(executed, 60.0) <= 2000
    assert max_in_window(executed, 60.0 - EPS) == 2000  # the limit is used, not undershot
    assert executed[:200] == [0.0] * 200  # the burst still goes out at once


# --- reacting to 429 ---------------------------------------------------------------------------------


def test_rate_limited_halves_the_rate_down_to_a_sixteenth() -> None:
    throttle = Throttle(1200)
    full = throttle.rate
    rates = []
    for _ in range(6):
        throttle.rate_limited()
        rates.append(throttle.rate)
    assert rates == pytest.approx([full / 2, full / 4, full / 8, full / 16, full / 16, full / 16])
    assert throttle.slowdown == MAX_SLOWDOWN == 16.0


def test_rate_limited_slows_down_waits() -> None:
    throttle = Throttle(600)
    for _ in range(60):
        throttle.reserve(0.0)
    throttle.rate_limited()  # 5 calls/s
    assert throttle.reserve(0.0) == pytest.approx(0.2)


def test_rate_limited_shrinks_the_burst_already_saved() -> None:
    throttle = Throttle(600)
    assert throttle.reserve(0.0) == 0.0  # 59 tokens left
    throttle.rate_limited()  # burst is now 30
    assert throttle.burst == pytest.approx(30.0)
    assert [throttle.reserve(0.0) for _ in range(30)] == [0.0] * 30
    assert throttle.reserve(0.0) == pytest.approx(0.2)


def test_succeeded_recovers_gradually_to_the_full_rate() -> None:
    throttle = Throttle(600)
    full = throttle.rate
    throttle.rate_limited()
    rates = [throttle.rate]
    for _ in range(20):
        throttle.succeeded()
        rates.append(throttle.rate)
    assert rates[0] == pytest.approx(full / 2)
    assert rates[1] > rates[0]  # +5 % per success, not an instant reset
    assert rates[1] < full
    assert all(b >= a for a, b in itertools.pairwise(rates))
    assert rates[-1] == pytest.approx(full)
    assert throttle.slowdown == 1.0


def test_succeeded_never_exceeds_the_configured_rate() -> None:
    throttle = Throttle(600)
    for _ in range(10):
        throttle.succeeded()
    assert throttle.slowdown == 1.0
    assert throttle.rate == pytest.approx(10.0)


@given(st.lists(st.booleans(), max_size=100))
def test_slowdown_stays_between_1_and_16(events: list[bool]) -> None:
    throttle = Throttle(2000)
    for limited in events:
        if limited:
            throttle.rate_limited()
        else:
            throttle.succeeded()
        assert 1.0 <= throttle.slowdown <= MAX_SLOWDOWN
        assert 2000 / 60 / 16 - EPS <= throttle.rate <= 2000 / 60 + EPS


# --- parse_retry_after ------------------------------------------------------------------------------

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), ("1.5", 1.5), (" 120 ", 120.0), ("0", 0.0), ("-3", 0.0)],
)
def test_parse_retry_after_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_http_date_in_the_future() -> None:
    header = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    assert header == "Fri, 01 Mar 2024 12:00:30 GMT"
    assert parse_retry_after(header, now=NOW) == pytest.approx(30.0)


def test_parse_retry_after_http_date_literal() -> None:
    assert parse_retry_after("Fri, 01 Mar 2024 12:02:00 GMT", now=NOW) == pytest.approx(120.0)


def test_parse_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Fri, 01 Mar 2024 11:59:00 GMT", now=NOW) == 0.0


@pytest.mark.parametrize("value", ["soon", "five", "12 apples", "Fri, 99 Foo 2024", "nan", "inf", "1e999"])
def test_parse_retry_after_garbage_is_none(value: str) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize("value", [None, "", "   "])
def test_parse_retry_after_missing_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, now=NOW)
    assert result is None or (math.isfinite(result) and result >= 0.0)


@given(st.integers(min_value=0, max_value=10**6))
def test_parse_retry_after_integer_seconds_round_trip(seconds: int) -> None:
    assert parse_retry_after(str(seconds), now=NOW) == float(seconds)


# --- hint_for ---------------------------------------------------------------------------------------

API = "https://service-qa.hubject.com/api/oicp/evsepush/v23/operators/DE*ABC/status-records"


def test_hint_for_401_mentions_certificate_and_operator_id() -> None:
    hint = hint_for(status=401, code=None, url=API)
    assert hint is not None
    assert "certificate" in hint
    assert "OperatorID" in hint


def test_hint_for_code_017_mentions_certificate_and_the_operator() -> None:
    hint = hint_for(status=200, code="017", url=API, operator_id="DE*ABC")
    assert hint is not None
    assert "certificate" in hint
    assert "OperatorID DE*ABC" in hint


def test_hint_for_403_mentions_allow_list_and_ip() -> None:
    hint = hint_for(status=403, code=None, url=API)
    assert hint is not None
    assert "allow-list" in hint
    assert "IP" in hint


def test_hint_for_404_without_api_path_mentions_it() -> None:
    hint = hint_for(
        status=404, code=None, url="https://service-qa.hubject.com/evsepush/v23/operators/X/status"
    )
    assert hint is not None
    assert "/api/oicp" in hint


def test_hint_for_404_with_api_path_is_none() -> None:
    assert hint_for(status=404, code=None, url=API) is None


def test_hint_for_other_known_cases() -> None:
    rate = hint_for(status=429, code=None, url=API)
    assert rate is not None
    assert "rate limit" in rate
    unknown_evse = hint_for(status=200, code="603", url=API)
    assert unknown_evse is not None
    assert "eRoamingPushEvseData" in unknown_evse
    inconsistent = hint_for(status=200, code="018", url=API)
    assert inconsistent is not None
    assert "OperatorID" in inconsistent


@pytest.mark.parametrize(("status", "code"), [(500, None), (200, "001"), (None, None), (400, "022")])
def test_hint_for_unexplained_failures_is_none(status: int | None, code: str | None) -> None:
    assert hint_for(status=status, code=code, url=API) is None
