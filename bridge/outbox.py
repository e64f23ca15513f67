"""The outbox's rules: ordering, coalescing, when a lane flushes, how batches are cut and split, the
fullLoad guard. Pure: no I/O, no clock (the caller passes ``now``). The durable queue that applies these
rules lives in ``bridge.store.outbox``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bridge.mapping import Action
from oicp.ids import EvseID
from oicp.models import EvseStatus

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch (UTC; a naive datetime counts as UTC): how the store keeps and
    compares ``last_updated``. Exact (integer timedelta division), unlike ``timestamp()`` floats."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MICROSECOND


class RecordState(StrEnum):
    PENDING = "pending"  # to be pushed
    IN_FLIGHT = "in_flight"  # being pushed (pending again after a restart)
    DELIVERED = "delivered"  # Hubject acknowledged this version
    DEAD = "dead"  # Hubject refused the record permanently; the reason is kept
    PARKED = "parked"  # Hubject has no EVSE data for it (603): retried at the next fullLoad


@dataclass(frozen=True, slots=True)
class Stored:
    """What the outbox holds for one EVSE, as far as the ordering rule needs it."""

    action: Action
    status: EvseStatus | None
    last_updated_us: int


@dataclass(frozen=True, slots=True)
class Incoming:
    action: Action
    status: EvseStatus | None
    last_updated_us: int


class Verdict(StrEnum):
    IGNORE_OLDER = "older than what is stored"
    IGNORE_DUPLICATE = "same as what is stored"
    ACCEPT = "accept"


def judge(stored: Stored | None, incoming: Incoming) -> Verdict:
    """OCPI ``last_updated`` orders observations of one EVSE (docs/mapping.md, "Order"): an older one never
    overwrites a newer one; a repeat of what is stored changes nothing. At an equal timestamp a different
    content wins (the CPO sent two states within one timestamp tick; the later arrival is its latest word).
    """
    if stored is None:
        return Verdict.ACCEPT
    if incoming.last_updated_us < stored.last_updated_us:
        return Verdict.IGNORE_OLDER
    if (incoming.action, incoming.status) == (stored.action, stored.status):
        return (
            Verdict.IGNORE_DUPLICATE if incoming.last_updated_us == stored.last_updated_us else Verdict.ACCEPT
        )
    return Verdict.ACCEPT


def needs_push(
    incoming: Incoming, delivered_action: Action | None, delivered_status: EvseStatus | None
) -> bool:
    """Whether Hubject must hear of ``incoming``: not if it already holds exactly that.

    A delete of an EVSE Hubject never received (or already withdrew) needs no request.
    """
    if incoming.action is Action.DELETE:
        return delivered_action is Action.UPDATE
    return (delivered_action, delivered_status) != (Action.UPDATE, incoming.status)


def flush_due_in(
    oldest_pending_since: float | None, pending: int, now: float, flush_interval: float, max_batch: int
) -> float | None:
    """Seconds until a lane must push (0: now), None if nothing is pending.

    A max-wait, not a debounce: the clock starts when the oldest pending record became pending, and new
    changes never postpone it, so a busy fleet cannot starve the push.
    """
    if pending <= 0 or oldest_pending_since is None:
        return None
    if pending >= max_batch:
        return 0.0
    return max(0.0, oldest_pending_since + flush_interval - now)


@dataclass(frozen=True, slots=True)
class Record:
    """One pending record as the dispatcher pushes it."""

    evse_id: EvseID
    action: Action
    status: EvseStatus | None
    version: int


def split_by_action(records: Iterable[Record]) -> tuple[list[Record], list[Record]]:
    """(updates, deletes): one OICP request carries one ActionType."""
    updates = [r for r in records if r.action is Action.UPDATE]
    deletes = [r for r in records if r.action is Action.DELETE]
    return updates, deletes


def halves(records: Sequence[Record]) -> tuple[Sequence[Record], Sequence[Record]]:
    """Split a refused batch to find the records Hubject refuses (binary search, log2(n) extra pushes)."""
    middle = len(records) // 2
    return records[:middle], records[middle:]


def named_in(text: str | None, records: Iterable[Record]) -> list[Record]:
    """The records whose EvseID Hubject's AdditionalInfo mentions (e.g. the 603 list of unknown EvseIDs)."""
    if not text:
        return []
    upper = text.upper()
    return [r for r in records if str(r.evse_id) in upper]


def fullload_refusal(count: int, last_count: int | None, max_shrink: float) -> str | None:
    """Why a fullLoad of ``count`` records must not be sent unforced, or None if it may.

    A fullLoad replaces everything Hubject holds for the operator, so an empty set (a wiped or half-loaded
    OCPI state) or a sharp shrink since the last successful one (more than ``max_shrink``) is refused.
    """
    if count == 0:
        return "the fullLoad would be empty and remove every status Hubject holds for this operator"
    if last_count and count < last_count * (1.0 - max_shrink):
        shrink = 1.0 - count / last_count
        return (
            f"the fullLoad set shrank by {shrink:.0%} since the last one ({last_count} → {count} EVSEs), "
            f"more than max_shrink {max_shrink:.0%}"
        )
    return None
