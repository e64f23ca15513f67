"""When an operator's lane does what: the pure scheduler of the dispatcher. No I/O, no clock: ``now`` is
the caller's monotonic clock (waits, backoffs and deadlines never use wall time, so a clock step cannot stall
a lane).

``next_step(view, now, timing)`` answers one of:
- ``Resync(reason)``: send a fullLoad (requested, first start, settle, schedule);
- ``Flush``: claim and push one batch of pending records;
- ``Settle``: make doubtful delivered rows pending again (a store step; no request to Hubject);
- ``Sleep(seconds)``: nothing is due before then (or Hubject must not be asked before then);
- ``Wait``: nothing is due until something new happens.

Every request to Hubject waits for ``view.request_floor``: the lane's backoff after a failure and any
``Retry-After`` Hubject gave, whichever is later, so a failing lane sends at most one request per backoff
step (docs/architecture.md).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class ResyncReason(StrEnum):
    REQUESTED = "requested"
    FIRST_START = "first start"
    SETTLE = "settle"  # a fullLoad whose outcome was unknown may land late: send the set once more
    SCHEDULE = "schedule"


@dataclass(frozen=True, slots=True)
class Flush:
    pass


@dataclass(frozen=True, slots=True)
class Resync:
    reason: ResyncReason


@dataclass(frozen=True, slots=True)
class Settle:
    pass


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Wait:
    pass


Step = Flush | Resync | Settle | Sleep | Wait


@dataclass(frozen=True, slots=True)
class Timing:
    flush_interval: float  # the max-wait of a pending change
    max_batch: int


@dataclass(frozen=True, slots=True)
class LaneView:
    """What the scheduler reads of a lane; every time is on the monotonic clock."""

    pending: int = 0  # records that may be pending (an upper bound: the store has the truth)
    first_unpushed_at: float | None = None  # when the oldest change not yet pushed arrived
    request_floor: float = 0.0  # no request to Hubject before this (backoff, Retry-After)
    resync_requested: bool = False
    first_fullload_at: float | None = None  # when the first fullLoad may run (None: not due or not yet)
    settle_at: float | None = None  # when doubtful delivered rows are pushed once more
    settle_fullload_at: float | None = None  # when a fullLoad with an unknown outcome is sent once more
    scheduled_resync_at: float | None = None  # the next scheduled fullLoad


def next_step(view: LaneView, now: float, timing: Timing) -> Step:
    flush_at: float | None = None
    if view.pending > 0 and view.first_unpushed_at is not None:
        flush_at = now if view.pending >= timing.max_batch else view.first_unpushed_at + timing.flush_interval
    first_at = view.first_fullload_at if view.pending == 0 else None  # statuses first, as updates
    # Hubject-bound steps, in the order they win when several are due
    candidates: list[tuple[float | None, Step]] = [
        (now if view.resync_requested else None, Resync(ResyncReason.REQUESTED)),
        (first_at, Resync(ResyncReason.FIRST_START)),
        (view.settle_fullload_at, Resync(ResyncReason.SETTLE)),
        (flush_at, Flush()),
        (view.scheduled_resync_at, Resync(ResyncReason.SCHEDULE)),
    ]
    if view.settle_at is not None and view.settle_at <= now:
        return Settle()
    due = [step for at, step in candidates if at is not None and at <= now]
    if due:
        if view.request_floor > now:
            return Sleep(view.request_floor - now)
        return due[0]
    deadlines = [at for at, _ in candidates if at is not None]
    if view.settle_at is not None:
        deadlines.append(view.settle_at)
    if not deadlines:
        return Wait()
    return Sleep(max(min(deadlines), view.request_floor) - now)


def backoff(failures: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` consecutive failures: exponential from ``base``, capped at ``cap``,
    with "equal jitter" (half fixed, half random), so retries of many bridges spread out and a lane never
    retries sooner than half its step."""
    if failures <= 0:
        return 0.0
    step = min(cap, base * 2.0 ** min(failures - 1, 30))
    return step / 2 + rng.uniform(0.0, step / 2)


def request_floor(
    now: float, failures: int, retry_after: float | None, *, retryable: bool, base: float, cap: float,
    rng: random.Random,
) -> float:  # fmt: skip
    """When the lane may next ask Hubject after a failure: the backoff (the cap at once for a failure that
    repeating will not fix, e.g. 017 unauthorised), and never before a ``Retry-After`` — even one beyond the
    cap or the client's retry budget (Hubject's Acceptable Use Policy)."""
    wait = cap if not retryable else backoff(failures, base=base, cap=cap, rng=rng)
    return now + max(wait, retry_after or 0.0)


def on_monotonic(wall_at: float, now: float, wall_now: float) -> float:
    """A moment the store keeps on the wall clock (a doubt's end, the next scheduled fullLoad) as a deadline
    on the monotonic clock ``now``: as far ahead as it is; at once if it is past."""
    return now + max(0.0, wall_at - wall_now)


def sooner(current: float | None, at: float) -> float:
    """The earlier of a lane's deadline (None: none set) and ``at``."""
    return at if current is None else min(current, at)
