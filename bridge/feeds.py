"""Feed health: is the OCPI input alive? One entry per polled source and per pushing party.

A CPO feed that died looks, from Hubject's side, exactly like a quiet fleet: statuses simply stop changing.
The tracker tells the two apart by the last sign of life of each feed: for a polled source
(``[[ocpi.sources]]``) a complete poll, for a pushing party an accepted Locations write. A feed without a
sign of life for longer than ``[ocpi] stale_after`` is *stale* (0 turns the check off). Staleness never
makes ``/ready`` fail: the bridge itself is healthy and restarting it would not revive a CPO's feed; it is
shown on the console, in ``status`` and as ``oicp_bridge_feed_stale`` (docs/operations.md).

The tracker is in memory (counts restart with the process); a polled source's last complete poll and last
error also live in the store (``ocpi_sender_poll``) and are merged in by ``bridge.status``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from aiohttp import web

UNKNOWN_PARTY = "unknown"  # rejected requests whose URL names no known party (keeps labels bounded)
_LOCATIONS = "/locations/"
_WRITES = frozenset({"PUT", "PATCH"})


class FeedKind(StrEnum):
    POLL = "poll"  # the bridge polls a CPO's Locations sender
    PUSH = "push"  # a CPO pushes to the bridge's Locations receiver


@dataclass(frozen=True, slots=True)
class FeedState:
    """What is known about one feed. Times are wall clock seconds (display and staleness only)."""

    kind: FeedKind
    name: str  # the versions_url of a polled source, "CC/PID" of a pushing party
    requests: int = 0
    errors: int = 0
    rejected_auth: int = 0
    changes: int = 0
    last_success_at: float | None = None  # last sign of life: complete poll / accepted write
    last_change_at: float | None = None  # last poll that changed something / last accepted write
    last_error: str | None = None
    last_error_at: float | None = None


@dataclass(frozen=True, slots=True)
class FeedReport:
    state: FeedState
    silent_for: float  # seconds since the last sign of life (since the bridge started, if none yet)
    stale: bool
    failing: bool  # the last thing that happened was an error


def silence(last_alive: float | None, started_at: float, now: float) -> float:
    """Seconds a feed has been silent: counted from its last sign of life, or from the start."""
    return max(0.0, now - (started_at if last_alive is None else max(last_alive, started_at)))


def is_stale(last_alive: float | None, started_at: float, now: float, threshold: float) -> bool:
    """Stale when silent for longer than ``threshold`` seconds; ``threshold`` 0 turns the rule off."""
    return threshold > 0 and silence(last_alive, started_at, now) > threshold


class FeedHealth:
    """The tracker; the receiver middleware and the pollers report to it, the admin app reads it."""

    def __init__(
        self,
        *,
        stale_after: float,
        sources: Iterable[str] = (),
        parties: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self.started_at = clock()
        self._feeds: dict[tuple[FeedKind, str], FeedState] = {}
        for source in sources:
            self._feeds[(FeedKind.POLL, source)] = FeedState(FeedKind.POLL, source)
        for party in parties:
            self._feeds[(FeedKind.PUSH, party)] = FeedState(FeedKind.PUSH, party)
        self.rejected_unknown = 0  # rejected tokens on URLs that name no known party

    def _update(self, kind: FeedKind, name: str, **changes: object) -> None:
        state = self._feeds.get((kind, name), FeedState(kind, name))
        self._feeds[(kind, name)] = replace(state, **changes)  # type: ignore[arg-type]

    def _get(self, kind: FeedKind, name: str) -> FeedState:
        return self._feeds.get((kind, name), FeedState(kind, name))

    def know_party(self, party: str) -> None:
        """A party that may push (registered through the credentials module): tracked from now on, so its
        silence shows even before its first request."""
        self._feeds.setdefault((FeedKind.PUSH, party), FeedState(FeedKind.PUSH, party))

    # --- what the pollers report ----------------------------------------------------------------------

    def polled(self, source: str, changed: int) -> None:
        """A complete poll of ``source``; ``changed`` Locations changed the store."""
        now, state = self.clock(), self._get(FeedKind.POLL, source)
        self._update(
            FeedKind.POLL,
            source,
            requests=state.requests + 1,
            changes=state.changes + changed,
            last_success_at=now,
            last_change_at=now if changed else state.last_change_at,
        )

    def poll_failed(self, source: str, error: str) -> None:
        now, state = self.clock(), self._get(FeedKind.POLL, source)
        self._update(
            FeedKind.POLL,
            source,
            requests=state.requests + 1,
            errors=state.errors + 1,
            last_error=error,
            last_error_at=now,
        )

    # --- what the receiver reports ----------------------------------------------------------------------

    def pushed(self, party: str) -> None:
        """``party`` wrote to the Locations receiver and the store accepted it. (Built field by field, not
        with ``dataclasses.replace``: this runs for every accepted OCPI write.)"""
        now, key = self.clock(), (FeedKind.PUSH, party)
        s = self._feeds.get(key) or FeedState(FeedKind.PUSH, party)
        self._feeds[key] = FeedState(
            s.kind, s.name, s.requests + 1, s.errors, s.rejected_auth, s.changes + 1, now, now, s.last_error,
            s.last_error_at,
        )  # fmt: skip

    def push_read(self, party: str) -> None:
        """An authenticated request that changed nothing (a GET): alive, but no change."""
        now, state = self.clock(), self._get(FeedKind.PUSH, party)
        self._update(FeedKind.PUSH, party, requests=state.requests + 1, last_success_at=now)

    def push_failed(self, party: str, error: str) -> None:
        now, state = self.clock(), self._get(FeedKind.PUSH, party)
        self._update(
            FeedKind.PUSH,
            party,
            requests=state.requests + 1,
            errors=state.errors + 1,
            last_error=error,
            last_error_at=now,
        )

    def rejected(self, party: str | None) -> None:
        """A request with a missing or wrong token. Attributed to the party its URL names only when that
        party is known: the URL is chosen by whoever sent it, and labels must stay bounded."""
        if party is not None and (FeedKind.PUSH, party) in self._feeds:
            state = self._get(FeedKind.PUSH, party)
            self._update(FeedKind.PUSH, party, rejected_auth=state.rejected_auth + 1)
        else:
            self.rejected_unknown += 1

    # --- what the admin app reads -------------------------------------------------------------------------

    def report(
        self, now: float, *, stored_polls: dict[str, tuple[float | None, str | None, float | None]]
    ) -> list[FeedReport]:
        """Every feed, polled sources first. ``stored_polls``: per source, the store's last complete poll,
        last error and its time (they survive a restart; the in-memory ones do not)."""
        reports = []
        for (kind, name), state in sorted(self._feeds.items()):
            if kind is FeedKind.POLL and name in stored_polls:
                success, error, error_at = stored_polls[name]
                state = _merge_stored(state, success, error, error_at)
            alive = state.last_success_at
            failing = state.last_error_at is not None and (alive is None or state.last_error_at > alive)
            reports.append(
                FeedReport(
                    state,
                    round(silence(alive, self.started_at, now), 3),
                    is_stale(alive, self.started_at, now, self.stale_after),
                    failing,
                )
            )
        return reports


def _merge_stored(
    state: FeedState, success: float | None, error: str | None, error_at: float | None
) -> FeedState:
    if success is not None and (state.last_success_at is None or success > state.last_success_at):
        state = replace(state, last_success_at=success)
    if error_at is not None and (state.last_error_at is None or error_at > state.last_error_at):
        state = replace(state, last_error=error, last_error_at=error_at)
    return state


AnswerObserver = Callable[[web.Request, int, "web.StreamResponse | web.HTTPException"], None]


def answer_observer(feeds: FeedHealth) -> AnswerObserver:
    """What the OCPI receiver calls with the final HTTP status of every answer it gives (its one
    middleware, ``bridge.ocpi.receiver``), so each Locations request is reported to ``feeds``."""
    return functools.partial(_observe, feeds)


def _observe(
    feeds: FeedHealth, request: web.Request, status: int, answer: web.StreamResponse | web.HTTPException
) -> None:
    """``answer``'s reason is read only for a failure (working it out for every success costs)."""
    cc, pid = request.match_info.get("cc"), request.match_info.get("pid")
    party = f"{cc.upper()}/{pid.upper()}" if cc and pid else None
    if status == 401:
        feeds.rejected(party)
        return
    if party is None or _LOCATIONS not in request.path:
        return
    if status >= 400:
        # 403 (the token belongs to another party) is not this party's failure either: count it for the
        # party the URL names only if known, like a rejected token.
        if status == 403:
            feeds.rejected(party)
        else:
            feeds.push_failed(party, f"HTTP {status} {answer.reason} on {request.method} {request.path}")
    elif request.method in _WRITES:
        feeds.pushed(party)
    else:
        feeds.push_read(party)
