"""The intake service: one OCPI change, its outbox decisions and its bookkeeping in one transaction.

``put``/``patch``/``apply_sender_locations`` validate the change, then in ONE ``db.write``: apply it to the
OCPI state (``bridge.ocpi.store``), and for every EvseID the touched EVSEs hold now or held before, decide
the outbox row from the current OCPI state of the EVSE that owns that EvseID (``bridge.ownership``: of the
parties allowed for its operator; ``bridge.mapping``: what its status means on Hubject). Decided from
state, never from the change's delta: a repeated, reordered or missed change cannot leave a row wrong.

Only after the commit does it count metrics (a rolled-back write counts nothing) and tell the dispatcher
which operators gained pending rows (``LaneNotifier``), so a change for one operator wakes one lane.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.data_intake import DataIntake, DataRecorded, touched_removed
from bridge.mapping import Action, Push, Skip, SkipReason, StatusMapper
from bridge.metrics import Metrics
from bridge.observation import EvseObservation, OcpiEvseStatus
from bridge.ocpi.locations import Document, ObjectPath, Outcome, Touched, WriteResult
from bridge.ocpi.store import OcpiStore, oicp_key
from bridge.ocpi.versions import OcpiVersion
from bridge.outbox import Desired, Row, to_micros
from bridge.ownership import PartyBinding, owner, source_key
from bridge.store.engine import Engine
from bridge.store.outbox import OutboxStore
from bridge.store.port import Read, ReadAhead, Tx
from oicp.ids import EvseID, OperatorID

# Bump when a rule of the decision changes, so the next start re-decides every EvseID.
RULES_VERSION = "1"
KEYS_KEPT = 50_000  # raw evse_ids whose oicp_key the intake remembers (as StatusMapper does)


class LaneNotifier(Protocol):
    def notify(self, operator_id: OperatorID, *, pending: int, new_evses: int) -> None: ...


@dataclass
class Recorded:
    """What one transaction did, for after its commit."""

    pending: dict[OperatorID, int] = field(default_factory=dict)  # operator -> net change of pending rows
    new_evses: dict[OperatorID, int] = field(default_factory=dict)  # operator -> EvseIDs seen the first time
    observed: list[OcpiEvseStatus] = field(default_factory=list)  # touched EVSEs' OCPI statuses
    not_pushed: list[SkipReason] = field(default_factory=list)
    data_checks: set[str] = field(default_factory=set)  # EvseIDs whose EVSE data must be decided too
    data: DataRecorded = field(default_factory=DataRecorded)

    def add(self, other: Recorded) -> None:
        for mine, theirs in ((self.pending, other.pending), (self.new_evses, other.new_evses)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        self.observed += other.observed
        self.not_pushed += other.not_pushed
        self.data_checks |= other.data_checks
        for operator, count in other.data.pending.items():
            self.data.pending[operator] = self.data.pending.get(operator, 0) + count


class Decider:
    """Which operator row an EvseID decides, and to what: mapping + party binding. Pure."""

    def __init__(self, mapper: StatusMapper, binding: PartyBinding) -> None:
        self.mapper = mapper
        self.binding = binding
        self._operators: dict[str, OperatorID | None] = {}  # EvseID -> its configured operator (bounded)

    def fingerprint(self) -> str:
        text = f"{RULES_VERSION}|{self.mapper.fingerprint()}|{self.binding.fingerprint()}"
        return hashlib.sha256(text.encode()).hexdigest()

    def operator_for(self, evse_id: str) -> OperatorID | None:
        if evse_id in self._operators:
            return self._operators[evse_id]
        operator = self.mapper.operator_for(EvseID(evse_id)) if EvseID.is_valid(evse_id) else None
        if len(self._operators) >= KEYS_KEPT:
            self._operators.clear()
        self._operators[evse_id] = operator
        return operator

    def allowed(self, operator_id: OperatorID, state: EvseObservation) -> bool:
        return self.binding.allows(operator_id, state.country_code, state.party_id)


class Intake:
    """OCPI changes in, outbox rows out, in one transaction each."""

    def __init__(
        self,
        db: Engine,
        ocpi: OcpiStore,
        outbox: OutboxStore,
        decider: Decider,
        *,
        metrics: Metrics | None = None,
        lanes: LaneNotifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.ocpi = ocpi
        self.outbox = outbox
        self.decider = decider
        self.metrics = metrics
        self.lanes = lanes
        self.clock = clock
        self.data: DataIntake | None = None  # EVSE data (operators with push_evse_data), bridge.data_intake
        self._keys: dict[str, str] = {}  # raw evse_id -> oicp_key ('' for none), see _key
        self._observed: dict[OcpiEvseStatus, Any] | None = None
        self._skipped: dict[SkipReason, Any] = {}

    # --- what the receiver and the poller call -------------------------------------------------------

    async def get_object(self, path: ObjectPath) -> Document | None:
        return await self.ocpi.get_object(path)

    async def resolve_path(self, version: OcpiVersion, path: ObjectPath) -> ObjectPath:
        return await self.ocpi.resolve_path(version, path)

    async def put(self, version: OcpiVersion, path: ObjectPath, body: Any) -> WriteResult:
        """PUT replaces the Location, EVSE or Connector at ``path`` (mod_locations PUT)."""
        updated = self.ocpi.check_put(version, path, body)
        return await self._write(
            lambda tx, _ahead: self.ocpi.put_in(tx, version, path, body, updated), inline=False, path=path
        )

    async def patch(self, version: OcpiVersion, path: ObjectPath, body: Any) -> WriteResult:
        """PATCH merges the fields given into the stored object (mod_locations PATCH)."""
        merged, updated = self.ocpi.check_patch(version, path, body)
        # only the status fast path is short for sure; anything that loads a whole Location document runs on
        # the store's thread, so a 10 000-EVSE Location never holds the event loop (docs/benchmarks.md)
        # a status PATCH's read may be made ahead, with the other writes' reads of its group (PostgreSQL)
        status = self.ocpi.is_status_patch(path, merged)
        return await self._write(
            lambda tx, ahead: self.ocpi.patch_in(tx, version, path, merged, updated, ahead),
            inline=status,
            path=path,
            read=self.ocpi.status_read(path) if status else None,
        )

    async def apply_sender_locations(
        self, country_code: str, party_id: str, version: OcpiVersion, locations: Sequence[dict[str, Any]]
    ) -> int:
        """Upsert Locations fetched from a CPO's Locations sender, in one transaction; how many changed.
        An invalid one, one of another party or one dated in the future is skipped (logged)."""
        accepted = self.ocpi.check_sender_locations(country_code, party_id, version, locations)

        def write(tx: Tx) -> tuple[int, Recorded]:
            changed, recorded = 0, Recorded()
            for path, document, updated in accepted:
                result = self.ocpi.put_in(tx, version, path, document, updated)
                changed += result.outcome.value in ("created", "updated")
                decided = self._decide(tx, result.touched)
                self._decide_data(tx, path, result, decided)
                recorded.add(decided)
            return changed, recorded

        changed, recorded = await self.db.write(write)
        self._after_commit(recorded)
        return changed

    async def apply_observations(self, states: Sequence[EvseObservation]) -> None:
        """EVSE states observed one by one, outside a Location document (tests, and status sources that
        report EVSEs alone); an observation older than the stored state of its EVSE changes nothing."""

        def write(tx: Tx) -> Recorded:
            recorded = Recorded()
            for state in states:
                touched = self.ocpi.upsert_evse_state(tx, state)
                if touched is not None:
                    decided = self._decide(tx, [touched])
                    path = ObjectPath(state.country_code, state.party_id, state.location_id)
                    self._decide_data(tx, path, WriteResult(Outcome.UPDATED, (touched,)), decided)
                    recorded.add(decided)
            return recorded

        self._after_commit(await self.db.write(write))

    async def reconcile(self) -> int:
        """At start: if the configuration the decisions depend on (operators, parties, mapping, rules)
        changed since they were made, or EVSEs were stored before their EvseIDs were indexed, re-decide
        every EvseID. Returns how many were re-decided."""
        fingerprint = self.decider.fingerprint()

        def write(tx: Tx) -> tuple[int, Recorded]:
            filled = self.ocpi.fill_oicp_keys(tx)
            found = tx.execute("SELECT value FROM bridge_meta WHERE name = 'decisions'").fetchone()
            if filled == 0 and found is not None and found[0] == fingerprint:
                return 0, Recorded()
            evse_ids = set(self.ocpi.evse_ids(tx)) | {e for _, e in self.outbox.evse_ids(tx)}
            recorded = Recorded()
            for evse_id in sorted(evse_ids):
                self._decide_evse_id(tx, evse_id, set(), recorded)
            tx.execute(
                "INSERT INTO bridge_meta (name, value) VALUES ('decisions', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (fingerprint,),
            )
            return len(evse_ids), recorded

        count, recorded = await self.db.write(write)
        recorded.observed.clear()  # nothing was observed: the same states, decided again
        self._after_commit(recorded)
        return count

    # --- inside the transaction ------------------------------------------------------------------------

    async def _write(
        self,
        change: Callable[[Tx, ReadAhead | None], WriteResult],
        *,
        inline: bool,
        path: ObjectPath,
        read: Read | None = None,
    ) -> WriteResult:
        """``change`` and the decisions it calls for, in one write; with ``read``, the change's first
        statement, which the store may make ahead (``Engine.write_reading``)."""

        def write(tx: Tx, ahead: ReadAhead | None = None) -> tuple[WriteResult, Recorded]:
            result = change(tx, ahead)
            # with ``ahead``, a status change: the decisions write only rows of its EvseID (outbox, not-pushed
            # notes, EVSE data), which the change recorded in ``ahead`` for the group's later reads
            recorded = self._decide(tx, result.touched)
            self._decide_data(tx, path, result, recorded)
            return result, recorded

        if read is None:
            result, recorded = await self.db.write(write, inline=inline)
        else:
            result, recorded = await self.db.write_reading(read, write, inline=inline)
        self._after_commit(recorded)
        return result

    def _decide_data(self, tx: Tx, path: ObjectPath, result: WriteResult, recorded: Recorded) -> None:
        """The EVSE data rows of the change (``bridge.data_intake``): only after a change that rewrote the
        Location document, or for the few EvseIDs a status change created, revived or withdrew; a plain
        status PATCH costs one attribute test."""
        if self.data is None:
            return
        if result.location is None:  # the status fast path (or an EVSE observed alone)
            recorded.data_checks.update(touched_removed(result.touched))
            if not recorded.data_checks:
                return
        self.data.decide_write(tx, path, result, recorded.data_checks, recorded.data)

    def _key(self, evse_id: str | None) -> str | None:
        """``oicp_key`` remembered (bounded): the same few thousand ids come back with every change, and
        checking one against Hubject's pattern costs more than the rest of its decision."""
        if evse_id is None:
            return None
        key = self._keys.get(evse_id)
        if key is None:
            if len(self._keys) >= KEYS_KEPT:
                self._keys.clear()
            key = self._keys[evse_id] = oicp_key(evse_id) or ""
        return key

    def _decide(self, tx: Tx, touched: Iterable[Touched]) -> Recorded:
        """Re-decide every EvseID the touched EVSEs hold now or held before (a rename withdraws the old)."""
        recorded = Recorded()
        evse_ids: dict[str, tuple[EvseObservation, ...] | None] = {}
        known: dict[str, Mapping[str, Row]] = {}  # EvseID -> its outbox rows, where the store read them
        sources: set[str] = set()
        unlisted: set[str] = set()
        for item in touched:
            recorded.observed.append(item.state.status)
            source = source_key(item.state)
            sources.add(source)
            if not item.listed:
                unlisted.add(source)
            key, previous = self._key(item.state.evse_id), self._key(item.previous_evse_id)
            if key:
                evse_ids[key] = item.holders if key == previous and key not in evse_ids else None
                if key == previous and item.outbox is not None:
                    known[key] = item.outbox
            else:
                blank = item.state.evse_id is None or not item.state.evse_id.strip()
                reason = SkipReason.NO_EVSE_ID if blank else SkipReason.INVALID_EVSE_ID
                self._not_pushed(tx, item.state, reason, recorded)
            if previous and previous != key:
                evse_ids[previous] = None
        for evse_id, holders in evse_ids.items():
            self._decide_evse_id(tx, evse_id, sources, recorded, holders, unlisted, known.get(evse_id))
        return recorded

    def _decide_evse_id(
        self,
        tx: Tx,
        evse_id: str,
        touched: set[str],
        recorded: Recorded,
        holders: tuple[EvseObservation, ...] | None = None,
        unlisted: set[str] | frozenset[str] = frozenset(),
        known: Mapping[str, Row] | None = None,
    ) -> None:
        candidates = self.ocpi.evses_holding(tx, evse_id) if holders is None else holders
        operator_id = self.decider.operator_for(evse_id)
        if operator_id is None:
            for state in candidates:
                if source_key(state) in touched:
                    self._not_pushed(tx, state, SkipReason.NO_OPERATOR, recorded)
            return
        allowed = []
        for state in candidates:
            if self.decider.allowed(operator_id, state):
                allowed.append(state)
            elif source_key(state) in touched:
                self._not_pushed(tx, state, SkipReason.PARTY_NOT_ALLOWED, recorded)
        chosen = owner(allowed)
        if chosen is None:
            # no EVSE of an allowed party holds it any more (renamed, or never allowed): withdraw it
            desired = Desired(Action.DELETE, None, OcpiEvseStatus.REMOVED.value, 0, "")
        else:
            decision = self.decider.mapper.decide(chosen)
            if isinstance(decision, Skip):
                self._not_pushed(tx, chosen, decision.reason, recorded)
                return  # e.g. PLANNED: Hubject keeps what it holds
            assert isinstance(decision, Push)
            source = source_key(chosen)
            if source not in unlisted:
                self._pushed(tx, source)
            desired = Desired(
                decision.action, decision.status, chosen.status.value, to_micros(chosen.last_updated), source
            )  # fmt: skip
        observed = self.outbox.observe(tx, str(operator_id), evse_id, desired, self.clock(), known)
        if (observed.created or observed.revived) and self.data is not None and self.data.pushes(operator_id):
            recorded.data_checks.add(evse_id)  # its data must go before (and with) its first status
        if observed.pending:
            recorded.pending[operator_id] = recorded.pending.get(operator_id, 0) + 1
        elif observed.settled:  # the lane's count of pending rows goes down too (Dispatcher.notify)
            recorded.pending[operator_id] = recorded.pending.get(operator_id, 0) - 1
        if observed.created:
            recorded.new_evses[operator_id] = recorded.new_evses.get(operator_id, 0) + 1

    def _not_pushed(self, tx: Tx, state: EvseObservation, reason: SkipReason, recorded: Recorded) -> None:
        recorded.not_pushed.append(reason)
        tx.execute(
            "INSERT INTO not_pushed (source, evse_id, ocpi_status, reason, last_updated_us, seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET evse_id = excluded.evse_id, "
            "ocpi_status = excluded.ocpi_status, reason = excluded.reason, "
            "last_updated_us = excluded.last_updated_us, seen_at = excluded.seen_at",
            (
                source_key(state), state.evse_id, state.status.value, reason.value,
                to_micros(state.last_updated), self.clock(),
            ),
        )  # fmt: skip

    @staticmethod
    def _pushed(tx: Tx, source: str) -> None:
        tx.execute("DELETE FROM not_pushed WHERE source = ?", (source,))

    # --- after the commit ------------------------------------------------------------------------------

    def _after_commit(self, recorded: Recorded) -> None:
        if self.data is not None and recorded.data.pending:
            self.data.after_commit(recorded.data)
        if self.metrics is not None:
            if self._observed is None:  # the counters' children, looked up once (a lookup takes a lock)
                self._observed = {s: self.metrics.observations.labels(s.value) for s in OcpiEvseStatus}
                self._skipped = {r: self.metrics.not_pushed.labels(r.value) for r in SkipReason}
            for status in recorded.observed:
                self._observed[status].inc()
            for reason in recorded.not_pushed:
                self._skipped[reason].inc()
        if self.lanes is not None:
            for operator in recorded.pending.keys() | recorded.new_evses.keys():
                self.lanes.notify(
                    operator,
                    pending=recorded.pending.get(operator, 0),
                    new_evses=recorded.new_evses.get(operator, 0),
                )
