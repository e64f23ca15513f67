"""The EVSE data outbox's rules: the data lane is a second consumer of the outbox's states and transitions
(``bridge.outbox.TRANSITIONS``; every move here goes through ``bridge.outbox.transition``). Pure: no I/O,
no clock (the caller passes ``now``). ``bridge.store.evse_data`` reads rows, applies these functions and
writes them back.

A row mirrors one EvseID of one operator: the latest mapped record (canonical JSON and its SHA-256, design
§6.2) or a withdrawal (``Action.DELETE``), the last record Hubject acknowledged (a delete must carry a full
record: the schema wants one), and whether Hubject holds a record for the EvseID (``held``). What differs
from a status row:

- the content is the record's hash, so a structural OCPI change whose record is unchanged pushes nothing;
- the ActionType is chosen at send time: ``insert`` for an EvseID Hubject does not hold, ``update`` for one
  it holds, ``delete`` with the last acknowledged record (design §6.3, §6.4); a 009 refusal (insert of a held
  record, update of a missing one) re-classifies the record once, then it is dead;
- ``held`` gates the status: the status of an EvseID whose data Hubject does not hold is held back (design
  §6.1), and a 603 naming the EvseID makes it not held again (``unknown_to_hubject``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from bridge.mapping import Action
from bridge.outbox import Event, RecordState, transition
from oicp.models import ActionType

REFUSED_INSERT_OR_UPDATE = "009"  # data transaction error: insert of a held record, update of a missing one


@dataclass(frozen=True, slots=True)
class DataDesired:
    """What Hubject should hold for one EvseID: a record (UPDATE) or nothing (DELETE)."""

    action: Action
    record: str | None  # canonical JSON (EvseDataRecord.canonical_json), None for DELETE
    record_hash: str | None
    source: str  # country_code/party_id/location_id/evse_uid of the EVSE it was mapped from


@dataclass(frozen=True, slots=True)
class DataRow:
    action: Action
    record: str | None
    record_hash: str | None
    source: str
    version: int
    state: RecordState
    pending_since: float | None = None  # wall clock, display and claim order
    sent_version: int | None = None
    sent_action: ActionType | None = None  # what the push in flight asked Hubject to do
    acked_record: str | None = None  # the last record Hubject acknowledged (a delete sends it)
    acked_hash: str | None = None
    held: bool = False  # Hubject holds a data record for this EvseID: its status may be pushed
    unsure: bool = False  # a push with an unknown outcome may still land
    unsure_until: float | None = None
    reclassified: bool = False  # a 009 flipped insert/update once; the next 009 is final
    attempts: int = 0
    last_error: str | None = None
    dead_code: str | None = None
    dead_reason: str | None = None
    dead_at: float | None = None
    delivered_at: float | None = None

    @property
    def content(self) -> tuple[Action, str | None]:
        return self.action, self.record_hash


@dataclass(frozen=True, slots=True)
class DataRecord:
    """One claimed record as the data lane pushes it."""

    evse_id: str
    action: ActionType  # insert / update / delete
    record: str  # the JSON sent (for a delete: the last acknowledged record)
    record_hash: str | None
    version: int


def hubject_holds(row: DataRow, action: Action, record_hash: str | None) -> bool:
    """Whether Hubject is known, without doubt, to hold exactly this (a record, or nothing)."""
    if row.unsure or row.sent_version is not None:
        return False
    if action is Action.DELETE:
        return not row.held
    return row.held and row.acked_hash == record_hash


def observe(row: DataRow | None, desired: DataDesired, version: int, now: float) -> DataRow | None:
    """The row after the EVSE's record was (re)mapped. ``version``: the next sequence value, used only when
    the content changes. None: nothing to keep (a withdrawal of an EvseID never seen)."""
    if row is None:
        if desired.action is Action.DELETE:
            return None
        return DataRow(
            desired.action, desired.record, desired.record_hash, desired.source, version,
            RecordState.PENDING, pending_since=now,
        )  # fmt: skip
    if (desired.action, desired.record_hash) == row.content:
        return row if row.source == desired.source else replace(row, source=desired.source)
    if hubject_holds(row, desired.action, desired.record_hash) and row.state is not RecordState.IN_FLIGHT:
        state = RecordState.DELIVERED
    else:
        state = RecordState.PENDING
    state = transition(row.state, Event.OBSERVE, state if row.state is not RecordState.PARKED else row.state)
    pending = state is RecordState.PENDING
    return replace(
        row,
        action=desired.action,
        # a withdrawal keeps the last mapped record: if a push of it may have landed (unsure) and Hubject
        # acknowledged nothing, the delete still has a full record to send
        record=desired.record if desired.action is Action.UPDATE else row.record,
        record_hash=desired.record_hash,
        source=desired.source,
        version=version,
        state=state,
        pending_since=(row.pending_since or now) if pending else None,
        reclassified=False,
        dead_code=None,
        dead_reason=None,
        dead_at=None,
    )


def wire_action(row: DataRow) -> ActionType:
    """The ActionType that brings Hubject to the row's content (design §6.3): insert for an EvseID Hubject
    does not hold, update for one it holds, delete with the last acknowledged record; flipped once after a
    009 (Hubject's view differs from ours: a lost acknowledgement, another uploader)."""
    if row.action is Action.DELETE:
        return ActionType.DELETE
    insert = not row.held
    if row.reclassified:
        insert = not insert
    return ActionType.INSERT if insert else ActionType.UPDATE


def claimable(row: DataRow) -> bool:
    """A delete needs a full record to send (the schema wants one): the acknowledged one, else the last
    mapped one (a push of it had an unknown outcome). Without either there is nothing to withdraw."""
    return row.action is not Action.DELETE or (row.acked_record or row.record) is not None


def nothing_to_withdraw(row: DataRow) -> DataRow:
    """A pending delete with no record Hubject could hold: done without a request."""
    return replace(
        row, state=transition(row.state, Event.OBSERVE, RecordState.DELIVERED), held=False, pending_since=None
    )


def claimed(row: DataRow, evse_id: str) -> tuple[DataRow, DataRecord]:
    action = wire_action(row)
    sent = (row.acked_record or row.record) if action is ActionType.DELETE else row.record
    assert sent is not None  # claimable()
    new = replace(
        row,
        state=transition(row.state, Event.CLAIM, RecordState.IN_FLIGHT),
        sent_version=row.version,
        sent_action=action,
    )
    return new, DataRecord(evse_id, action, sent, row.record_hash, row.version)


def delivered(
    row: DataRow, sent: DataRecord, sent_at: float, now: float, doubt_until: float | None = None
) -> DataRow:
    """Hubject acknowledged ``sent``: it holds that record now (or, for a delete, none)."""
    current = row.version == sent.version and row.state is RecordState.IN_FLIGHT
    state = transition(row.state, Event.DELIVERED, RecordState.DELIVERED if current else RecordState.PENDING)
    settled = row.unsure_until is None or sent_at >= row.unsure_until
    holds = sent.action is not ActionType.DELETE
    new = replace(
        row,
        state=state,
        held=holds,
        acked_record=sent.record if holds else None,
        acked_hash=sent.record_hash if holds else None,
        delivered_at=now,
        sent_version=None,
        sent_action=None,
        pending_since=None if current else row.pending_since,
        unsure=row.unsure and not settled,
        unsure_until=None if settled else row.unsure_until,
        reclassified=False,
        attempts=0,
        last_error=None,
    )
    if doubt_until is not None:
        return replace(new, unsure=True, unsure_until=max(doubt_until, row.unsure_until or 0.0))
    return new


def released(row: DataRow, error: str, now: float, unsure_until: float) -> DataRow:
    """A push failed in a way that may pass, or with an unknown outcome: pending again, unsure."""
    return replace(
        row,
        state=transition(row.state, Event.RELEASED, RecordState.PENDING),
        sent_version=None,
        sent_action=None,
        pending_since=row.pending_since or now,
        unsure=True,
        unsure_until=max(unsure_until, row.unsure_until or 0.0),
        attempts=row.attempts + 1,
        last_error=error,
    )


def refused(row: DataRow, sent: DataRecord, code: str, reason: str, now: float) -> DataRow:
    """Hubject refused ``sent`` for this record. A first 009 on an insert or update re-classifies it
    (pending, flipped); anything else is dead with Hubject's code. A row changed meanwhile is pending."""
    current = row.version == sent.version and row.state is RecordState.IN_FLIGHT
    flip = (
        current
        and code == REFUSED_INSERT_OR_UPDATE
        and sent.action in (ActionType.INSERT, ActionType.UPDATE)
        and not row.reclassified
    )
    if flip or not current:
        return replace(
            row,
            state=transition(row.state, Event.REFUSED, RecordState.PENDING),
            sent_version=None,
            sent_action=None,
            pending_since=row.pending_since or now,
            reclassified=flip or row.reclassified,
            last_error=reason,
        )
    return replace(
        row,
        state=transition(row.state, Event.REFUSED, RecordState.DEAD),
        sent_version=None,
        sent_action=None,
        pending_since=None,
        dead_code=code,
        dead_reason=reason,
        dead_at=now,
        last_error=reason,
    )


def recovered(row: DataRow, now: float, unsure_until: float) -> DataRow:
    """At start: a push in flight when the process stopped is pending again and unsure."""
    if row.state is not RecordState.IN_FLIGHT:
        return row
    return replace(
        row,
        state=transition(row.state, Event.RECOVERED, RecordState.PENDING),
        sent_version=None,
        sent_action=None,
        pending_since=row.pending_since or now,
        unsure=True,
        unsure_until=max(unsure_until, row.unsure_until or 0.0),
    )


def settle(row: DataRow, now: float) -> DataRow:
    """A delivered row whose doubt's quiet period is over (``bridge.outbox.settle_due``, the rule both
    outboxes share): its record goes once more, so a push that landed late (with older data) cannot leave
    Hubject behind."""
    return replace(
        row,
        state=transition(row.state, Event.SETTLE, RecordState.PENDING),
        pending_since=row.pending_since or now,
    )


def unknown_to_hubject(row: DataRow, now: float) -> DataRow:
    """A status push was answered 603 naming this EvseID: Hubject does not hold its data, whatever we
    believed. Not held (its status waits again) and pending, so the data is pushed (as an insert). A row in
    flight is left to its push's answer."""
    if row.state is RecordState.IN_FLIGHT:
        return replace(row, held=False)
    if row.action is Action.DELETE:
        return replace(row, held=False, acked_record=None, acked_hash=None)
    state = transition(row.state, Event.OBSERVE, RecordState.PENDING)
    return replace(
        row,
        state=state,
        held=False,
        reclassified=False,
        pending_since=row.pending_since or now,
        dead_code=None,
        dead_reason=None,
        dead_at=None,
    )


def fullload_delivered(row: DataRow, watermark: int, sent_at: float, now: float) -> DataRow:
    """After an acknowledged data fullLoad: a row not changed since the snapshot is what Hubject holds now
    (an update row was carried, a delete row was left out). Rows changed since stay pending."""
    if row.version > watermark or row.state is RecordState.IN_FLIGHT:
        return row
    settled = row.unsure_until is None or sent_at >= row.unsure_until
    holds = row.action is Action.UPDATE
    return replace(
        row,
        state=RecordState.DELIVERED,
        held=holds,
        acked_record=row.record if holds else None,
        acked_hash=row.record_hash if holds else None,
        delivered_at=now,
        pending_since=None,
        sent_version=None,
        sent_action=None,
        unsure=row.unsure and not settled,
        unsure_until=None if settled else row.unsure_until,
        reclassified=False,
        attempts=0,
        last_error=None,
        dead_code=None,
        dead_reason=None,
        dead_at=None,
    )


# --- batches ----------------------------------------------------------------------------------------------

ORDER = (ActionType.INSERT, ActionType.UPDATE, ActionType.DELETE)


def batches(records: Iterable[DataRecord], max_batch: int) -> list[tuple[ActionType, list[DataRecord]]]:
    """One request per ActionType and at most ``max_batch`` records each: inserts, then updates, then
    deletes (okit: "inserts and updates first, deletions last"; design §6.3), each in the given order."""
    by_action: dict[ActionType, list[DataRecord]] = {action: [] for action in ORDER}
    for record in records:
        by_action[record.action].append(record)
    planned: list[tuple[ActionType, list[DataRecord]]] = []
    for action in ORDER:
        group = by_action[action]
        planned += [(action, group[i : i + max_batch]) for i in range(0, len(group), max_batch)]
    return planned


def halves(records: Sequence[DataRecord]) -> tuple[Sequence[DataRecord], Sequence[DataRecord]]:
    middle = len(records) // 2
    return records[:middle], records[middle:]
