"""Fault injection for the Hubject simulator, decided without I/O (the clock and the dice are injected).

A test or a user switches faults on by rate (drawn from a seeded ``random.Random``, so runs repeat) or
queues one-shot faults that hit the next requests in order. ``calls_per_minute`` plays Hubject's own rate
limit (Acceptable Use Policy, "Limits per eRoaming operation": PushEVSEStatus 2000 calls per minute):
past it, requests are answered 429 until the sliding 60-second window has room again.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    SERVER_ERROR = "5xx"  # HTTP error_5xx_status (503 carries Retry-After)
    RATE_LIMIT = "429"  # HTTP 429 with Retry-After
    HANG = "hang"  # never answer
    DROP = "drop"  # close the connection without an answer
    REJECT = "reject"  # HTTP 200, Acknowledgement Result=false with reject_code
    SLOW = "slow"  # answer normally after slow_latency seconds


@dataclass
class Faults:
    seed: int = 0
    error_5xx_rate: float = 0.0
    error_5xx_status: int = 500
    rate_limit_rate: float = 0.0
    retry_after: float | None = 1.0
    latency: float = 0.0
    slow_latency: float = 5.0
    hang_rate: float = 0.0
    drop_rate: float = 0.0
    reject_rate: float = 0.0
    reject_code: str = "001"
    calls_per_minute: int | None = None
    queue: deque[FaultKind] = field(default_factory=deque)

    def as_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "error_5xx_rate": self.error_5xx_rate,
            "error_5xx_status": self.error_5xx_status,
            "rate_limit_rate": self.rate_limit_rate,
            "retry_after": self.retry_after,
            "latency": self.latency,
            "slow_latency": self.slow_latency,
            "hang_rate": self.hang_rate,
            "drop_rate": self.drop_rate,
            "reject_rate": self.reject_rate,
            "reject_code": self.reject_code,
            "calls_per_minute": self.calls_per_minute,
            "queue": [kind.value for kind in self.queue],
        }


# The order in which rate-drawn faults are considered for one request.
_RATED: tuple[tuple[FaultKind, str], ...] = (
    (FaultKind.DROP, "drop_rate"),
    (FaultKind.HANG, "hang_rate"),
    (FaultKind.SERVER_ERROR, "error_5xx_rate"),
    (FaultKind.RATE_LIMIT, "rate_limit_rate"),
    (FaultKind.REJECT, "reject_rate"),
)


class FaultDecider:
    """Decides, per request, which fault (if any) hits it."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._seed = faults.seed
        self._calls: dict[str, deque[float]] = {}

    def decide(self, operation: str, now: float) -> FaultKind | None:
        if self._seed != self.faults.seed:
            self._rng, self._seed = random.Random(self.faults.seed), self.faults.seed
        if self._over_rate_limit(operation, now):
            return FaultKind.RATE_LIMIT
        if self.faults.queue:
            return self.faults.queue.popleft()
        for kind, attribute in _RATED:
            rate: float = getattr(self.faults, attribute)
            if rate > 0 and self._rng.random() < rate:
                return kind
        return None

    def _over_rate_limit(self, operation: str, now: float) -> bool:
        limit = self.faults.calls_per_minute
        if limit is None:
            return False
        window = self._calls.setdefault(operation, deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= limit:
            return True
        window.append(now)
        return False

    def seconds_until_window_frees(self, operation: str, now: float) -> float:
        window = self._calls.get(operation)
        if not window:
            return 0.0
        return max(0.0, window[0] + 60.0 - now)
