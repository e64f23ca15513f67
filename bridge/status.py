"""What the console, ``/status.json``, ``/metrics`` and ``oicp-bridge status`` show.

``read_store`` is a plain function over the store's ``Tx``, so the CLI can read a stopped bridge's store and
the admin app the running one's (on the store's reader thread, never on the event loop). The SQL on the
outbox tables outside ``bridge/store`` is a known wart (architecture review K3), kept in this one module.

``lane_report`` is the one place that reads the dispatcher's lanes (K1): when the dispatcher offers a
``status()`` read model, only that function changes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bridge.evse_data.mapping import NotPushable, NotPushableReason, summarise
from bridge.feeds import FeedKind, FeedReport, FeedState, is_stale, silence
from bridge.leadership import Leader
from bridge.store.dialect import SQLITE, Dialect
from bridge.store.port import Tx

if TYPE_CHECKING:
    from bridge.dispatcher import Lane

DEAD_LETTERS_SHOWN = 50
RECORD_STATES = ("pending", "in_flight", "delivered", "dead", "parked")
# RequestError.__str__ (oicp/errors.py) appends Hubject's Process-ID to the message that the dispatcher
# stores as the dead letter's reason; the outbox has no column of its own for it.
_PROCESS_ID = re.compile(r"\(Hubject Process-ID ([^)\s]+)\)")


class Overall(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # pushing works, but something needs a look (stale feed, dead letters, retries)
    NOT_READY = "not_ready"  # /ready answers 503


@dataclass(frozen=True, slots=True)
class OperatorRow:
    """One operator's outbox and push bookkeeping, as stored."""

    counts: dict[str, int]
    oldest_pending_since: float | None = None  # pending only: what the flush waits on
    oldest_unacknowledged_since: float | None = None  # pending and in flight: what Hubject lacks
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failing_since: float | None = None
    last_fullload_at: float | None = None
    last_fullload_count: int | None = None

    @property
    def unacknowledged(self) -> int:
        return self.counts.get("pending", 0) + self.counts.get("in_flight", 0)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    operator_id: str
    evse_id: str
    state: str  # dead | parked
    code: str | None
    reason: str | None
    source: str
    changed_at: float  # the OCPI last_updated of the refused status
    refused_at: float | None  # when Hubject refused it (None for rows refused before the store kept it)

    @property
    def process_id(self) -> str | None:
        match = _PROCESS_ID.search(self.reason or "")
        return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class PollRow:
    last_success_at: float | None
    last_error: str | None
    last_error_at: float | None
    last_full_at: float | None


@dataclass(frozen=True, slots=True)
class DataView:
    """One operator's EVSE data outbox (push_evse_data = true), as stored (bridge.store.evse_data)."""

    counts: dict[str, int]  # data records by delivery state
    held_statuses: int  # statuses waiting for their EVSE data to be acknowledged
    dead_by_code: dict[str, int]  # Hubject's code (or 'local': refused before sending) -> records
    not_pushable: list[str]  # "2 EVSEs: no OICP plug for GBT_DC"
    last_fullload_at: float | None = None
    last_fullload_count: int | None = None
    fullload_refusal: str | None = None
    last_error: str | None = None
    not_pushable_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoreView:
    operators: dict[str, OperatorRow]
    polls: dict[str, PollRow]
    dead_letters: list[DeadLetter]
    dead_total: int
    by_oicp_status: dict[str, int]
    by_ocpi_status: dict[str, int]
    not_pushed: dict[str, int]
    registered_parties: list[str] = field(default_factory=list)  # CPOs registered through credentials
    evse_data: dict[str, DataView] = field(default_factory=dict)  # operators pushing EVSE data


@dataclass(frozen=True, slots=True)
class LaneReport:
    """What the dispatcher knows about one operator's lane right now (not in the store)."""

    operator_id: str
    busy: bool
    failures: int
    last_error: str | None
    next_attempt_in: float  # seconds until the lane tries again after failures (0 when not failing)
    last_push_at: float | None
    refusal: str | None  # why the last fullLoad was refused by its guard


def lane_report(lane: Lane, monotonic_now: float) -> LaneReport:
    """The one read of the dispatcher's lane internals (see the module docstring)."""
    return LaneReport(
        str(lane.operator_id),
        lane.busy,
        lane.failures,
        lane.last_error,
        lane.backoff_remaining(monotonic_now),
        lane.last_push_at,
        lane.refusal,
    )


def read_store(
    conn: Tx, operator_ids: list[str], *, details: bool = True, dialect: Dialect = SQLITE
) -> StoreView:
    """One consistent read (a single read transaction) of everything the views show. ``details``: also
    the dead letters and the counts by status (the page and JSON); a scrape and readiness skip them, which
    saves two scans of the outbox."""
    # a savepoint, not BEGIN: on SQLite's autocommit reader it opens the transaction, and inside the read
    # transaction PostgreSQL's engine already runs every read in, it is valid too
    conn.execute("SAVEPOINT read_store")
    try:
        return _read_store(conn, operator_ids, details, dialect)
    finally:
        conn.execute("RELEASE read_store")


def _has_evse_data(conn: Tx, dialect: Dialect) -> bool:
    found = conn.execute(dialect.table_exists, ("evse_data_outbox",)).fetchone()
    return found is not None  # a store the daemon has not opened since its upgrade has no such table


def _in_state(table: str) -> str:
    """Rows of one operator (``?``) in one state (``?``), found on the table's ``(operator_id, state, …)``
    index. Written as a key list, not as ``state = ?``: where a query reads columns that index lacks,
    SQLite (no ANALYZE statistics) otherwise scans all of the operator's rows by primary key — 100 000 rows
    to find the few pending ones (7–35 ms for each /ready at 100 000 EVSEs)."""
    return f"evse_id IN (SELECT evse_id FROM {table} WHERE operator_id = ? AND state = ?)"


def _waiting_since(conn: Tx, dialect: Dialect) -> str:
    """Since when a status row waits for Hubject: a status held for its EVSE data (an operator pushing EVSE
    data, docs/evse-data.md) waits for the data lane, not for Hubject, and would age the backlog forever
    for an EVSE whose data cannot be made; the data lane's own figures show it."""
    if not _has_evse_data(conn, dialect):
        return "pending_since"
    if conn.execute("SELECT 1 FROM evse_data_outbox LIMIT 1").fetchone() is None:
        return "pending_since"  # no operator has EVSE data rows: the plain column, which the index holds
    return (
        "CASE WHEN action = 'update' AND EXISTS (SELECT 1 FROM evse_data_outbox AS x "
        "WHERE x.operator_id = outbox.operator_id) AND NOT EXISTS (SELECT 1 FROM evse_data_outbox AS d "
        "WHERE d.operator_id = outbox.operator_id AND d.evse_id = outbox.evse_id AND d.held = 1) "
        "THEN NULL ELSE pending_since END"
    )


def _read_store(conn: Tx, operator_ids: list[str], details: bool, dialect: Dialect) -> StoreView:
    counts: dict[str, dict[str, int]] = {op: dict.fromkeys(RECORD_STATES, 0) for op in operator_ids}
    oldest_pending: dict[str, float] = {}
    oldest_unacked: dict[str, float] = {}
    for operator_id, state, count in conn.execute(
        "SELECT operator_id, state, COUNT(*) FROM outbox GROUP BY operator_id, state"
    ):
        counts.setdefault(operator_id, dict.fromkeys(RECORD_STATES, 0))[state] = count
    # the backlog's age from the waiting rows alone, operator by operator on the outbox_pending index
    # (operator_id, state, pending_since): with EVSE data rows, ``_waiting_since`` is a CASE per row, which
    # over the whole table cost 0.15 s and 16 MB of page cache at 100 000 EVSEs, for every /ready
    waiting_since = _waiting_since(conn, dialect)
    for operator_id, by_state in counts.items():
        for state in ("pending", "in_flight"):
            if not by_state.get(state):
                continue
            (oldest,) = conn.execute(
                f"SELECT MIN({waiting_since}) FROM outbox WHERE operator_id = ? AND {_in_state('outbox')}",
                (operator_id, operator_id, state),
            ).fetchone()
            if oldest is None:
                continue
            if state == "pending":
                oldest_pending[operator_id] = oldest
            oldest_unacked[operator_id] = min(oldest, oldest_unacked.get(operator_id, oldest))
    kept: dict[str, Any] = {row["operator_id"]: row for row in conn.execute("SELECT * FROM operator_state")}
    operators = {}
    for operator_id, by_state in counts.items():
        row = kept.get(operator_id)
        operators[operator_id] = OperatorRow(
            by_state,
            oldest_pending.get(operator_id),
            oldest_unacked.get(operator_id),
            *(
                (
                    row["last_success_at"],
                    row["last_error"],
                    row["last_error_at"],
                    row["failing_since"],
                    row["last_fullload_at"],
                    row["last_fullload_count"],
                )
                if row is not None
                else ()
            ),
        )
    polls = {
        row["source"]: PollRow(
            row["last_success_at"], row["last_error"], row["last_error_at"], row["last_full_at"]
        )
        for row in conn.execute(
            "SELECT source, last_success_at, last_error, last_error_at, last_full_at FROM ocpi_sender_poll"
        )
    }
    letters, by_status, by_ocpi_status, not_pushed = [], {}, {}, {}
    if details:
        letters = [
            DeadLetter(
                row["operator_id"],
                row["evse_id"],
                row["state"],
                row["dead_code"],
                row["dead_reason"],
                row["source"],
                row["last_updated_us"] / 1_000_000,
                row["dead_at"],
            )
            for row in conn.execute(
                "SELECT operator_id, evse_id, state, dead_code, dead_reason, source, last_updated_us, "
                "dead_at FROM outbox WHERE state IN ('dead', 'parked') ORDER BY operator_id, evse_id LIMIT ?",
                (DEAD_LETTERS_SHOWN,),
            )
        ]
        by_status = dict(
            conn.execute(
                "SELECT oicp_status, COUNT(*) FROM outbox "
                "WHERE action = 'update' AND state NOT IN ('dead', 'parked') GROUP BY oicp_status ORDER BY 1"
            )
        )
        by_ocpi_status = dict(
            conn.execute("SELECT ocpi_status, COUNT(*) FROM outbox GROUP BY ocpi_status ORDER BY 1")
        )
        not_pushed = dict(conn.execute("SELECT reason, COUNT(*) FROM not_pushed GROUP BY reason ORDER BY 1"))
    dead_total = sum(c["dead"] + c["parked"] for c in counts.values())
    registered = [
        f"{cc}/{pid}" for cc, pid in conn.execute("SELECT country_code, party_id FROM ocpi_registration")
    ]
    return StoreView(
        operators, polls, letters, dead_total, by_status, by_ocpi_status, not_pushed, registered,
        _read_evse_data(conn, dialect),
    )  # fmt: skip


def _read_evse_data(conn: Tx, dialect: Dialect) -> dict[str, DataView]:
    """Per operator with EVSE data rows: counts, held statuses, dead letters by code, not pushable."""
    if not _has_evse_data(conn, dialect):
        return {}
    counts: dict[str, dict[str, int]] = {}
    for operator_id, state, count in conn.execute(
        "SELECT operator_id, state, COUNT(*) FROM evse_data_outbox GROUP BY operator_id, state"
    ):
        counts.setdefault(operator_id, dict.fromkeys(RECORD_STATES, 0))[state] = count
    dead: dict[str, dict[str, int]] = {}
    for operator_id in [op for op, by_state in counts.items() if by_state.get("dead")]:
        for code, count in conn.execute(
            "SELECT dead_code, COUNT(*) FROM evse_data_outbox "
            f"WHERE operator_id = ? AND {_in_state('evse_data_outbox')} GROUP BY dead_code",
            (operator_id, operator_id, "dead"),
        ):
            dead.setdefault(operator_id, {})[code or "?"] = count
    reasons: dict[str, list[NotPushable]] = {}
    for operator_id, reason, detail in conn.execute(
        "SELECT operator_id, reason, detail FROM evse_data_not_pushable"
    ):
        reasons.setdefault(operator_id, []).append(NotPushable(NotPushableReason(reason), detail))
    held: dict[str, int] = {}  # statuses waiting for their EVSE data, by operator with data rows
    for operator_id in counts:
        for state in ("pending", "parked"):
            (count,) = conn.execute(
                f"SELECT COUNT(*) FROM outbox AS o WHERE o.operator_id = ? AND {_in_state('outbox')} "
                "AND o.action = 'update' AND NOT EXISTS (SELECT 1 FROM evse_data_outbox AS d "
                "WHERE d.operator_id = o.operator_id AND d.evse_id = o.evse_id AND d.held = 1)",
                (operator_id, operator_id, state),
            ).fetchone()
            if count:
                held[operator_id] = held.get(operator_id, 0) + int(count)
    kept = {row["operator_id"]: row for row in conn.execute("SELECT * FROM evse_data_operator")}
    views = {}
    for operator_id in sorted({*counts, *reasons, *kept}):
        row = kept.get(operator_id)
        views[operator_id] = DataView(
            counts.get(operator_id, dict.fromkeys(RECORD_STATES, 0)),
            int(held.get(operator_id, 0)),
            dead.get(operator_id, {}),
            summarise(reasons.get(operator_id, [])),
            last_fullload_at=None if row is None else row["last_fullload_at"],
            last_fullload_count=None if row is None else row["last_fullload_count"],
            fullload_refusal=None if row is None else row["fullload_refusal"],
            last_error=None if row is None else row["last_error"],
            not_pushable_by_reason=dict(Counter(r.reason.value for r in reasons.get(operator_id, []))),
        )
    return views


def data_json(view: DataView) -> dict[str, Any]:
    """``/status.json`` operators[...].evse_data."""
    return {
        **view.counts,
        "held_statuses": view.held_statuses,
        "dead_by_code": view.dead_by_code,
        "not_pushable": view.not_pushable,
        "last_fullload": iso(view.last_fullload_at),
        "last_fullload_count": view.last_fullload_count,
        "fullload_refused": view.fullload_refusal,
        "last_error": view.last_error,
    }


@dataclass(frozen=True)
class Snapshot:
    """Everything the views show, at one moment. ``store`` is None when the store could not be read."""

    now: float
    started_at: float
    version: str
    store: StoreView | None
    store_error: str | None
    lanes: dict[str, LaneReport]
    feeds: list[FeedReport]
    stale_after: float
    problems: list[str] = field(default_factory=list)  # why not ready
    warnings: list[str] = field(default_factory=list)  # why degraded
    rejected_unknown: int = 0  # rejected OCPI tokens on URLs naming no known party
    replica: str = ""  # this bridge among the replicas (host:pid:random), "" where no process is asked
    leaders: list[Leader] = field(default_factory=list)  # who leads which operator and source

    @property
    def ready(self) -> bool:
        return not self.problems

    @property
    def overall(self) -> Overall:
        if self.problems:
            return Overall.NOT_READY
        return Overall.DEGRADED if self.warnings else Overall.OK

    @property
    def reason(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        if self.warnings:
            return "; ".join(self.warnings)
        return "pushing to Hubject, every feed alive"


def assess(
    store: StoreView | None, store_error: str | None, lanes: dict[str, LaneReport], feeds: list[FeedReport]
) -> tuple[list[str], list[str]]:
    """Readiness problems and warnings. Readiness (docs/contract.md): the store is open and no operator's
    pushes fail past the client's retry budget. A stale feed only warns (docs/operations.md)."""
    problems: list[str] = []
    if store is None:
        problems.append(f"the store cannot be read: {store_error}")
    for lane in lanes.values():
        if lane.failures > 0:
            problems.append(f"pushes for {lane.operator_id} are failing: {lane.last_error}")
        if lane.refusal is not None:
            problems.append(f"the fullLoad for {lane.operator_id} is refused: {lane.refusal}")
    warnings = [
        f"{'source' if f.state.kind is FeedKind.POLL else 'party'} {f.state.name} silent for "
        f"{describe_duration(f.silent_for)}"
        for f in feeds
        if f.stale
    ]
    if store is not None and store.dead_total:
        warnings.append(f"{store.dead_total} dead or parked record{'' if store.dead_total == 1 else 's'}")
    return problems, warnings


def describe_duration(seconds: float) -> str:
    """``75`` → ``"1 min 15 s"``; for people, not machines."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h"


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _age(epoch: float | None, now: float) -> float | None:
    return None if epoch is None else round(max(0.0, now - epoch), 3)


def operator_json(op: OperatorRow | None, lane: LaneReport | None, now: float) -> dict[str, Any]:
    op = op or OperatorRow(dict.fromkeys(RECORD_STATES, 0))
    failing = lane is not None and lane.failures > 0
    entry: dict[str, Any] = dict(op.counts)
    entry.update(
        unacknowledged=op.unacknowledged,
        oldest_pending_age_s=_age(op.oldest_pending_since, now),
        oldest_unacknowledged_age_s=_age(op.oldest_unacknowledged_since, now),
        last_success=iso(op.last_success_at),
        last_success_age_s=_age(op.last_success_at, now),
        last_error=op.last_error,
        last_error_at=iso(op.last_error_at),
        last_error_age_s=_age(op.last_error_at, now),
        # the last error stays on record after a recovery; this says whether it is still the current state
        recovered=op.last_error_at is not None
        and op.last_success_at is not None
        and op.last_success_at >= op.last_error_at,
        failing=failing,
        failing_since=iso(op.failing_since),
        last_fullload=iso(op.last_fullload_at),
        last_fullload_count=op.last_fullload_count,
    )
    if lane is not None:
        entry.update(
            pushing_now=lane.busy,
            consecutive_failures=lane.failures,
            next_attempt_in_s=round(lane.next_attempt_in, 3) if lane.failures else None,
            fullload_refused=lane.refusal,
        )
    return entry


def feed_json(report: FeedReport) -> dict[str, Any]:
    s = report.state
    return {
        "kind": s.kind.value,
        "name": s.name,
        "stale": report.stale,
        "failing": report.failing,
        "silent_for_s": report.silent_for,
        "last_success": iso(s.last_success_at),
        "last_change": iso(s.last_change_at),
        "last_error": s.last_error,
        "last_error_at": iso(s.last_error_at),
        "requests": s.requests,
        "errors": s.errors,
        "changes": s.changes,
        "rejected_authentications": s.rejected_auth,
    }


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "operator_id": letter.operator_id,
        "evse_id": letter.evse_id,
        "state": letter.state,
        "code": letter.code,
        "reason": letter.reason,
        "process_id": letter.process_id,
        "changed_at": iso(letter.changed_at),
        "refused_at": iso(letter.refused_at),
        "source": letter.source,
    }


def snapshot_json(snap: Snapshot, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``/status.json``: the same facts as the console."""
    store = snap.store
    operator_ids = list(dict.fromkeys([*(store.operators if store else {}), *snap.lanes]))
    body: dict[str, Any] = {
        "generated_at": iso(snap.now),
        "version": snap.version,
        "started_at": iso(snap.started_at),
        "uptime_s": round(snap.now - snap.started_at, 1),
        "state": snap.overall.value,
        "reason": snap.reason,
        "ready": snap.ready,
        "problems": snap.problems,
        "warnings": snap.warnings,
        "operators": {
            op: operator_json(store.operators.get(op) if store else None, snap.lanes.get(op), snap.now)
            | ({"evse_data": data_json(store.evse_data[op])} if store and op in store.evse_data else {})
            for op in operator_ids
        },
        "feeds": [feed_json(f) for f in snap.feeds],
        "feed_stale_after_s": snap.stale_after,
        "records_by_oicp_status": store.by_oicp_status if store else {},
        "records_by_ocpi_status": store.by_ocpi_status if store else {},
        "dead_letters": [dead_letter_json(d) for d in store.dead_letters] if store else [],
        "dead_letters_total": store.dead_total if store else 0,
        "not_pushed": store.not_pushed if store else {},
        "replica": snap.replica,
        "leaders": [leader_json(leader) for leader in snap.leaders],
    }
    if history is not None:
        body["history"] = history
    return body


def leader_json(leader: Leader) -> dict[str, Any]:
    kind, _, name = leader.name.partition(":")
    return {
        "kind": kind,  # operator or source
        "name": name,
        "leader": leader.holder or None,  # None: nobody leads it now (a takeover is due)
        "term": leader.token,
        "lease_left_s": None if leader.expires_in == float("inf") else leader.expires_in,
        "this_replica": leader.mine,
    }


def read_status(
    conn: Tx, operator_ids: list[str], now: float, *, stale_after: float = 0.0, dialect: Dialect = SQLITE
) -> dict[str, Any]:
    """The ``status`` command's view of a store file (the daemon may be stopped: no lanes, no
    in-memory feed counts; polled sources from the store)."""
    store = read_store(conn, operator_ids, dialect=dialect)
    feeds = [_stored_feed(source, row, now, stale_after) for source, row in sorted(store.polls.items())]
    problems, warnings = assess(store, None, {}, feeds)
    snap = Snapshot(now, now, "", store, None, {}, feeds, stale_after, problems, warnings)
    body = snapshot_json(snap)
    for key in ("version", "started_at", "uptime_s", "ready", "problems", "state", "reason", "replica"):
        del body[key]  # facts of a running process, not of a file
    return body


def _stored_feed(source: str, row: PollRow, now: float, stale_after: float) -> FeedReport:
    state = FeedState(
        FeedKind.POLL,
        source,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
    )
    # Without the daemon's start time, a source that never completed a poll counts from the epoch.
    alive, start = row.last_success_at, row.last_success_at or 0.0
    failing = row.last_error_at is not None and (alive is None or row.last_error_at > alive)
    return FeedReport(
        state, round(silence(alive, start, now), 3), is_stale(alive, start, now, stale_after), failing
    )
