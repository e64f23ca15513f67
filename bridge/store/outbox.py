"""The durable outbox: one row per (operator, EvseID), read and written whole. A row mapper: every rule is a
pure function of ``bridge.outbox``; this module reads the rows a step touches, applies the rule and writes
the rows back. No state name appears in its SQL (states travel as parameters).

Set-based SQL stays where a rule runs over a whole operator (a 100 k-row fullLoad's settlement), written to
do exactly what the pure rule does row by row (tests/bridge/test_outbox_rules.py compares the two).

Coalescing is structural: one row per EvseID holds only the latest content, so a thousand changes to one
EVSE between two pushes are one record. ``version`` comes from one global sequence; a row is delivered only
if it still holds the version that was sent when Hubject answers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bridge import outbox as rules
from bridge.mapping import Action
from bridge.outbox import Desired, Record, RecordState, Row
from bridge.store import outbox_rows
from bridge.store.engine import Engine, lane_write, operator_write
from bridge.store.evse_data import HELD
from bridge.store.outbox_rows import OutboxRows
from bridge.store.pages import snapshot_pages
from bridge.store.port import Fence, Tx
from oicp.ids import EvseID, OperatorID
from oicp.models import EvseStatus

# The row's columns in ``Row``'s order (``oicp_status`` holds ``Row.status``).
COLUMNS = (
    "action", "oicp_status", "ocpi_status", "last_updated_us", "source", "version", "state",
    "pending_since", "sent_version", "delivered_action", "delivered_status", "unsure", "unsure_until",
    "attempts", "last_error", "dead_code", "dead_reason", "dead_at", "delivered_at",
)  # fmt: skip
_S = RecordState


# the closed vocabularies by wire value, for reading rows (a dict look-up, cheaper than Enum(value))
_STATUSES: dict[str | None, EvseStatus | None] = {None: None, **{s.value: s for s in EvseStatus}}
_ACTIONS: dict[str | None, Action | None] = {None: None, **{a.value: a for a in Action}}
_ACTION = {a.value: a for a in Action}
_STATE = {s.value: s for s in RecordState}


def _status(value: str | None) -> EvseStatus | None:
    return _STATUSES[value]


def _action(value: str | None) -> Action | None:
    return _ACTIONS[value]


# The outbox row of an EvseID read in the statement that reads its EVSE (``outbox`` aliased ``o``, the
# status fast path's FIND_EVSE on PostgreSQL): ``evse_id``, ``COLUMNS``, ``operator_id``.
WITH_EVSE_COLUMNS = ", ".join(f"o.{c}" for c in ("evse_id", *COLUMNS, "operator_id"))


def rows_by_operator(found: Iterable[Sequence[Any]]) -> dict[str, Row]:
    """The outbox rows read as ``WITH_EVSE_COLUMNS`` (a LEFT JOIN: all NULL where the EvseID has none), by
    operator."""
    return {f[-1]: to_row(f) for f in found if f[0] is not None}


def to_row(found: Any) -> Row:
    """A row read with ``_SELECT`` (``evse_id`` first, then ``COLUMNS``), by index: cheaper than by name."""
    return Row(
        _ACTION[found[1]], _STATUSES[found[2]], found[3], found[4], found[5], found[6], _STATE[found[7]],
        found[8], found[9], _ACTIONS[found[10]], _STATUSES[found[11]], bool(found[12]), found[13],
        found[14], found[15], found[16], found[17], found[18], found[19],
    )  # fmt: skip


def to_params(operator_id: str, evse_id: str, row: Row) -> tuple[Any, ...]:
    return (
        operator_id, evse_id, row.action.value, row.status.value if row.status else None, row.ocpi_status,
        row.last_updated_us, row.source, row.version, row.state.value, row.pending_since, row.sent_version,
        row.delivered_action.value if row.delivered_action else None,
        row.delivered_status.value if row.delivered_status else None, int(row.unsure), row.unsure_until,
        row.attempts, row.last_error, row.dead_code, row.dead_reason, row.dead_at, row.delivered_at,
    )  # fmt: skip


_ROWS: OutboxRows[Row] = outbox_rows.outbox_rows("outbox", COLUMNS, to_row, to_params)
_SELECT = _ROWS.select
_SELECT_WITH_OPERATOR = _ROWS.select_with_operator
_UPSERT = _ROWS.upsert

RowStep = Callable[[Row, Record], Row]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Observed:
    """What one ``observe`` did to a row (for the intake's counts and wake-ups)."""

    pending: bool  # the row is pending now and was not before: the lane has work
    created: bool  # a new EvseID for this operator
    revived: bool = False  # a withdrawn EvseID is to be shown again (its EVSE data must follow)
    settled: bool = False  # the row was pending and is not any more (back to what Hubject holds)


@dataclass(frozen=True, slots=True)
class LaneStatus:
    pending: int
    oldest_pending_since: float | None
    unacknowledged: int = 0  # pending + in flight: what Hubject has not yet acknowledged
    oldest_unacknowledged_since: float | None = None


@dataclass(frozen=True, slots=True)
class FullLoadSnapshot:
    """Where a fullLoad's consistent read stood: rows with version ≤ watermark are exactly as sent."""

    watermark: int
    count: int


@dataclass(frozen=True, slots=True)
class Recovered:
    records: int  # in flight when the process stopped: pending again, unsure
    interrupted_fullloads: tuple[str, ...]  # operators whose fullLoad was under way
    unsure_until: float | None  # the latest doubt among the operator rows (wall clock)


class OutboxStore:
    """The outbox tables: the intake's row step (inside its transaction) and the dispatcher's steps."""

    def __init__(
        self, db: Engine, *, clock: Callable[[], float] = time.time, fence: Fence | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        # Several replicas (``bridge.leadership``): checked in the transaction of each write of an operator's
        # lane, so a replica that lost the operator's lease changes nothing. None: one process (SQLite).
        self.fence = fence

    async def _lane_write(self, operator_id: OperatorID | str, fn: Callable[[Tx], T]) -> T:
        return await lane_write(self.db, self.fence, str(operator_id), fn)

    # --- intake: inside the caller's transaction -------------------------------------------------------

    def load(self, tx: Tx, operator_id: str, evse_id: str) -> Row | None:
        return outbox_rows.load(tx, _ROWS, operator_id, evse_id)

    def observe(
        self,
        tx: Tx,
        operator_id: str,
        evse_id: str,
        desired: Desired,
        now: float,
        known: Mapping[str, Row] | None = None,
    ) -> Observed:
        """Decide the row of (operator, EvseID) for its owner's current state (``bridge.outbox.observe``).
        ``known``: the EvseID's rows by operator, read earlier in this transaction (``rows_by_operator``)."""
        row = self.load(tx, operator_id, evse_id) if known is None else known.get(operator_id)
        if row is not None and (desired.action, desired.status) == row.content:
            if (desired.ocpi_status, desired.last_updated_us, desired.source) != (
                row.ocpi_status, row.last_updated_us, row.source,
            ):  # fmt: skip
                new = rules.observe(row, desired, row.version, now)
                assert new is not None
                tx.execute(_UPSERT, to_params(operator_id, evse_id, new))
            return Observed(pending=False, created=False)
        new = rules.observe(row, desired, self._next_version(tx), now)
        if new is None:
            return Observed(pending=False, created=False)
        tx.execute(_UPSERT, to_params(operator_id, evse_id, new))
        was_pending = row is not None and row.state is _S.PENDING
        now_pending = new.state is _S.PENDING
        revived = row is not None and row.action is Action.DELETE and new.action is Action.UPDATE
        return Observed(
            pending=now_pending and not was_pending,
            created=row is None,
            revived=revived,
            settled=was_pending and not now_pending,
        )

    def _next_version(self, tx: Tx) -> int:
        return self.db.next_in_sequence(tx, "outbox_version")

    def evse_ids(self, tx: Tx) -> list[tuple[str, str]]:
        """Every (operator, EvseID) the outbox holds (the start-up reconciliation re-decides them)."""
        return [(r[0], r[1]) for r in tx.execute("SELECT operator_id, evse_id FROM outbox")]

    # --- the dispatcher's side --------------------------------------------------------------------------

    async def _rows(self, operator_id: OperatorID, records: Iterable[Record], step: RowStep) -> None:
        wanted = {str(r.evse_id): r for r in records}

        def run(tx: Tx) -> None:
            outbox_rows.apply(tx, _ROWS, str(operator_id), wanted, step)

        await self._lane_write(operator_id, run)

    async def recover(self, unsure_for: float, operator_id: OperatorID | None = None) -> Recovered:
        """At start: whatever was in flight when the process stopped is pending again and ``unsure``: whether
        (and when) Hubject applies that push is unknown (``bridge.outbox.recovered``). ``operator_id``: only
        that operator's (a replica taking over its lane, fenced), else every operator's."""
        op = None if operator_id is None else str(operator_id)
        only, args = outbox_rows.only_operator(op)

        def run(tx: Tx) -> Recovered:
            now = self.clock()
            records = outbox_rows.recover_in_flight(tx, _ROWS, op, rules.recovered, now, now + unsure_for)
            interrupted = tuple(
                r[0]
                for r in tx.execute(
                    f"SELECT operator_id FROM operator_state WHERE fullload_started_at IS NOT NULL{only}",
                    args,
                )
            )
            tx.execute(f"UPDATE operator_state SET fullload_started_at = NULL WHERE 1 = 1{only}", args)
            (latest,) = tx.execute(
                f"SELECT MAX(unsure_until) FROM outbox WHERE unsure = 1{only}", args
            ).fetchone()
            return Recovered(records, interrupted, latest)

        return await operator_write(self.db, self.fence, op, run)

    async def lane_status(self, operator_id: OperatorID) -> LaneStatus:
        def run(tx: Tx) -> LaneStatus:
            found = tx.execute(
                "SELECT COUNT(*) FILTER (WHERE state = ?), MIN(pending_since) FILTER (WHERE state = ?), "
                "COUNT(*), MIN(pending_since) FROM outbox WHERE operator_id = ? AND state IN (?, ?)",
                (_S.PENDING.value, _S.PENDING.value, str(operator_id), _S.PENDING.value, _S.IN_FLIGHT.value),
            ).fetchone()
            return LaneStatus(found[0], found[1], found[2], found[3])

        return await self.db.read(run)

    async def claim(
        self, operator_id: OperatorID, limit: int, *, ahead: bool = False, data_first: bool = False
    ) -> list[Record]:
        """Take up to ``limit`` pending records, oldest first, and mark them in flight.

        ``ahead``: claimed while a push is still out, so only rows no push is out for (``sent_version``
        unset): a row of that push that changed meanwhile waits for its answer, or its acknowledgement
        would find the row claimed again and take it out of flight (``bridge.outbox.delivered``).

        ``data_first`` (the operator pushes EVSE data): an update only once Hubject holds the EvseID's data
        (``bridge.store.evse_data.HELD``); the others wait, durably, in their coalesced rows."""
        unsent = " AND sent_version IS NULL" if ahead else ""
        if data_first:
            unsent += f" AND (action = '{Action.DELETE.value}' OR {HELD})"

        def run(tx: Tx) -> list[Record]:
            found = tx.execute(
                f"{_SELECT} WHERE operator_id = ? AND state = ?{unsent} "
                "ORDER BY pending_since, evse_id LIMIT ?",
                (str(operator_id), _S.PENDING.value, limit),
            ).fetchall()
            rows = [(f["evse_id"], to_row(f)) for f in found]
            tx.executemany(_UPSERT, [to_params(str(operator_id), e, rules.claimed(r)) for e, r in rows])
            return [Record(EvseID(e), r.action, r.status, r.version) for e, r in rows]

        return await self._lane_write(operator_id, run)

    async def delivered(
        self,
        operator_id: OperatorID,
        records: Sequence[Record],
        sent_at: float,
        *,
        doubt_for: float | None = None,
    ) -> None:
        """Hubject acknowledged ``records`` (pushed at ``sent_at``): remember what it now holds.
        ``doubt_for``: an attempt before the acknowledged one had an unknown outcome (``rules.delivered``)."""
        now = self.clock()
        wanted = {str(r.evse_id): r for r in records}
        doubt_until = None if doubt_for is None else now + doubt_for

        def run(tx: Tx) -> None:
            step: RowStep = outbox_rows.guarded(
                rules.Event.DELIVERED, lambda row, sent: rules.delivered(row, sent, sent_at, now, doubt_until)
            )
            outbox_rows.apply(tx, _ROWS, str(operator_id), wanted, step)
            self._operator_success(tx, str(operator_id), now)

        await self._lane_write(operator_id, run)

    async def release(
        self, operator_id: OperatorID, records: Sequence[Record], error: str, unsure_for: float
    ) -> None:
        """A push failed in a way that may pass, or its outcome is unknown: pending again, unsure."""
        now = self.clock()
        wanted = {str(r.evse_id): r for r in records}

        def run(tx: Tx) -> None:
            step: RowStep = outbox_rows.guarded(
                rules.Event.RELEASED, lambda row, _: rules.released(row, error, now, now + unsure_for)
            )
            outbox_rows.apply(tx, _ROWS, str(operator_id), wanted, step)
            self._operator_error(tx, str(operator_id), error, now)

        await self._lane_write(operator_id, run)

    async def refuse(
        self, operator_id: OperatorID, records: Sequence[Record], state: RecordState, code: str, reason: str
    ) -> None:
        """Hubject refused these records for good (dead) or for lack of EVSE data (parked)."""
        now = self.clock()
        step: RowStep = outbox_rows.guarded(
            rules.Event.REFUSED, lambda row, sent: rules.refused(row, sent, state, code, reason, now)
        )
        await self._rows(operator_id, records, step)

    async def settle(self, operator_id: OperatorID) -> tuple[int, float | None]:
        """Push once more the delivered rows whose doubt's quiet period is over (``bridge.outbox.settle``).
        Returns how many became pending and the next time a doubt ends (wall clock), if any."""

        def run(tx: Tx) -> tuple[int, float | None]:
            return outbox_rows.settle(tx, _ROWS, str(operator_id), self.clock(), rules.settle)

        return await self._lane_write(operator_id, run)

    def retry_dead(self, tx: Tx, operator_id: str | None, now: float) -> dict[str, int]:
        """Dead letters (of one operator, or all) pending again (``bridge.outbox.retried``), in the caller's
        transaction; the count per operator, for the caller to wake the lanes once committed."""
        where, args = "state = ?", [_S.DEAD.value]
        if operator_id is not None:
            where, args = where + " AND operator_id = ?", [*args, operator_id]
        rows = [
            (f["operator_id"], f["evse_id"], to_row(f))
            for f in tx.execute(f"{_SELECT_WITH_OPERATOR} WHERE {where}", args)
        ]
        tx.executemany(_UPSERT, [to_params(op, e, rules.retried(r, now)) for op, e, r in rows])
        counts: dict[str, int] = {}
        for op, _, _ in rows:
            counts[op] = counts.get(op, 0) + 1
        return counts

    async def operator_error(self, operator_id: OperatorID, error: str) -> None:
        await self._lane_write(
            operator_id, lambda tx: self._operator_error(tx, str(operator_id), error, self.clock())
        )

    @staticmethod
    def _operator_success(tx: Tx, operator_id: str, now: float) -> None:
        tx.execute(
            "INSERT INTO operator_state (operator_id, last_success_at) VALUES (?, ?) "
            "ON CONFLICT (operator_id) "
            "DO UPDATE SET last_success_at = excluded.last_success_at, failing_since = NULL",
            (operator_id, now),
        )

    @staticmethod
    def _operator_error(tx: Tx, operator_id: str, error: str, now: float) -> None:
        tx.execute(
            "INSERT INTO operator_state (operator_id, last_error_at, last_error, failing_since) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (operator_id) DO UPDATE SET last_error_at = excluded.last_error_at, "
            "last_error = excluded.last_error, "
            "failing_since = COALESCE(operator_state.failing_since, excluded.failing_since)",
            (operator_id, now, error, now),
        )

    # --- fullLoad ---------------------------------------------------------------------------------------

    @staticmethod
    def _fullload_where(excluded: Sequence[str], data_first: bool = False) -> str:
        where = "operator_id = ? AND action = ?"
        if data_first:  # only EVSEs whose data Hubject holds: one unknown EvseID fails the request (603)
            where += f" AND {HELD}"
        if excluded:
            where += f" AND evse_id NOT IN ({','.join('?' * len(excluded))})"
        return where

    async def fullload_pages(
        self,
        operator_id: OperatorID,
        excluded: frozenset[EvseID],
        opened: Callable[[FullLoadSnapshot], None],
        page_size: int = 1000,
        *,
        data_first: bool = False,
    ) -> AsyncIterator[list[tuple[str, str]]]:
        """The operator's set for a fullLoad, (EvseID, status) page by page from one consistent snapshot
        (``Database.snapshot``): every update row, dead and parked ones included (a fullLoad is their second
        chance), less ``excluded``. ``opened`` hears where the snapshot stands before the first page."""
        names = sorted(str(e) for e in excluded)
        where = self._fullload_where(names, data_first)
        args = (str(operator_id), Action.UPDATE.value, *names)
        async for page in snapshot_pages(
            self.db,
            table="outbox",
            column="oicp_status",
            where=where,
            args=args,
            sequence="outbox_version",
            opened=lambda watermark, count: opened(FullLoadSnapshot(watermark, count)),
            page_size=page_size,
        ):
            yield page

    async def fullload_starting(self, operator_id: OperatorID) -> None:
        """Before a fullLoad: pending rows are about to reach Hubject with other content than the delivered
        one, and the outcome may never be known (crash, timeout); mark them sent so a later change back to
        the delivered content is still pushed, and mark the fullLoad under way (a crash then is seen at the
        next start)."""

        def run(tx: Tx) -> None:
            tx.execute(
                "UPDATE outbox SET sent_version = version WHERE operator_id = ? AND state = ?",
                (str(operator_id), _S.PENDING.value),
            )
            tx.execute(
                "INSERT INTO operator_state (operator_id, fullload_started_at) VALUES (?, ?) "
                "ON CONFLICT (operator_id) DO UPDATE SET fullload_started_at = excluded.fullload_started_at",
                (str(operator_id), self.clock()),
            )

        await self._lane_write(operator_id, run)

    async def fullload_count(self, operator_id: OperatorID, *, data_first: bool = False) -> int:
        def run(tx: Tx) -> int:
            (count,) = tx.execute(
                f"SELECT COUNT(*) FROM outbox WHERE {self._fullload_where((), data_first)}",
                (str(operator_id), Action.UPDATE.value),
            ).fetchone()
            return int(count)

        return await self.db.read(run)

    async def set_aside(
        self, operator_id: OperatorID, keys: set[str], state: RecordState, code: str, reason: str
    ) -> set[EvseID]:
        """A fullLoad named these EvseIDs (``bridge.outbox.evse_key``s: Hubject writes them with or without
        '*'; 603: parked, other codes: dead): kept out until the next one. Returns the operator's EvseIDs
        they matched (which the next round leaves out)."""
        now = self.clock()
        step: RowStep = outbox_rows.guarded(
            rules.Event.SET_ASIDE, lambda row, _: rules.set_aside(row, state, code, reason, now)
        )

        def run(tx: Tx) -> set[EvseID]:
            found = outbox_rows.matching(tx, _ROWS, str(operator_id), keys)
            wanted = {e: Record(EvseID(e), Action.UPDATE, None, 0) for e in found}
            outbox_rows.apply(tx, _ROWS, str(operator_id), wanted, step)
            return {EvseID(e) for e in found}

        return await self._lane_write(operator_id, run)

    async def fullload_finished(
        self,
        operator_id: OperatorID,
        snapshot: FullLoadSnapshot | None,
        excluded: frozenset[EvseID],
        sent_at: float,
        *,
        refusal: str | None = None,
        data_first: bool = False,
    ) -> None:
        """After a fullLoad. Acknowledged (``snapshot`` given): Hubject holds exactly the snapshot; rows not
        changed since (version ≤ watermark) are delivered (``bridge.outbox.fullload_delivered``, here as one
        statement for 100 k rows); rows changed since stay pending and follow as updates. Otherwise (failed
        or refused) only the bookkeeping changes."""
        now = self.clock()
        names = sorted(str(e) for e in excluded)

        def run(tx: Tx) -> None:
            op = str(operator_id)
            if snapshot is not None:
                not_excluded = f" AND evse_id NOT IN ({','.join('?' * len(names))})" if names else ""
                if data_first:  # rows left out for lack of data were not sent: Hubject holds no status
                    not_excluded += f" AND (action = '{Action.DELETE.value}' OR {HELD})"
                tx.execute(
                    "UPDATE outbox SET state = ?, delivered_action = action, delivered_status = oicp_status, "
                    "delivered_at = ?, pending_since = NULL, sent_version = NULL, "
                    "unsure = CASE WHEN unsure_until IS NULL OR ? >= unsure_until THEN 0 ELSE unsure END, "
                    "unsure_until = CASE WHEN unsure_until IS NULL OR ? >= unsure_until THEN NULL "
                    "ELSE unsure_until END, "
                    "attempts = 0, last_error = NULL, dead_code = NULL, dead_reason = NULL, dead_at = NULL "
                    f"WHERE operator_id = ? AND version <= ?{not_excluded}",
                    (_S.DELIVERED.value, now, sent_at, sent_at, op, snapshot.watermark, *names),
                )
                tx.execute(
                    "INSERT INTO operator_state (operator_id, last_success_at, last_fullload_at, "
                    "last_fullload_count) VALUES (?, ?, ?, ?) ON CONFLICT (operator_id) DO UPDATE SET "
                    "last_success_at = excluded.last_success_at, "
                    "last_fullload_at = excluded.last_fullload_at, "
                    "last_fullload_count = excluded.last_fullload_count, failing_since = NULL, "
                    "fullload_refused_at = NULL, fullload_refusal = NULL",
                    (op, now, now, snapshot.count),
                )
            tx.execute("UPDATE operator_state SET fullload_started_at = NULL WHERE operator_id = ?", (op,))
            if refusal is not None:
                tx.execute(
                    "INSERT INTO operator_state (operator_id, fullload_refused_at, fullload_refusal) "
                    "VALUES (?, ?, ?) ON CONFLICT (operator_id) DO UPDATE SET "
                    "fullload_refused_at = excluded.fullload_refused_at, "
                    "fullload_refusal = excluded.fullload_refusal",
                    (op, now, refusal),
                )

        await self._lane_write(operator_id, run)

    async def last_fullload(self, operator_id: OperatorID) -> tuple[float | None, int | None]:
        def run(tx: Tx) -> tuple[float | None, int | None]:
            found = tx.execute(
                "SELECT last_fullload_at, last_fullload_count FROM operator_state WHERE operator_id = ?",
                (str(operator_id),),
            ).fetchone()
            return (None, None) if found is None else (found[0], found[1])

        return await self.db.read(run)

    # --- reading for status and tests -------------------------------------------------------------------

    async def current_set(self, operator_id: OperatorID | None = None) -> dict[EvseID, EvseStatus]:
        """What Hubject should hold once everything is delivered: every non-dead, non-parked update row."""

        def run(tx: Tx) -> dict[EvseID, EvseStatus]:
            sql = "SELECT evse_id, oicp_status FROM outbox WHERE action = ? AND state NOT IN (?, ?)"
            args: tuple[str, ...] = (Action.UPDATE.value, _S.DEAD.value, _S.PARKED.value)
            if operator_id is not None:
                sql += " AND operator_id = ?"
                args = (*args, str(operator_id))
            return {EvseID(r[0]): EvseStatus(r[1]) for r in tx.execute(sql, args)}

        return await self.db.read(run)

    async def counts_by_state(self) -> dict[str, dict[str, int]]:
        def run(tx: Tx) -> dict[str, dict[str, int]]:
            result: dict[str, dict[str, int]] = {}
            for operator_id, state, count in tx.execute(
                "SELECT operator_id, state, COUNT(*) FROM outbox GROUP BY operator_id, state"
            ):
                result.setdefault(operator_id, {})[state] = count
            return result

        return await self.db.read(run)
