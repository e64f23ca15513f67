"""The durable EVSE data outbox: one row per (operator, EvseID), read and written whole. A row mapper like
``bridge.store.outbox``: every rule is a pure function of ``bridge.evse_data.decide``; states travel as
parameters. The intake writes rows inside its own transaction (the OCPI change and its data decision commit
together); the data lane (``bridge.data_lane``) claims, settles and fullLoads.

Two rules join the two outboxes, both here so that they commit with the data they depend on:
- a status row is claimed only when Hubject holds its EvseID's data (``HELD``, used by
  ``OutboxStore.claim`` and the status fullLoad), and when a data acknowledgement makes an EvseID held, its
  waiting status row gets a new version (so a status fullLoad whose snapshot left it out cannot mark it
  delivered) and the status lane is told (``delivered`` returns how many);
- a data delete waits while the status delete of its EvseID is not yet acknowledged (status first, then
  data: design §6.4).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bridge.evse_data import decide as rules
from bridge.evse_data.decide import DataDesired, DataRecord, DataRow
from bridge.evse_data.mapping import NotPushable, NotPushableReason, summarise
from bridge.mapping import Action
from bridge.outbox import Event, RecordState, evse_key
from bridge.store import outbox_rows
from bridge.store.engine import Engine, lane_write, operator_write
from bridge.store.outbox_rows import OutboxRows
from bridge.store.pages import snapshot_pages
from bridge.store.port import Fence, Tx
from oicp.ids import OperatorID
from oicp.models import ActionType

COLUMNS = (
    "action", "record", "record_hash", "source", "version", "state", "pending_since", "sent_version",
    "sent_action", "acked_record", "acked_hash", "held", "unsure", "unsure_until", "reclassified",
    "attempts", "last_error", "dead_code", "dead_reason", "dead_at", "delivered_at",
)  # fmt: skip
_S = RecordState
T = TypeVar("T")
_ACTIONS = {a.value: a for a in Action}
_WIRE = {a.value: a for a in ActionType}

# The status rows whose EVSE data Hubject holds (an SQL condition on ``outbox``; valid on both engines).
HELD = (
    "EXISTS (SELECT 1 FROM evse_data_outbox AS d WHERE d.operator_id = outbox.operator_id "
    "AND d.evse_id = outbox.evse_id AND d.held = 1)"
)
# A data delete waits while its EvseID's status delete is not acknowledged (the status goes first).
_STATUS_DELETE_OUT = (
    "EXISTS (SELECT 1 FROM outbox AS o WHERE o.operator_id = evse_data_outbox.operator_id "
    "AND o.evse_id = evse_data_outbox.evse_id AND o.action = 'delete' "
    "AND o.state IN ('pending', 'in_flight'))"
)


def to_row(found: Any) -> DataRow:
    return DataRow(
        _ACTIONS[found["action"]], found["record"], found["record_hash"], found["source"], found["version"],
        _S(found["state"]), found["pending_since"], found["sent_version"],
        None if found["sent_action"] is None else _WIRE[found["sent_action"]], found["acked_record"],
        found["acked_hash"], bool(found["held"]), bool(found["unsure"]), found["unsure_until"],
        bool(found["reclassified"]), found["attempts"], found["last_error"], found["dead_code"],
        found["dead_reason"], found["dead_at"], found["delivered_at"],
    )  # fmt: skip


def to_params(operator_id: str, evse_id: str, row: DataRow) -> tuple[Any, ...]:
    return (
        operator_id, evse_id, row.action.value, row.record, row.record_hash, row.source, row.version,
        row.state.value, row.pending_since, row.sent_version,
        None if row.sent_action is None else row.sent_action.value, row.acked_record, row.acked_hash,
        int(row.held), int(row.unsure), row.unsure_until, int(row.reclassified), row.attempts,
        row.last_error, row.dead_code, row.dead_reason, row.dead_at, row.delivered_at,
    )  # fmt: skip


_ROWS: OutboxRows[DataRow] = outbox_rows.outbox_rows("evse_data_outbox", COLUMNS, to_row, to_params)
_SELECT = _ROWS.select
_UPSERT = _ROWS.upsert
DataStep = Callable[[DataRow, DataRecord], DataRow]


@dataclass(frozen=True, slots=True)
class DataLaneStatus:
    pending: int  # records to push (deletes waiting for their status delete included)
    oldest_pending_since: float | None
    held_statuses: int  # status rows waiting for their EVSE data to be acknowledged
    dead: dict[str, int]  # Hubject's code -> dead data records
    not_pushable: list[str]  # "2 EVSEs: no OICP plug for GBT_DC"
    last_fullload_at: float | None = None
    last_fullload_count: int | None = None
    fullload_refusal: str | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class DataSnapshot:
    watermark: int
    count: int


@dataclass(frozen=True, slots=True)
class Claimed:
    records: list[DataRecord]
    waiting: int  # deletes that wait for their status delete


class DataOutboxStore:
    """The EVSE data tables: the intake's row step (inside its transaction) and the data lane's steps."""

    def __init__(
        self, db: Engine, *, clock: Callable[[], float] = time.time, fence: Fence | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        # several replicas: each write of an operator's data lane is fenced by its lease (bridge.leadership)
        self.fence = fence

    async def _lane_write(self, operator_id: OperatorID | str, fn: Callable[[Tx], T]) -> T:
        return await lane_write(self.db, self.fence, str(operator_id), fn)

    # --- intake: inside the caller's transaction -------------------------------------------------------

    @staticmethod
    def load(tx: Tx, operator_id: str, evse_id: str) -> DataRow | None:
        return outbox_rows.load(tx, _ROWS, operator_id, evse_id)

    def observe(self, tx: Tx, operator_id: str, evse_id: str, desired: DataDesired, now: float) -> bool:
        """Decide the row for the EVSE's current record; True when it became pending (the lane has work)."""
        row = self.load(tx, operator_id, evse_id)
        if row is not None and (desired.action, desired.record_hash) == row.content:
            if row.source != desired.source:
                tx.execute(
                    "UPDATE evse_data_outbox SET source = ? WHERE operator_id = ? AND evse_id = ?",
                    (desired.source, operator_id, evse_id),
                )
            return False
        new = rules.observe(row, desired, self._next_version(tx), now)
        if new is None:
            return False
        tx.execute(_UPSERT, to_params(operator_id, evse_id, new))
        was_pending = row is not None and row.state is _S.PENDING
        return new.state is _S.PENDING and not was_pending

    def _next_version(self, tx: Tx) -> int:
        return self.db.next_in_sequence(tx, "evse_data_version")

    @staticmethod
    def note_not_pushable(
        tx: Tx, operator_id: str, source: str, found: NotPushable | None, now: float
    ) -> None:
        """Remember why an EVSE has no record (shown per operator), or forget it once it has one."""
        if found is None:
            tx.execute("DELETE FROM evse_data_not_pushable WHERE source = ?", (source,))
            return
        tx.execute(
            "INSERT INTO evse_data_not_pushable (source, operator_id, evse_id, reason, detail, seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
            "operator_id = excluded.operator_id, "
            "evse_id = excluded.evse_id, reason = excluded.reason, detail = excluded.detail, "
            "seen_at = excluded.seen_at",
            (
                source, operator_id, None if found.evse_id is None else str(found.evse_id),
                found.reason.value, found.detail, now,
            ),
        )  # fmt: skip

    # --- the data lane ----------------------------------------------------------------------------------

    async def claim(self, operator_id: OperatorID, limit: int) -> Claimed:
        """Take up to ``limit`` pending records, oldest first, and mark them in flight; deletes whose status
        delete is not yet acknowledged stay pending (counted in ``waiting``)."""
        op = str(operator_id)

        def run(tx: Tx) -> Claimed:
            found = tx.execute(
                f"{_SELECT} WHERE operator_id = ? AND state = ? "
                f"AND NOT (action = ? AND {_STATUS_DELETE_OUT}) "
                "ORDER BY pending_since, evse_id LIMIT ?",
                (op, _S.PENDING.value, Action.DELETE.value, limit),
            ).fetchall()
            (waiting,) = tx.execute(
                f"SELECT COUNT(*) FROM evse_data_outbox WHERE operator_id = ? AND state = ? AND action = ? "
                f"AND {_STATUS_DELETE_OUT}",
                (op, _S.PENDING.value, Action.DELETE.value),
            ).fetchone()
            records: list[DataRecord] = []
            writes: list[tuple[Any, ...]] = []
            for f in found:
                row = to_row(f)
                if not rules.claimable(row):
                    writes.append(to_params(op, f["evse_id"], rules.nothing_to_withdraw(row)))
                    continue
                new, record = rules.claimed(row, f["evse_id"])
                writes.append(to_params(op, f["evse_id"], new))
                records.append(record)
            tx.executemany(_UPSERT, writes)
            return Claimed(records, int(waiting))

        return await self._lane_write(operator_id, run)

    async def delivered(
        self,
        operator_id: OperatorID,
        records: Sequence[DataRecord],
        sent_at: float,
        *,
        doubt_for: float | None = None,
    ) -> int:
        """Hubject acknowledged ``records``. Returns how many status rows this released (their EVSE's data
        is held now): the caller wakes the status lane."""
        now = self.clock()
        doubt_until = None if doubt_for is None else now + doubt_for
        op = str(operator_id)
        wanted = {r.evse_id: r for r in records}

        step: DataStep = outbox_rows.guarded(
            Event.DELIVERED,
            lambda row, sent: rules.delivered(row, sent, sent_at, now, doubt_until),
        )

        def run(tx: Tx) -> int:
            changed = outbox_rows.apply(tx, _ROWS, op, wanted, step)
            newly_held = [e for e, before, after in changed if after.held and not before.held]
            return self._release_statuses(tx, op, newly_held, now)

        return await self._lane_write(operator_id, run)

    def _release_statuses(self, tx: Tx, operator_id: str, evse_ids: Sequence[str], now: float) -> int:
        """Status rows of EvseIDs whose data Hubject holds now: a new version (a status fullLoad snapshot
        that left them out must not mark them delivered), and pending again if a 603 had parked them."""
        released = 0
        for start in range(0, len(evse_ids), 500):
            chunk = list(evse_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            version = self.db.next_in_sequence(tx, "outbox_version")
            cursor = tx.execute(
                "UPDATE outbox SET version = ?, state = ?, pending_since = COALESCE(pending_since, ?) "
                f"WHERE operator_id = ? AND action = ? AND state IN (?, ?) AND evse_id IN ({marks})",
                (
                    version, _S.PENDING.value, now, operator_id, Action.UPDATE.value,
                    _S.PENDING.value, _S.PARKED.value, *chunk,
                ),
            )  # fmt: skip
            released += max(0, cursor.rowcount)
        return released

    async def release(
        self, operator_id: OperatorID, records: Sequence[DataRecord], error: str, unsure_for: float
    ) -> None:
        now = self.clock()
        wanted = {r.evse_id: r for r in records}

        step: DataStep = outbox_rows.guarded(
            Event.RELEASED, lambda row, _: rules.released(row, error, now, now + unsure_for)
        )
        await self._lane_write(
            operator_id, lambda tx: outbox_rows.apply(tx, _ROWS, str(operator_id), wanted, step)
        )

    async def refuse(
        self, operator_id: OperatorID, records: Sequence[DataRecord], code: str, reason: str
    ) -> int:
        """Hubject refused these records; returns how many are dead (the others were re-classified)."""
        now = self.clock()
        wanted = {r.evse_id: r for r in records}

        step: DataStep = outbox_rows.guarded(
            Event.REFUSED, lambda row, sent: rules.refused(row, sent, code, reason, now)
        )

        def run(tx: Tx) -> int:
            changed = outbox_rows.apply(tx, _ROWS, str(operator_id), wanted, step)
            return sum(1 for _, _, after in changed if after.state is _S.DEAD)

        return await self._lane_write(operator_id, run)

    async def unknown_to_hubject(self, operator_id: OperatorID, keys: set[str]) -> set[str]:
        """A status push was answered 603 for these EvseIDs (``evse_key``s): their data is pending again
        (pushed as an insert), their status waits for it. Returns the EvseIDs matched."""
        now = self.clock()
        op = str(operator_id)

        def run(tx: Tx) -> set[str]:
            found = outbox_rows.matching(tx, _ROWS, op, keys)
            wanted = {e: DataRecord(e, ActionType.INSERT, "", None, 0) for e in found}
            outbox_rows.apply(tx, _ROWS, op, wanted, lambda row, _: rules.unknown_to_hubject(row, now))
            return found

        return await self._lane_write(operator_id, run)

    async def recover(self, unsure_for: float, operator_id: OperatorID | None = None) -> int:
        """At start: data pushes in flight when the process stopped are pending again and unsure.
        ``operator_id``: only that operator's (a replica taking over its lane, fenced)."""
        op = None if operator_id is None else str(operator_id)

        def run(tx: Tx) -> int:
            now = self.clock()
            return outbox_rows.recover_in_flight(tx, _ROWS, op, rules.recovered, now, now + unsure_for)

        return await operator_write(self.db, self.fence, op, run)

    async def settle(self, operator_id: OperatorID) -> tuple[int, float | None]:
        """Push once more the delivered rows whose doubt's quiet period is over (``rules.settle``), as the
        status outbox does. Returns how many became pending and the next time a doubt ends (wall clock)."""

        def run(tx: Tx) -> tuple[int, float | None]:
            return outbox_rows.settle(tx, _ROWS, str(operator_id), self.clock(), rules.settle)

        return await self._lane_write(operator_id, run)

    async def pending_count(self, operator_id: OperatorID) -> int:
        def run(tx: Tx) -> int:
            (count,) = tx.execute(
                "SELECT COUNT(*) FROM evse_data_outbox WHERE operator_id = ? AND state = ?",
                (str(operator_id), _S.PENDING.value),
            ).fetchone()
            return int(count)

        return await self.db.read(run)

    async def interrupted_fullload(self, operator_id: OperatorID) -> bool:
        def run(tx: Tx) -> bool:
            found = tx.execute(
                "SELECT fullload_started_at FROM evse_data_operator WHERE operator_id = ?",
                (str(operator_id),),
            ).fetchone()
            return found is not None and found[0] is not None

        return await self.db.read(run)

    # --- the data fullLoad --------------------------------------------------------------------------------

    _FULLLOAD_SET = "operator_id = ? AND action = ? AND state != ?"  # dead records would fail the request

    async def fullload_count(self, operator_id: OperatorID) -> int:
        def run(tx: Tx) -> int:
            (count,) = tx.execute(
                f"SELECT COUNT(*) FROM evse_data_outbox WHERE {self._FULLLOAD_SET}",
                (str(operator_id), Action.UPDATE.value, _S.DEAD.value),
            ).fetchone()
            return int(count)

        return await self.db.read(run)

    async def fullload_pages(
        self,
        operator_id: OperatorID,
        opened: Callable[[DataSnapshot], None],
        page_size: int = 1000,
    ) -> AsyncIterator[list[str]]:
        """The operator's data set, record JSON page by page from one consistent snapshot."""
        args = (str(operator_id), Action.UPDATE.value, _S.DEAD.value)
        async for page in snapshot_pages(
            self.db,
            table="evse_data_outbox",
            column="record",
            where=self._FULLLOAD_SET,
            args=args,
            sequence="evse_data_version",
            opened=lambda watermark, count: opened(DataSnapshot(watermark, count)),
            page_size=page_size,
        ):
            yield [record for _, record in page]

    async def fullload_starting(self, operator_id: OperatorID) -> None:
        def run(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO evse_data_operator (operator_id, fullload_started_at) VALUES (?, ?) "
                "ON CONFLICT (operator_id) DO UPDATE SET fullload_started_at = excluded.fullload_started_at",
                (str(operator_id), self.clock()),
            )

        await self._lane_write(operator_id, run)

    async def fullload_finished(
        self,
        operator_id: OperatorID,
        snapshot: DataSnapshot | None,
        sent_at: float,
        *,
        error: str | None = None,
        refusal: str | None = None,
    ) -> int:
        """After a data fullLoad. Acknowledged (``snapshot``): every row not changed since is what Hubject
        holds (``decide.fullload_delivered`` row by row); the status rows this made held are released.
        Returns how many were."""
        now = self.clock()
        op = str(operator_id)

        def run(tx: Tx) -> int:
            released = 0
            if snapshot is not None:
                wm, inflight, dead = snapshot.watermark, _S.IN_FLIGHT.value, _S.DEAD.value
                # what the set replaced: dead records were left out, so Hubject holds none of them now
                tx.execute(
                    "UPDATE evse_data_outbox SET held = 0, acked_record = NULL, acked_hash = NULL "
                    "WHERE operator_id = ? AND state = ? AND version <= ?",
                    (op, dead, wm),
                )
                # ``decide.fullload_delivered`` for every other row not changed since the snapshot, as one
                # statement for 100 k rows (tests/bridge/test_data_rules.py compares the two)
                tx.execute(
                    "UPDATE evse_data_outbox SET state = ?, "
                    "held = CASE WHEN action = ? THEN 1 ELSE 0 END, "
                    "acked_record = CASE WHEN action = ? THEN record ELSE NULL END, "
                    "acked_hash = CASE WHEN action = ? THEN record_hash ELSE NULL END, "
                    "delivered_at = ?, pending_since = NULL, sent_version = NULL, sent_action = NULL, "
                    "unsure = CASE WHEN unsure_until IS NULL OR ? >= unsure_until THEN 0 ELSE unsure END, "
                    "unsure_until = CASE WHEN unsure_until IS NULL OR ? >= unsure_until THEN NULL "
                    "ELSE unsure_until END, reclassified = 0, attempts = 0, last_error = NULL, "
                    "dead_code = NULL, dead_reason = NULL, dead_at = NULL "
                    "WHERE operator_id = ? AND version <= ? AND state NOT IN (?, ?)",
                    (
                        _S.DELIVERED.value, Action.UPDATE.value, Action.UPDATE.value, Action.UPDATE.value,
                        now, sent_at, sent_at, op, wm, inflight, dead,
                    ),
                )  # fmt: skip
                # statuses waiting for data Hubject holds now: a new version, and the status lane wakes
                version = self.db.next_in_sequence(tx, "outbox_version")
                cursor = tx.execute(
                    f"UPDATE outbox SET version = ?, state = ?, pending_since = COALESCE(pending_since, ?) "
                    f"WHERE operator_id = ? AND action = ? AND state IN (?, ?) AND {HELD}",
                    (
                        version, _S.PENDING.value, now, op, Action.UPDATE.value, _S.PENDING.value,
                        _S.PARKED.value,
                    ),
                )  # fmt: skip
                released = max(0, cursor.rowcount)
                tx.execute(
                    "INSERT INTO evse_data_operator (operator_id, last_fullload_at, last_fullload_count) "
                    "VALUES (?, ?, ?) ON CONFLICT (operator_id) DO UPDATE SET "
                    "last_fullload_at = excluded.last_fullload_at, "
                    "last_fullload_count = excluded.last_fullload_count, fullload_refusal = NULL, "
                    "last_error = NULL",
                    (op, now, snapshot.count),
                )
            tx.execute(
                "INSERT INTO evse_data_operator (operator_id, fullload_started_at, fullload_refusal, "
                "last_error, last_error_at) VALUES (?, NULL, ?, ?, ?) "
                "ON CONFLICT (operator_id) DO UPDATE SET fullload_started_at = NULL, "
                "fullload_refusal = COALESCE(excluded.fullload_refusal, "
                "evse_data_operator.fullload_refusal), "
                "last_error = COALESCE(excluded.last_error, evse_data_operator.last_error), "
                "last_error_at = COALESCE(excluded.last_error_at, evse_data_operator.last_error_at)",
                (op, refusal, error, now if error else None),
            )
            return released

        return await self._lane_write(operator_id, run)

    async def last_fullload(self, operator_id: OperatorID) -> tuple[float | None, int | None]:
        def run(tx: Tx) -> tuple[float | None, int | None]:
            found = tx.execute(
                "SELECT last_fullload_at, last_fullload_count FROM evse_data_operator WHERE operator_id = ?",
                (str(operator_id),),
            ).fetchone()
            return (None, None) if found is None else (found[0], found[1])

        return await self.db.read(run)

    async def set_dead(self, operator_id: OperatorID, keys: set[str], code: str, reason: str) -> set[str]:
        """A data fullLoad refusal named these EvseIDs: dead (left out of the next round)."""
        now = self.clock()
        op = str(operator_id)

        def run(tx: Tx) -> set[str]:
            found = {
                r[0]
                for r in tx.execute(
                    "SELECT evse_id FROM evse_data_outbox WHERE operator_id = ? AND action = ?",
                    (op, Action.UPDATE.value),
                )
                if evse_key(r[0]) in keys
            }
            for evse_id in found:
                tx.execute(
                    "UPDATE evse_data_outbox SET state = ?, dead_code = ?, dead_reason = ?, dead_at = ?, "
                    "pending_since = NULL, sent_version = NULL, sent_action = NULL "
                    "WHERE operator_id = ? AND evse_id = ?",
                    (_S.DEAD.value, code, reason, now, op, evse_id),
                )
            return found

        return await self._lane_write(operator_id, run)

    # --- reading: the status page, metrics, tests -----------------------------------------------------------

    async def lane_status(self, operator_id: OperatorID) -> DataLaneStatus:
        op = str(operator_id)

        def run(tx: Tx) -> DataLaneStatus:
            pending, oldest = tx.execute(
                "SELECT COUNT(*), MIN(pending_since) FROM evse_data_outbox "
                "WHERE operator_id = ? AND state = ?",
                (op, _S.PENDING.value),
            ).fetchone()
            dead = {
                r[0] or "?": int(r[1])
                for r in tx.execute(
                    "SELECT dead_code, COUNT(*) FROM evse_data_outbox WHERE operator_id = ? AND state = ? "
                    "GROUP BY dead_code",
                    (op, _S.DEAD.value),
                )
            }
            (held,) = tx.execute(
                f"SELECT COUNT(*) FROM outbox WHERE operator_id = ? AND action = ? AND state IN (?, ?) "
                f"AND NOT {HELD}",
                (op, Action.UPDATE.value, _S.PENDING.value, _S.PARKED.value),
            ).fetchone()
            reasons = [
                NotPushable(NotPushableReason(r[0]), r[1])
                for r in tx.execute(
                    "SELECT reason, detail FROM evse_data_not_pushable WHERE operator_id = ?", (op,)
                )
            ]
            found = tx.execute(
                "SELECT last_fullload_at, last_fullload_count, fullload_refusal, last_error "
                "FROM evse_data_operator WHERE operator_id = ?",
                (op,),
            ).fetchone()
            extra = (None, None, None, None) if found is None else tuple(found)
            return DataLaneStatus(int(pending), oldest, int(held), dead, summarise(reasons), *extra)

        return await self.db.read(run)
