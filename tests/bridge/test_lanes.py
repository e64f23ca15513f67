"""The lane scheduler (bridge.lanes), pure: which step a lane takes for every combination of what is due,
and that a failing lane never asks Hubject more than once per backoff step."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.lanes import (
    Flush,
    LaneView,
    Resync,
    ResyncReason,
    Settle,
    Sleep,
    Timing,
    Wait,
    backoff,
    next_step,
    request_floor,
)

T = Timing(flush_interval=1.0, max_batch=100)
NOW = 1_000.0


@pytest.mark.parametrize(
    ("view", "step"),
    [
        (LaneView(), Wait()),
        (LaneView(pending=1, first_unpushed_at=NOW - 0.4), Sleep(0.6)),  # the max-wait from the first
        (LaneView(pending=1, first_unpushed_at=NOW - 1.0), Flush()),
        (LaneView(pending=100, first_unpushed_at=NOW), Flush()),  # a full batch goes at once
        (LaneView(pending=1, first_unpushed_at=NOW - 5, request_floor=NOW + 3), Sleep(3.0)),  # backoff
        (LaneView(resync_requested=True), Resync(ResyncReason.REQUESTED)),
        (LaneView(resync_requested=True, request_floor=NOW + 2), Sleep(2.0)),  # Retry-After is a floor
        (LaneView(first_fullload_at=NOW), Resync(ResyncReason.FIRST_START)),
        (LaneView(first_fullload_at=NOW + 4), Sleep(4.0)),
        # statuses go first, as updates, before the first fullLoad
        (LaneView(pending=2, first_unpushed_at=NOW - 2, first_fullload_at=NOW), Flush()),
        (LaneView(pending=2, first_unpushed_at=NOW, first_fullload_at=NOW - 9), Sleep(1.0)),
        (LaneView(settle_at=NOW), Settle()),
        (LaneView(settle_at=NOW, request_floor=NOW + 9), Settle()),  # a store step: no request
        (LaneView(settle_at=NOW + 7), Sleep(7.0)),
        (LaneView(settle_fullload_at=NOW), Resync(ResyncReason.SETTLE)),
        (LaneView(scheduled_resync_at=NOW), Resync(ResyncReason.SCHEDULE)),
        (LaneView(scheduled_resync_at=NOW + 60), Sleep(60.0)),
        (LaneView(scheduled_resync_at=NOW + 60, request_floor=NOW + 90), Sleep(90.0)),
        # a requested resync wins over a due flush; a flush wins over the schedule
        (
            LaneView(pending=1, first_unpushed_at=NOW - 2, resync_requested=True),
            Resync(ResyncReason.REQUESTED),
        ),
        (LaneView(pending=1, first_unpushed_at=NOW - 2, scheduled_resync_at=NOW - 1), Flush()),
    ],
)
def test_next_step(view: LaneView, step: object) -> None:
    got = next_step(view, NOW, T)
    if isinstance(step, Sleep):
        assert isinstance(got, Sleep)
        assert got.seconds == pytest.approx(step.seconds)
    else:
        assert got == step


maybe_time = st.none() | st.floats(NOW - 100, NOW + 100)


@given(
    st.integers(0, 200), maybe_time, st.floats(NOW - 100, NOW + 100), st.booleans(), maybe_time, maybe_time,
    maybe_time, maybe_time,
)  # fmt: skip
def test_every_combination_gives_a_step_and_nothing_hubject_bound_before_the_floor(
    pending: int,
    first: float | None,
    floor: float,
    requested: bool,
    first_fullload: float | None,
    settle_at: float | None,
    settle_fullload: float | None,
    scheduled: float | None,
) -> None:
    view = LaneView(pending, first, floor, requested, first_fullload, settle_at, settle_fullload, scheduled)
    step = next_step(view, NOW, T)
    if isinstance(step, (Flush, Resync)):
        assert floor <= NOW
    if isinstance(step, Sleep):
        assert step.seconds > 0
    if isinstance(step, Wait):
        assert not requested
        assert settle_at is None
        assert scheduled is None
        assert settle_fullload is None


@given(st.integers(1, 40), st.floats(0.01, 10), st.floats(0.1, 600), st.integers(0, 2**32))
def test_backoff_grows_is_capped_and_never_less_than_half_its_step(
    failures: int, base: float, cap: float, seed: int
) -> None:
    wait = backoff(failures, base=base, cap=cap, rng=random.Random(seed))
    step = min(cap, base * 2.0 ** (failures - 1))
    assert step / 2 <= wait <= step + 1e-9


def test_retry_after_is_a_floor_even_beyond_the_cap() -> None:
    floor = request_floor(NOW, 1, 600.0, retryable=True, base=1.0, cap=60.0, rng=random.Random(1))
    assert floor == NOW + 600.0
    assert request_floor(NOW, 1, None, retryable=False, base=1.0, cap=60.0, rng=random.Random(1)) == NOW + 60


@settings(max_examples=200)
@given(st.integers(0, 2**32), st.sampled_from([None, 0.5, 30.0]), st.floats(0.05, 5))
def test_a_lane_that_keeps_failing_asks_at_most_once_per_backoff_step(
    seed: int, retry_after: float | None, flush: float
) -> None:
    """Simulated time: the lane always has work, every request fails; requests are spaced by at least
    half of the growing step (and by Retry-After), so a minute holds only a handful of them."""
    rng = random.Random(seed)
    timing = Timing(flush_interval=flush, max_batch=100)
    now, floor, failures, requests = 0.0, 0.0, 0, []
    for _ in itertools.repeat(None, 200):
        view = LaneView(pending=5, first_unpushed_at=0.0, request_floor=floor, scheduled_resync_at=0.0)
        step = next_step(view, now, timing)
        if isinstance(step, Sleep):
            now += step.seconds
            continue
        assert isinstance(step, (Flush, Resync))
        requests.append(now)
        failures += 1
        floor = request_floor(now, failures, retry_after, retryable=True, base=1.0, cap=60.0, rng=rng)
    for n, (earlier, later) in enumerate(itertools.pairwise(requests), start=1):
        width = min(60.0, 2.0 ** (n - 1))
        assert later - earlier >= max(width / 2, retry_after or 0.0) - 1e-9
    in_first_minute = sum(1 for t in requests if t < 60.0)
    assert in_first_minute <= 8
