"""Leadership leases, the pure rules: who holds a name (an operator's push lane, a polled source) until when,
with which fencing token, and when a holder must renew or stop.

Contract "Several replicas": for each operator exactly one replica at a time pushes to Hubject (OICP forbids
parallel pushes per operator), and when it dies another takes over within ``[store] lease``. The rules, in
two clocks:

- The lease row (``Lease``) lives in the database and is judged on the *database server's* clock: it is held
  while ``now < expires_at``. ``claim`` gives it to a candidate when it is free or expired, renews it for its
  holder, and refuses anyone else. The fencing ``token`` grows by one each time the lease starts anew (a new
  holder, or the same holder after it expired), so a write stamped with an older token is recognisable.
- The holder judges its own lease on *its* monotonic clock (``HeldLease``): it counts the lease from the
  moment it *asked*, which is no later than the server's ``now`` when the server granted it, so its local end
  (``asked_at + duration``) comes no later than the server's ``expires_at``. It acts only until that end less
  a safety ``margin`` (clock rate drift, the time between its check and its request), and so it stops before
  anyone else can claim the lease, even when it cannot reach the database to learn anything.
- ``fence_ok`` is the check a holder's write makes in the same transaction as the write (e.g. marking records
  delivered): a holder whose lease passed to another, or expired, fails it and its write changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bridge.errors import StoreError

NOBODY = ""


class LeaseLostError(StoreError):
    """A fenced write was refused: the writer no longer holds the lease (token or holder differ, or it
    expired). Nothing of that write was committed."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease row: ``holder`` (``NOBODY`` before the first claim) holds ``name`` with fencing ``token``
    until ``expires_at`` (seconds, the database server's clock)."""

    name: str
    holder: str
    token: int
    expires_at: float

    def held_at(self, now: float) -> bool:
        return self.holder != NOBODY and now < self.expires_at


def claim(current: Lease | None, name: str, candidate: str, now: float, duration: float) -> Lease | None:
    """The row after ``candidate`` claims ``name`` at ``now`` (server clock), or None if another holds it.

    A free or expired lease starts anew for the candidate with the next token; the holder's own claim renews
    it (same token; the end never moves earlier)."""
    if duration <= 0:
        raise ValueError(f"a lease lasts a positive time, not {duration}")
    if not candidate:
        raise ValueError("a lease holder has a name")
    if current is None:
        return Lease(name, candidate, 1, now + duration)
    if current.held_at(now):
        if current.holder != candidate:
            return None
        return replace(current, expires_at=max(current.expires_at, now + duration))
    return Lease(name, candidate, current.token + 1, now + duration)


def release(current: Lease, holder: str, token: int, now: float) -> Lease | None:
    """The row after its holder gives the lease up at ``now`` (it expires at once; the next claim starts a
    new token), or None if ``holder``/``token`` do not hold it (nothing to release)."""
    if not fence_ok(current, holder, token, now):
        return None
    return replace(current, expires_at=now)


def fence_ok(current: Lease | None, holder: str, token: int, now: float) -> bool:
    """Whether a write by ``holder`` under ``token`` may commit at ``now`` (server clock): it still holds the
    lease, with that very token."""
    return (
        current is not None and current.holder == holder and current.token == token and current.held_at(now)
    )


@dataclass(frozen=True, slots=True)
class HeldLease:
    """A holder's own view of a lease it was granted: ``token`` to fence its writes with, and the moment
    (its monotonic clock) from which it must no longer act."""

    name: str
    holder: str
    token: int
    valid_until: float


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """``duration``: ``[store] lease``; a holder renews every ``duration / renewals`` and stops acting
    ``margin`` before its lease's local end (default: a tenth of the lease)."""

    duration: float = 10.0
    renewals: int = 3
    margin: float | None = None

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise ValueError(f"a lease lasts a positive time, not {self.duration}")
        if self.renewals < 2:
            raise ValueError(
                "a lease is renewed at least twice per duration (one lost renewal must not lose it)"
            )
        if self.margin is not None and not 0 <= self.margin < self.duration:
            raise ValueError(f"the margin must be within [0, {self.duration}), not {self.margin}")

    @property
    def safety_margin(self) -> float:
        return self.duration / 10 if self.margin is None else self.margin

    @property
    def renew_interval(self) -> float:
        return self.duration / self.renewals

    def held(self, granted: Lease, asked_at: float) -> HeldLease:
        """The holder's view of ``granted``, claimed by a request sent at ``asked_at`` (its monotonic clock).
        Counting from the request, not the answer, keeps the local end before the server's."""
        return HeldLease(granted.name, granted.holder, granted.token, asked_at + self.duration)

    def may_act(self, held: HeldLease | None, now: float) -> bool:
        """Whether the holder may still act (push, poll) at ``now`` (its monotonic clock)."""
        return held is not None and now < held.valid_until - self.safety_margin

    def renew_due(self, held: HeldLease, now: float) -> bool:
        """Whether the holder should renew at ``now``: a renewal interval has passed since it last asked."""
        asked_at = held.valid_until - self.duration
        return now >= asked_at + self.renew_interval
