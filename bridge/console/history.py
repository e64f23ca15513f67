"""In-memory history for the console's charts: one sample every ``interval`` seconds, the last ``keep``
seconds of them (default two hours). Sampled by a task the admin app owns (aiohttp ``cleanup_ctx``);
lost on restart, which is fine for "what happened in the last hour" (Prometheus keeps the long view).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

DEFAULT_INTERVAL = 10.0
DEFAULT_KEEP = 7200.0


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # wall clock seconds
    backlog: dict[str, int]  # per operator: records Hubject has not acknowledged
    oldest_age: dict[str, float]  # per operator: seconds the oldest of them has waited
    push_latency: float | None  # mean duration of the pushes finished since the previous sample


class History:
    def __init__(self, *, interval: float = DEFAULT_INTERVAL, keep: float = DEFAULT_KEEP) -> None:
        self.interval = interval
        self.keep = keep
        self.samples: deque[Sample] = deque(maxlen=max(2, int(keep / interval) + 1))
        self._latency_totals: tuple[float, float] | None = None

    def add(
        self,
        at: float,
        backlog: dict[str, int],
        oldest_age: dict[str, float],
        latency_totals: tuple[float, float],
    ) -> Sample:
        """Record one sample; ``latency_totals`` is the push-duration histogram's (sum, count) now."""
        sample = Sample(at, backlog, oldest_age, mean_since(self._latency_totals, latency_totals))
        self._latency_totals = latency_totals
        self.samples.append(sample)
        return sample

    def series(self, what: str) -> dict[str, list[tuple[float, float]]]:
        """Per operator, ``(at, value)`` of ``backlog`` or ``oldest_age``; ``push_latency`` under "all"."""
        if what == "push_latency":
            return {"all": [(s.at, s.push_latency) for s in self.samples if s.push_latency is not None]}
        out: dict[str, list[tuple[float, float]]] = {}
        for sample in self.samples:
            values: dict[str, Any] = getattr(sample, what)
            for operator_id, value in values.items():
                out.setdefault(operator_id, []).append((sample.at, float(value)))
        return out

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {"at": s.at, "backlog": s.backlog, "oldest_age_s": s.oldest_age, "push_latency_s": s.push_latency}
            for s in self.samples
        ]


def mean_since(before: tuple[float, float] | None, now: tuple[float, float]) -> float | None:
    """Mean of the observations between two (sum, count) readings of a histogram; None if there were none."""
    if before is None:
        return None
    count = now[1] - before[1]
    return None if count <= 0 else max(0.0, (now[0] - before[0]) / count)
