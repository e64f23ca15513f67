"""The outbox's rules: what one outbox row becomes on each event, as one table, and the pure steps around it
(cutting batches, finding the EvseIDs Hubject names, the fullLoad guard). Pure: no I/O, no clock (the caller
passes ``now``). ``bridge.store.outbox`` reads rows, applies these functions and writes the rows back.

A row mirrors one EvseID of one operator: what Hubject should hold (``action``/``status``, decided from the
current OCPI state of the EVSE that owns the EvseID), what Hubject acknowledged (``delivered``), and where
delivery stands (``state``). The rows' states and the events that move them (``TRANSITIONS``):

| state     | observe (content changed)     | claim     | delivered   | released | refused      | recovered |
|-----------|-------------------------------|-----------|-------------|----------|--------------|-----------|
| pending   | pending, or delivered²        | in_flight | –           | –        | –            | pending   |
| in_flight | pending (the push is stale)   | –         | delivered¹  | pending  | dead/parked¹ | pending   |
| delivered | pending, or delivered²        | –         | –           | –        | –            | delivered |
| dead      | pending, or delivered²        | –         | –           | –        | –            | dead      |
| parked    | parked                        | –         | –           | –        | –            | parked    |

¹ only if the row still holds the version that was sent; a row changed meanwhile is pending again.
² delivered when Hubject already holds exactly that content and nothing makes that doubtful (``unsure``, or
  a push of the row with an unknown outcome, ``sent_version``).
A fullLoad acknowledged (``fullload_delivered``) makes every row it carried delivered, dead and parked
ones included: a fullLoad is how set-aside records get their second chance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from bridge.mapping import Action
from oicp.ids import EVSE_ID_PATTERN, EvseID
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
    DEAD = "dead"  # Hubject refused the record permanently; the reason is kept; retried by a fullLoad
    PARKED = "parked"  # Hubject has no EVSE data for it (603): retried at the next fullLoad


class Event(StrEnum):
    OBSERVE = "observe"
    CLAIM = "claim"
    DELIVERED = "delivered"
    RELEASED = "released"
    REFUSED = "refused"
    RECOVERED = "recovered"
    SET_ASIDE = "set aside"  # a fullLoad named the EvseID: unknown to Hubject (603, parked) or refused (dead)
    RETRY = "retry"  # an operator asks for a dead letter to be sent again (the cause was fixed)
    SETTLE = "settle"  # a delivered row's doubt outlived its quiet period: its content goes once more


P, F, D, X, K = (
    RecordState.PENDING,
    RecordState.IN_FLIGHT,
    RecordState.DELIVERED,
    RecordState.DEAD,
    RecordState.PARKED,
)

# The table above, as data: for each (state, event) the states the row may move to. The functions below
# pick one of them; ``transition`` refuses any move the table does not list, so a rule can never drift
# from the table (tests/bridge/test_outbox_rules.py walks every cell).
TRANSITIONS: dict[tuple[RecordState, Event], frozenset[RecordState]] = {
    (P, Event.OBSERVE): frozenset({P, D}),
    (F, Event.OBSERVE): frozenset({P}),
    (D, Event.OBSERVE): frozenset({P, D}),
    (X, Event.OBSERVE): frozenset({P, D}),
    (K, Event.OBSERVE): frozenset({K}),
    (P, Event.CLAIM): frozenset({F}),
    (F, Event.DELIVERED): frozenset({D, P}),
    (P, Event.DELIVERED): frozenset({P}),  # changed while in flight: the sent version is not the row's
    (F, Event.RELEASED): frozenset({P}),
    (P, Event.RELEASED): frozenset({P}),
    (F, Event.REFUSED): frozenset({X, K, P}),
    (P, Event.REFUSED): frozenset({P}),
    (P, Event.RECOVERED): frozenset({P}),
    (F, Event.RECOVERED): frozenset({P}),
    (D, Event.RECOVERED): frozenset({D}),
    (X, Event.RECOVERED): frozenset({X}),
    (K, Event.RECOVERED): frozenset({K}),
    (P, Event.SET_ASIDE): frozenset({K, X}),
    (D, Event.SET_ASIDE): frozenset({K, X}),
    (X, Event.SET_ASIDE): frozenset({K, X}),
    (K, Event.SET_ASIDE): frozenset({K, X}),
    (X, Event.RETRY): frozenset({P}),
    (D, Event.SETTLE): frozenset({P}),
}

# the states the table lets each event move a row from: what a store's step is guarded by (a row that moved
# on meanwhile, e.g. settled by a fullLoad or recovered at a restart, is left as it is)
MOVES_FROM: dict[Event, frozenset[RecordState]] = {
    event: frozenset(s for s, e in TRANSITIONS if e is event) for event in Event
}


class TransitionError(Exception):
    """A rule asked for a move the table does not list (a bug, never an input error)."""


def transition(state: RecordState, event: Event, to: RecordState) -> RecordState:
    if to not in TRANSITIONS.get((state, event), frozenset()):
        raise TransitionError(f"{event.value}: {state.value} → {to.value} is not in the outbox table")
    return to


@dataclass(frozen=True, slots=True)
class Desired:
    """What Hubject should hold for one EvseID, decided from the owning EVSE's current OCPI state."""

    action: Action
    status: EvseStatus | None  # None for DELETE
    ocpi_status: str
    last_updated_us: int
    source: str  # country_code/party_id/location_id/evse_uid of the owning EVSE


@dataclass(frozen=True, slots=True)
class Row:
    """One outbox row: everything any rule reads."""

    action: Action
    status: EvseStatus | None
    ocpi_status: str
    last_updated_us: int
    source: str
    version: int
    state: RecordState
    pending_since: float | None = None  # wall clock: since when a change waits (display only)
    sent_version: int | None = None  # a push of this version is out, its outcome not yet known
    delivered_action: Action | None = None  # what Hubject acknowledged last
    delivered_status: EvseStatus | None = None
    unsure: bool = False  # a push with an unknown outcome may still land: never skip a change
    unsure_until: float | None = None  # wall clock: a push sent after this settles the doubt
    attempts: int = 0
    last_error: str | None = None
    dead_code: str | None = None
    dead_reason: str | None = None
    dead_at: float | None = None
    delivered_at: float | None = None  # wall clock of the last acknowledgement (display only)

    @property
    def content(self) -> tuple[Action, EvseStatus | None]:
        return self.action, self.status


def hubject_holds(row: Row, action: Action, status: EvseStatus | None) -> bool:
    """Whether Hubject is known to hold exactly (action, status) for this row's EvseID: a delete of an
    EVSE Hubject never received (or already withdrew) needs no request."""
    if row.unsure or row.sent_version is not None:
        return False
    if action is Action.DELETE:
        return row.delivered_action is not Action.UPDATE
    return (row.delivered_action, row.delivered_status) == (Action.UPDATE, status)


def observe(row: Row | None, desired: Desired, version: int, now: float) -> Row | None:
    """The row after the owning EVSE's state was (re)decided. ``version`` is the next sequence value; it
    is used only when the content changes. None: nothing to keep (a delete for an EvseID never seen)."""
    if row is None:
        if desired.action is Action.DELETE:
            return None
        return Row(
            desired.action, desired.status, desired.ocpi_status, desired.last_updated_us, desired.source,
            version, RecordState.PENDING, pending_since=now,
        )  # fmt: skip
    if (desired.action, desired.status) == row.content:
        # same content: the state stands (a dead record stays dead until a fullLoad); only the info follows
        # (rows built field by field here, not with dataclasses.replace: this runs for every OCPI change)
        return Row(
            row.action, row.status, desired.ocpi_status, desired.last_updated_us, desired.source,
            row.version, row.state, row.pending_since, row.sent_version, row.delivered_action,
            row.delivered_status, row.unsure, row.unsure_until, row.attempts, row.last_error, row.dead_code,
            row.dead_reason, row.dead_at, row.delivered_at,
        )  # fmt: skip
    if row.state is RecordState.PARKED:
        # Hubject has no EVSE data for it: the new content waits for the next fullLoad (docs/bridge.md)
        state = RecordState.PARKED
    elif hubject_holds(row, desired.action, desired.status) and row.state is not RecordState.IN_FLIGHT:
        state = RecordState.DELIVERED
    else:
        state = RecordState.PENDING
    state = transition(row.state, Event.OBSERVE, state)
    pending = state is RecordState.PENDING
    parked = state is RecordState.PARKED
    return Row(
        desired.action, desired.status, desired.ocpi_status, desired.last_updated_us, desired.source,
        version, state, (row.pending_since or now) if pending else None, row.sent_version,
        row.delivered_action, row.delivered_status, row.unsure, row.unsure_until, row.attempts,
        row.last_error, row.dead_code if parked else None, row.dead_reason if parked else None,
        row.dead_at if parked else None, row.delivered_at,
    )  # fmt: skip


def claimed(row: Row) -> Row:
    return replace(
        row, state=transition(row.state, Event.CLAIM, RecordState.IN_FLIGHT), sent_version=row.version
    )


@dataclass(frozen=True, slots=True)
class Record:
    """One pending record as the dispatcher pushes it."""

    evse_id: EvseID
    action: Action
    status: EvseStatus | None
    version: int


def delivered(row: Row, sent: Record, sent_at: float, now: float, doubt_until: float | None = None) -> Row:
    """Hubject acknowledged ``sent`` (pushed at wall time ``sent_at``). Delivered only if the row still
    holds that version; a doubt (``unsure``) is settled only by a push sent after its quiet period.
    ``doubt_until``: the acknowledgement came only after an attempt with an unknown outcome (a timeout the
    client retried), which may still land later: the row is unsure until then."""
    current = row.version == sent.version and row.state is RecordState.IN_FLIGHT
    state = transition(row.state, Event.DELIVERED, RecordState.DELIVERED if current else RecordState.PENDING)
    settled = row.unsure_until is None or sent_at >= row.unsure_until
    if doubt_until is not None:
        return replace(
            delivered(row, sent, sent_at, now),
            unsure=True,
            unsure_until=max(doubt_until, row.unsure_until or 0.0),
        )
    return replace(
        row,
        state=state,
        delivered_action=sent.action,
        delivered_status=sent.status,
        delivered_at=now,
        sent_version=None,
        pending_since=None if current else row.pending_since,
        unsure=row.unsure and not settled,
        unsure_until=None if settled else row.unsure_until,
        attempts=0,
        last_error=None,
    )


def released(row: Row, error: str, now: float, unsure_until: float) -> Row:
    """A push failed in a way that may pass, or its outcome is unknown: pending again, and ``unsure``
    until a push sent after ``unsure_until`` is acknowledged (Hubject may still apply this one)."""
    state = transition(row.state, Event.RELEASED, RecordState.PENDING)
    return replace(
        row,
        state=state,
        sent_version=None,
        pending_since=row.pending_since or now,
        unsure=True,
        unsure_until=max(unsure_until, row.unsure_until or 0.0),
        attempts=row.attempts + 1,
        last_error=error,
    )


def refused(row: Row, sent: Record, to: RecordState, code: str, reason: str, now: float) -> Row:
    """Hubject refused ``sent`` for good (dead) or for lack of EVSE data (parked). Hubject still holds
    what it held. A row changed meanwhile is pending: the new content may be accepted."""
    current = row.version == sent.version and row.state is RecordState.IN_FLIGHT
    state = transition(row.state, Event.REFUSED, to if current else RecordState.PENDING)
    return replace(
        row,
        state=state,
        sent_version=None,
        pending_since=None if current else (row.pending_since or now),
        dead_code=code,
        dead_reason=reason,
        dead_at=now,
        last_error=reason,
    )


def set_aside(row: Row, to: RecordState, code: str, reason: str, now: float) -> Row:
    """A fullLoad named the EvseID: unknown to Hubject (603: parked) or refused (dead); out of the set
    until the next fullLoad."""
    return replace(
        row,
        state=transition(row.state, Event.SET_ASIDE, to),
        pending_since=None,
        sent_version=None,
        dead_code=code,
        dead_reason=reason,
        dead_at=now,
    )


def retried(row: Row, now: float) -> Row:
    """An operator asked for a dead letter to be sent again: pending, its refusal forgotten. (A parked row
    waits for EVSE data and goes with the next fullLoad.)"""
    return replace(
        row,
        state=transition(row.state, Event.RETRY, RecordState.PENDING),
        pending_since=now,
        sent_version=None,
        attempts=0,
        last_error=None,
        dead_code=None,
        dead_reason=None,
        dead_at=None,
    )


def recovered(row: Row, now: float, unsure_until: float) -> Row:
    """At start: a push in flight when the process stopped is pending again and ``unsure``."""
    if row.state is not RecordState.IN_FLIGHT:
        return replace(row, state=transition(row.state, Event.RECOVERED, row.state))
    return replace(
        row,
        state=transition(row.state, Event.RECOVERED, RecordState.PENDING),
        sent_version=None,
        pending_since=row.pending_since or now,
        unsure=True,
        unsure_until=max(unsure_until, row.unsure_until or 0.0),
    )


class Doubtful(Protocol):
    """What ``settle_due`` reads of a row: a status row (``Row``) or an EVSE data row (``DataRow``)."""

    @property
    def state(self) -> RecordState: ...
    @property
    def unsure(self) -> bool: ...
    @property
    def unsure_until(self) -> float | None: ...


def settle_due(row: Doubtful, now: float) -> bool:
    """A delivered row whose doubt's quiet period is over: push its content once more, so a late-landing
    push cannot leave Hubject behind (the acknowledgement of that push clears ``unsure``). The same rule
    for both outboxes' rows."""
    return (
        row.unsure
        and row.state is RecordState.DELIVERED
        and row.unsure_until is not None
        and row.unsure_until <= now
    )


def settle(row: Row, now: float) -> Row:
    return replace(
        row,
        state=transition(row.state, Event.SETTLE, RecordState.PENDING),
        pending_since=row.pending_since or now,
    )


def fullload_delivered(row: Row, watermark: int, sent_at: float, now: float) -> Row:
    """After an acknowledged fullLoad of the operator's set: a row not changed since the snapshot (version ≤
    ``watermark``) is what Hubject holds now (an update row was carried; a delete row was left out, so
    Hubject holds nothing for it). Rows changed since are pending and follow as updates."""
    if row.version > watermark:
        return row
    settled = row.unsure_until is None or sent_at >= row.unsure_until
    return replace(
        row,
        state=RecordState.DELIVERED,
        delivered_action=row.action,
        delivered_status=row.status,
        delivered_at=now,
        pending_since=None,
        sent_version=None,
        unsure=row.unsure and not settled,
        unsure_until=None if settled else row.unsure_until,
        attempts=0,
        last_error=None,
        dead_code=None,
        dead_reason=None,
        dead_at=None,
    )


# --- batches ----------------------------------------------------------------------------------------------


def split_by_action(records: Iterable[Record]) -> tuple[list[Record], list[Record]]:
    """(updates, deletes): one OICP request carries one ActionType."""
    updates = [r for r in records if r.action is Action.UPDATE]
    deletes = [r for r in records if r.action is Action.DELETE]
    return updates, deletes


def halves(records: Sequence[Record]) -> tuple[Sequence[Record], Sequence[Record]]:
    """Split a refused batch to find the records Hubject refuses (binary search, log2(n) extra pushes)."""
    middle = len(records) // 2
    return records[:middle], records[middle:]


# The official EvseID pattern, unanchored; Hubject writes EvseIDs with or without the '*' separators.
_EVSE_ID_IN_TEXT = re.compile(EVSE_ID_PATTERN.removeprefix("^").removesuffix("$"))
_TOKEN = re.compile(r"[A-Za-z0-9*]+")


def evse_key(evse_id: str) -> str:
    """An EvseID without separators, upper case: ``DE*ABC*E1`` and ``DEABCE1`` are one EvseID."""
    return evse_id.replace("*", "").upper()


def named_keys(text: str | None) -> set[str]:
    """The EvseIDs Hubject's AdditionalInfo names, as ``evse_key``s, each a whole token of the text (so
    ``…*E10`` names E10 and never E1)."""
    found: set[str] = set()
    for token in _TOKEN.findall(text or ""):
        if _EVSE_ID_IN_TEXT.fullmatch(token) or EvseID.is_valid(token):
            found.add(evse_key(token))
    return found


def named_in(text: str | None, records: Iterable[Record]) -> list[Record]:
    """The records whose EvseID Hubject's AdditionalInfo names, matched exactly."""
    keys = named_keys(text)
    return [r for r in records if evse_key(r.evse_id) in keys]


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
