"""Client-side rate limiting within Hubject's published limits. Sans-I/O: the caller passes the time.

Hubject's Acceptable Use Policy allows 2000 PushEVSEStatus calls per minute and asks clients to "control
traffic to Hubject at a global level and throttle it back if You detect substantial rate limiting".
``Throttle`` is a token bucket refilled at ``calls_per_minute / 60`` per second (with a burst of at most
one tenth of a minute's allowance) that smooths traffic, and a sliding 60-second window that makes the
published limit hard: however calls arrive, no 60 seconds ever hold more than ``calls_per_minute`` of
them (Hubject counts per minute; the bucket alone would allow a minute's rate plus its burst). Every 429
halves the effective rate (down to 1/16); every success recovers it by 5 %, so sustained rate limiting
slows all calls down and a quiet period restores them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

MAX_SLOWDOWN = 16.0
WINDOW = 60.0


@dataclass
class Throttle:
    calls_per_minute: int
    slowdown: float = 1.0
    _tokens: float = field(default=-1.0, repr=False)
    _updated: float | None = field(default=None, repr=False)
    _scheduled: deque[float] = field(default_factory=deque, repr=False)

    @property
    def rate(self) -> float:
        """Calls per second currently allowed."""
        return self.calls_per_minute / 60.0 / self.slowdown

    @property
    def burst(self) -> float:
        return max(1.0, self.calls_per_minute / 10.0 / self.slowdown)

    def reserve(self, now: float) -> float:
        """Take one call's token; return how many seconds the caller must wait before making it."""
        self._refill(now)
        self._tokens -= 1.0
        at = now if self._tokens >= 0 else now + -self._tokens / self.rate
        limit = max(1, math.floor(self.calls_per_minute / self.slowdown))
        while len(self._scheduled) > limit or (self._scheduled and self._scheduled[0] <= at - WINDOW):
            self._scheduled.popleft()
        if len(self._scheduled) >= limit:
            at = max(at, self._scheduled[-limit] + WINDOW)
        self._scheduled.append(at)
        return at - now

    def rate_limited(self) -> None:
        self.slowdown = min(MAX_SLOWDOWN, self.slowdown * 2.0)
        self._tokens = min(self._tokens, self.burst)

    def succeeded(self) -> None:
        self.slowdown = max(1.0, self.slowdown * 0.95)

    def _refill(self, now: float) -> None:
        if self._updated is None:
            self._tokens, self._updated = self.burst, now
            return
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._updated = now
