"""The durable outbox: the latest mapped status per (operator, EvseID) and its delivery state, in SQLite.

``OutboxStore`` is the ``ObservationSink`` of OCPI intake: ``accept`` runs inside the intake's own write
transaction, so an OCPI change and its outbox row commit together or not at all. The rules (ordering,
coalescing, when to push) are the pure ones of ``bridge.outbox``; this module only applies them to rows.

Coalescing is structural: one row per EVSE holds only the latest accepted status, so a thousand changes
to one EVSE between two pushes are one record. ``version`` comes from one global sequence; the dispatcher
pushes a version and marks delivered only if the row still holds that version when Hubject answers.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from bridge.mapping import Action, Push, Skip, StatusMapper
from bridge.observation import EvseObservation
from bridge.outbox import Incoming, Record, RecordState, Stored, Verdict, judge, needs_push, to_micros
from bridge.store.database import Database, connect
from oicp.ids import EvseID, OperatorID
from oicp.models import EvseStatus

PENDING, IN_FLIGHT, DELIVERED = (
    RecordState.PENDING.value,
    RecordState.IN_FLIGHT.value,
    RecordState.DELIVERED.value,
)
DEAD, PARKED = RecordState.DEAD.value, RecordState.PARKED.value


def source_key(observation: EvseObservation) -> str:
    return "/".join(
        (observation.country_code, observation.party_id, observation.location_id, observation.evse_uid)
    )


@dataclass
class AcceptCounts:
    """What ``accept`` did with the observations it was given (for metrics and tests)."""

    queued: int = 0
    unchanged: int = 0  # accepted, but Hubject already holds it
    older: int = 0
    duplicate: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


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


def _status(value: str | None) -> EvseStatus | None:
    return EvseStatus(value) if value is not None else None


def _action(value: str | None) -> Action | None:
    return Action(value) if value is not None else None


class OutboxStore:
    """The outbox tables behind the sink interface and the dispatcher's queries."""

    def __init__(
        self,
        db: Database,
        mapper: StatusMapper,
        *,
        clock: Callable[[], float] = time.time,
        on_accept: Callable[[EvseObservation, AcceptCounts], None] | None = None,
    ) -> None:
        self.db = db
        self.mapper = mapper
        self.clock = clock
        self.on_accept = on_accept

    # --- intake: the ObservationSink ------------------------------------------------------------------

    def accept(self, conn: sqlite3.Connection, observations: Sequence[EvseObservation]) -> None:
        counts = AcceptCounts()
        now = self.clock()
        for observation in observations:
            decision = self.mapper.decide(observation)
            if isinstance(decision, Skip):
                self._record_skip(conn, observation, decision, now)
                counts.skipped[decision.reason.value] = counts.skipped.get(decision.reason.value, 0) + 1
            else:
                conn.execute("DELETE FROM not_pushed WHERE source = ?", (source_key(observation),))
                self._apply(conn, observation, decision, now, counts)
            if self.on_accept is not None:
                self.on_accept(observation, counts)

    async def accept_now(self, observations: Sequence[EvseObservation]) -> None:
        """Accept observations in a transaction of their own (for callers without an OCPI change)."""
        await self.db.write(lambda conn: self.accept(conn, observations))

    def _record_skip(
        self, conn: sqlite3.Connection, observation: EvseObservation, skip: Skip, now: float
    ) -> None:
        conn.execute(
            "INSERT INTO not_pushed (source, evse_id, ocpi_status, reason, last_updated_us, seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET evse_id = excluded.evse_id, "
            "ocpi_status = excluded.ocpi_status, reason = excluded.reason, "
            "last_updated_us = excluded.last_updated_us, seen_at = excluded.seen_at "
            "WHERE excluded.last_updated_us >= not_pushed.last_updated_us",
            (
                source_key(observation),
                str(skip.evse_id) if skip.evse_id else observation.evse_id,
                observation.status.value,
                skip.reason.value,
                to_micros(observation.last_updated),
                now,
            ),
        )

    def _apply(
        self,
        conn: sqlite3.Connection,
        observation: EvseObservation,
        push: Push,
        now: float,
        counts: AcceptCounts,
    ) -> None:
        row = conn.execute(
            "SELECT action, oicp_status, last_updated_us, state, pending_since, delivered_action, "
            "delivered_status, sent_version, unsure FROM outbox WHERE operator_id = ? AND evse_id = ?",
            (str(push.operator_id), str(push.evse_id)),
        ).fetchone()
        incoming = Incoming(push.action, push.status, to_micros(observation.last_updated))
        stored = (
            None
            if row is None
            else Stored(Action(row["action"]), _status(row["oicp_status"]), row["last_updated_us"])
        )
        verdict = judge(stored, incoming)
        if verdict is Verdict.IGNORE_OLDER:
            counts.older += 1
            return
        if verdict is Verdict.IGNORE_DUPLICATE:
            counts.duplicate += 1
            return
        (version,) = conn.execute(
            "UPDATE sequence SET value = value + 1 WHERE name = 'outbox_version' RETURNING value"
        ).fetchone()
        delivered_action = None if row is None else _action(row["delivered_action"])
        delivered_status = None if row is None else _status(row["delivered_status"])
        previous_state = None if row is None else row["state"]
        if previous_state == PARKED and push.action is Action.UPDATE:
            state = PARKED  # Hubject has no EVSE data for it: wait for the next fullLoad (docs/bridge.md)
        elif (
            previous_state == IN_FLIGHT
            # a push of this row was sent and its outcome is unknown (timeout, crash, fullLoad cut short):
            # Hubject may hold that status rather than the delivered one, so never assume it holds this one
            or (row is not None and row["sent_version"] is not None)
            # such a push may even land after a later one was acknowledged: until the next fullLoad,
            # "delivered" is not proof of what Hubject holds
            or (row is not None and row["unsure"])
            or needs_push(incoming, delivered_action, delivered_status)
        ):
            state = PENDING
        else:
            state = DELIVERED
        if state == PENDING:
            counts.queued += 1
        else:
            counts.unchanged += 1
        keep_clock = row is not None and previous_state == PENDING and row["pending_since"] is not None
        pending_since = (row["pending_since"] if keep_clock else now) if state == PENDING else None
        conn.execute(
            "INSERT INTO outbox (operator_id, evse_id, action, oicp_status, ocpi_status, last_updated_us, "
            "version, state, pending_since, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (operator_id, evse_id) DO UPDATE SET action = excluded.action, "
            "oicp_status = excluded.oicp_status, ocpi_status = excluded.ocpi_status, "
            "last_updated_us = excluded.last_updated_us, version = excluded.version, state = excluded.state, "
            "pending_since = excluded.pending_since, source = excluded.source, "
            "dead_code = CASE WHEN excluded.state = 'parked' THEN outbox.dead_code END, "
            "dead_reason = CASE WHEN excluded.state = 'parked' THEN outbox.dead_reason END",
            (
                str(push.operator_id),
                str(push.evse_id),
                push.action.value,
                push.status.value if push.status else None,
                observation.status.value,
                incoming.last_updated_us,
                version,
                state,
                pending_since,
                source_key(observation),
            ),
        )

    # --- the dispatcher's side --------------------------------------------------------------------------

    async def recover(self) -> int:
        """At start: whatever was in flight when the process stopped is pending again. ``sent_version``
        stays set and the rows are ``unsure``: whether (and when) Hubject applies that push is unknown
        (see ``_apply``)."""

        def run(conn: sqlite3.Connection) -> int:
            now = self.clock()
            cursor = conn.execute(
                "UPDATE outbox SET state = 'pending', pending_since = COALESCE(pending_since, ?), unsure = 1 "
                "WHERE state = 'in_flight'",
                (now,),
            )
            return cursor.rowcount

        return await self.db.write(run)

    async def lane_status(self, operator_id: OperatorID) -> LaneStatus:
        def run(conn: sqlite3.Connection) -> LaneStatus:
            row = conn.execute(
                "SELECT COUNT(*) FILTER (WHERE state = 'pending'), "
                "MIN(pending_since) FILTER (WHERE state = 'pending'), COUNT(*), MIN(pending_since) "
                "FROM outbox WHERE operator_id = ? AND state IN ('pending', 'in_flight')",
                (str(operator_id),),
            ).fetchone()
            return LaneStatus(row[0], row[1], row[2], row[3])

        return await self.db.read(run)

    async def claim(self, operator_id: OperatorID, limit: int) -> list[Record]:
        """Take up to ``limit`` pending records, oldest first, and mark them in flight."""

        def run(conn: sqlite3.Connection) -> list[Record]:
            rows = conn.execute(
                "SELECT evse_id, action, oicp_status, version FROM outbox "
                "WHERE operator_id = ? AND state = 'pending' ORDER BY pending_since, evse_id LIMIT ?",
                (str(operator_id), limit),
            ).fetchall()
            conn.executemany(
                "UPDATE outbox SET state = 'in_flight', sent_version = version "
                "WHERE operator_id = ? AND evse_id = ?",
                [(str(operator_id), row["evse_id"]) for row in rows],
            )
            return [
                Record(
                    EvseID(row["evse_id"]), Action(row["action"]), _status(row["oicp_status"]), row["version"]
                )
                for row in rows
            ]

        return await self.db.write(run)

    async def delivered(self, operator_id: OperatorID, records: Sequence[Record]) -> None:
        """Hubject acknowledged ``records``: remember what it now holds; rows changed since stay pending."""
        now = self.clock()

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET delivered_action = ?, delivered_status = ?, delivered_version = ?, "
                "delivered_at = ?, attempts = 0, last_error = NULL, sent_version = NULL, "
                "state = CASE WHEN version = ? THEN 'delivered' ELSE state END, "
                "pending_since = CASE WHEN version = ? THEN NULL ELSE pending_since END "
                "WHERE operator_id = ? AND evse_id = ?",
                [
                    (
                        r.action.value,
                        r.status.value if r.status else None,
                        r.version,
                        now,
                        r.version,
                        r.version,
                        str(operator_id),
                        str(r.evse_id),
                    )
                    for r in records
                ],
            )
            self._operator_success(conn, operator_id, now)

        await self.db.write(run)

    async def release(self, operator_id: OperatorID, records: Sequence[Record], error: str) -> None:
        """A push failed in a way that may pass: the records are pending again, the error is kept.
        ``sent_version`` stays set: after a timeout or a reset Hubject may have applied the push, or may
        still apply it after a later push, so the rows are ``unsure`` until the next fullLoad."""
        now = self.clock()

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET state = CASE WHEN state = 'in_flight' THEN 'pending' ELSE state END, "
                "pending_since = COALESCE(pending_since, ?), attempts = attempts + 1, unsure = 1, "
                "last_error = ? WHERE operator_id = ? AND evse_id = ?",
                [(now, error, str(operator_id), str(r.evse_id)) for r in records],
            )
            self._operator_error(conn, operator_id, error, now)

        await self.db.write(run)

    async def refuse(
        self, operator_id: OperatorID, records: Sequence[Record], state: RecordState, code: str, reason: str
    ) -> None:
        """Hubject refused these records for good (dead) or for lack of EVSE data (parked)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET state = CASE WHEN version = ? THEN ? ELSE 'pending' END, "
                "pending_since = CASE WHEN version = ? THEN NULL ELSE COALESCE(pending_since, ?) END, "
                "sent_version = NULL, dead_code = ?, dead_reason = ?, last_error = ? "
                "WHERE operator_id = ? AND evse_id = ?",
                [
                    (
                        r.version,
                        state.value,
                        r.version,
                        self.clock(),
                        code,
                        reason,
                        reason,
                        str(operator_id),
                        str(r.evse_id),
                    )
                    for r in records
                ],
            )

        await self.db.write(run)

    async def park(self, operator_id: OperatorID, evse_ids: set[EvseID], code: str, reason: str) -> None:
        """A fullLoad named these EvseIDs unknown to Hubject (603): keep them out until the next one."""

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET state = 'parked', pending_since = NULL, sent_version = NULL, "
                "dead_code = ?, "
                "dead_reason = ? WHERE operator_id = ? AND evse_id = ? AND state != 'dead'",
                [(code, reason, str(operator_id), str(e)) for e in evse_ids],
            )

        await self.db.write(run)

    async def operator_error(self, operator_id: OperatorID, error: str) -> None:
        await self.db.write(lambda conn: self._operator_error(conn, operator_id, error, self.clock()))

    def _operator_success(self, conn: sqlite3.Connection, operator_id: OperatorID, now: float) -> None:
        conn.execute(
            "INSERT INTO operator_state (operator_id, last_success_at) VALUES (?, ?) "
            "ON CONFLICT (operator_id) "
            "DO UPDATE SET last_success_at = excluded.last_success_at, failing_since = NULL",
            (str(operator_id), now),
        )

    def _operator_error(
        self, conn: sqlite3.Connection, operator_id: OperatorID, error: str, now: float
    ) -> None:
        conn.execute(
            "INSERT INTO operator_state (operator_id, last_error_at, last_error, failing_since) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (operator_id) DO UPDATE SET last_error_at = excluded.last_error_at, "
            "last_error = excluded.last_error, "
            "failing_since = COALESCE(operator_state.failing_since, excluded.failing_since)",
            (str(operator_id), now, error, now),
        )

    # --- fullLoad ---------------------------------------------------------------------------------------

    def fullload_rows(
        self, operator_id: OperatorID, exclude: frozenset[EvseID], page_size: int = 1000
    ) -> tuple[FullLoadSnapshot, Iterator[list[tuple[str, str]]], Callable[[], None]]:
        """A consistent snapshot of the operator's set for a fullLoad, read page by page on a connection of
        its own (call from a worker thread). Returns the snapshot, an iterator of pages of (EvseID, status),
        and a function that ends the read transaction.
        """
        conn = connect(self.db.path)  # a dedicated connection: the snapshot spans the push
        conn.execute("BEGIN")
        (watermark,) = conn.execute("SELECT value FROM sequence WHERE name = 'outbox_version'").fetchone()
        excluded = sorted(str(e) for e in exclude)
        marks = ",".join("?" * len(excluded))
        where = "operator_id = ? AND action = 'update' AND state != 'dead'"
        if excluded:
            where += f" AND evse_id NOT IN ({marks})"
        (count,) = conn.execute(
            f"SELECT COUNT(*) FROM outbox WHERE {where}", (str(operator_id), *excluded)
        ).fetchone()

        def pages() -> Iterator[list[tuple[str, str]]]:
            cursor = conn.execute(
                f"SELECT evse_id, oicp_status FROM outbox WHERE {where} ORDER BY evse_id",
                (str(operator_id), *excluded),
            )
            while batch := cursor.fetchmany(page_size):
                yield [(row["evse_id"], row["oicp_status"]) for row in batch]

        def close() -> None:
            conn.execute("COMMIT")
            conn.close()

        return FullLoadSnapshot(watermark, count), pages(), close

    async def fullload_starting(self, operator_id: OperatorID) -> None:
        """Before a fullLoad: pending rows are about to reach Hubject with a status other than the delivered
        one, and the outcome may never be known (crash, timeout); mark them sent so a later change back to
        the delivered status is still pushed (see ``_apply``)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE outbox SET sent_version = version WHERE operator_id = ? AND state = 'pending'",
                (str(operator_id),),
            )

        await self.db.write(run)

    async def fullload_count(self, operator_id: OperatorID) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE operator_id = ? AND action = 'update' AND state != 'dead'",
                (str(operator_id),),
            ).fetchone()
            return int(count)

        return await self.db.read(run)

    async def fullload_delivered(
        self, operator_id: OperatorID, snapshot: FullLoadSnapshot, excluded: frozenset[EvseID]
    ) -> None:
        """After a successful fullLoad: Hubject holds exactly the snapshot. Rows not changed since (version ≤
        watermark) are delivered; rows changed since stay pending and follow as updates."""
        now = self.clock()
        excluded_list = sorted(str(e) for e in excluded)

        def run(conn: sqlite3.Connection) -> None:
            marks = ",".join("?" * len(excluded_list))
            not_excluded = f" AND evse_id NOT IN ({marks})" if excluded_list else ""
            conn.execute(
                "UPDATE outbox SET state = 'delivered', delivered_action = action, "
                "delivered_status = oicp_status, "
                "delivered_version = version, delivered_at = ?, pending_since = NULL, sent_version = NULL, "
                "unsure = 0, attempts = 0, last_error = NULL, dead_code = NULL, dead_reason = NULL "
                f"WHERE operator_id = ? AND version <= ? AND state != 'dead'{not_excluded}",
                (now, str(operator_id), snapshot.watermark, *excluded_list),
            )
            # Dead records are not in the fullLoad, so Hubject no longer holds them.
            conn.execute(
                "UPDATE outbox SET delivered_action = 'delete', delivered_status = NULL "
                "WHERE operator_id = ? AND state = 'dead'",
                (str(operator_id),),
            )
            conn.execute(
                "INSERT INTO operator_state "
                "(operator_id, last_success_at, last_fullload_at, last_fullload_count) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (operator_id) DO UPDATE SET "
                "last_success_at = excluded.last_success_at, last_fullload_at = excluded.last_fullload_at, "
                "last_fullload_count = excluded.last_fullload_count, failing_since = NULL",
                (str(operator_id), now, now, snapshot.count),
            )

        await self.db.write(run)

    async def last_fullload(self, operator_id: OperatorID) -> tuple[float | None, int | None]:
        def run(conn: sqlite3.Connection) -> tuple[float | None, int | None]:
            row = conn.execute(
                "SELECT last_fullload_at, last_fullload_count FROM operator_state WHERE operator_id = ?",
                (str(operator_id),),
            ).fetchone()
            return (None, None) if row is None else (row[0], row[1])

        return await self.db.read(run)

    # --- reading for status and tests -------------------------------------------------------------------

    async def current_set(self, operator_id: OperatorID | None = None) -> dict[EvseID, EvseStatus]:
        """What Hubject should hold once everything is delivered: every non-dead, non-parked update row."""

        def run(conn: sqlite3.Connection) -> dict[EvseID, EvseStatus]:
            sql = (
                "SELECT evse_id, oicp_status FROM outbox "
                "WHERE action = 'update' AND state NOT IN ('dead', 'parked')"
            )
            args: tuple[str, ...] = ()
            if operator_id is not None:
                sql += " AND operator_id = ?"
                args = (str(operator_id),)
            return {EvseID(row[0]): EvseStatus(row[1]) for row in conn.execute(sql, args)}

        return await self.db.read(run)

    async def counts_by_state(self) -> dict[str, dict[str, int]]:
        def run(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
            result: dict[str, dict[str, int]] = {}
            for operator_id, state, count in conn.execute(
                "SELECT operator_id, state, COUNT(*) FROM outbox GROUP BY operator_id, state"
            ):
                result.setdefault(operator_id, {})[state] = count
            return result

        return await self.db.read(run)
