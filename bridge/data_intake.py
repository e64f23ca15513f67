"""The EVSE data decision of one OCPI change, inside the intake's transaction (``bridge.intake`` calls it).

Like the status decision it is made from state, never from the change's delta: the EVSE's current OCPI
objects are mapped (``bridge.evse_data.map_evse``) and the data outbox row decided from the record's hash
(``bridge.evse_data.decide``), so a structural change whose record is unchanged pushes nothing.

When it runs (the status fast path must not pay for it, design §6.2):
- after a change that rewrote a Location document (PUT, or a PATCH with fields other than status): the
  EVSEs of the Location (all of them for a Location-level change, the addressed one otherwise), plus the
  EvseIDs those EVSEs held before (a rename withdraws the old one) and EVSEs that vanished from a re-PUT
  Location (treated as REMOVED, design [A-19]);
- after a status change only for the EvseIDs whose status row the intake just created or revived, or that
  became REMOVED (``Intake`` collects them): the data must be inserted (or withdrawn) before or with them.

An EvseID held by EVSEs in several Locations is mapped from the one this change touched (the status side
picks an owner; the data side follows the latest change).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.evse_data import NotPushable, NotPushableReason, RecordSettings, map_evse
from bridge.evse_data.decide import DataDesired
from bridge.mapping import Action
from bridge.observation import EvseObservation, OcpiEvseStatus
from bridge.ocpi.locations import MODELS, ObjectPath, Touched, WriteResult, validate
from bridge.ocpi.store import OcpiStore, oicp_key
from bridge.ocpi.versions import OcpiVersion
from bridge.ownership import PartyBinding, owner, source_key
from bridge.store.engine import Engine
from bridge.store.evse_data import DataOutboxStore
from bridge.store.port import Tx
from oicp.evse_data import EvseDataRecord
from oicp.ids import OperatorID

_WITHDRAWN = DataDesired(Action.DELETE, None, None, "")
RULES_VERSION = "1"  # bump when a mapping rule changes: the next start maps every EVSE again


class DataNotifier(Protocol):
    def notify_data(self, operator_id: OperatorID, *, pending: int) -> None: ...


@dataclass
class DataRecorded:
    """What one transaction did to the data outbox, for after its commit."""

    pending: dict[str, int] = field(default_factory=dict)  # operator -> rows that became pending

    def add(self, operator_id: str, became_pending: bool) -> None:
        if became_pending:
            self.pending[operator_id] = self.pending.get(operator_id, 0) + 1


class DataIntake:
    """Maps the EVSEs a change touched and decides their data outbox rows (operators with data push on)."""

    def __init__(
        self,
        store: DataOutboxStore,
        settings: Mapping[OperatorID, RecordSettings],
        operator_for: Callable[[str], OperatorID | None],
        binding: PartyBinding,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._settings = {OperatorID(op).canonical_key: s for op, s in settings.items()}
        self.operator_for = operator_for
        self.binding = binding
        self.clock = clock
        self.lanes: DataNotifier | None = None

    def pushes(self, operator_id: OperatorID) -> bool:
        return operator_id.canonical_key in self._settings

    # --- inside the intake's transaction ----------------------------------------------------------------

    def decide_write(
        self, tx: Tx, path: ObjectPath, result: WriteResult, checks: Iterable[str], recorded: DataRecorded
    ) -> None:
        """The data rows of one OCPI write (see the module docstring)."""
        now = self.clock()
        at = datetime.fromtimestamp(now, UTC)
        done: set[str] = set()
        if result.location is not None:
            location = result.location
            touched = {item.state.evse_uid: item for item in result.touched}
            evses = [e for e in location.evses or () if path.evse_uid is None or e.uid == path.evse_uid]
            listed = set()
            for evse in evses:
                listed.add(evse.uid)
                item = touched.get(evse.uid)
                raw = evse.evse_id if evse.evse_id is not None else (item.state.evse_id if item else None)
                key = oicp_key(raw)
                if key:
                    done.add(key)
                    source = f"{path.country_code}/{path.party_id}/{path.location_id}/{evse.uid}"
                    owned, holders = self._owned_by(tx, key, source)
                    if not owned:  # another EVSE holding it decides (from the holders just read)
                        self._decide_evse_id(tx, key, at, now, recorded, holders)
                        continue
                    self._decide(tx, key, source, path, location, evse, at, now, recorded)
            for item in result.touched:
                current = oicp_key(item.state.evse_id)
                previous = oicp_key(item.previous_evse_id)
                if previous and previous != current and previous not in done:
                    done.add(previous)
                    self._decide_evse_id(tx, previous, at, now, recorded)
                vanished = item.state.evse_uid not in listed and path.evse_uid is None
                if (
                    current
                    and current not in done
                    and (vanished or item.state.status is OcpiEvseStatus.REMOVED)
                ):
                    done.add(current)
                    self._decide_evse_id(tx, current, at, now, recorded)
        for key in checks:
            if key not in done:
                done.add(key)
                self._decide_evse_id(tx, key, at, now, recorded)

    def _holders(self, tx: Tx, key: str, operator_id: OperatorID) -> list[EvseObservation]:
        """The EVSEs of the parties allowed for ``operator_id`` that hold EvseID ``key`` now."""
        return [
            state
            for state in OcpiStore.evses_holding(tx, key)
            if self.binding.allows(operator_id, state.country_code, state.party_id)
        ]

    def _owned_by(self, tx: Tx, key: str, source: str) -> tuple[bool, list[EvseObservation] | None]:
        """Whether the EVSE ``source`` (country/party/location/uid) owns EvseID ``key`` — the status side's
        rule (``bridge.ownership.owner`` among the allowed parties' EVSEs holding it), so an EvseID several
        EVSEs hold gets its data and its status from the same one, not from whichever changed last. True
        when no other allowed EVSE holds it (the mapping then decides what to do with it). With it, the
        holders read (None if none were: no operator), which decide the EvseID when ``source`` is not its
        owner."""
        operator_id = self.operator_for(key)
        if operator_id is None:
            return True, None
        holders = self._holders(tx, key, operator_id)
        if len(holders) <= 1:
            return True, holders  # the commonest case: only this EVSE holds it
        chosen = owner(holders)
        return chosen is None or source_key(chosen) == source, holders

    def _pushing(
        self, key: str, country_code: str, party_id: str
    ) -> tuple[OperatorID, RecordSettings] | None:
        operator_id = self.operator_for(key)
        if operator_id is None:
            return None
        settings = self._settings.get(operator_id.canonical_key)
        if settings is None or not self.binding.allows(operator_id, country_code, party_id):
            return None
        return operator_id, settings

    def _decide(
        self,
        tx: Tx,
        key: str,
        source: str,
        path: ObjectPath,
        location: Any,
        evse: Any,
        at: datetime,
        now: float,
        recorded: DataRecorded,
    ) -> None:
        pushing = self._pushing(key, path.country_code, path.party_id)
        if pushing is None:
            return
        operator_id, settings = pushing
        op = str(operator_id)
        mapped = map_evse(location, evse, settings, at=at)
        if isinstance(mapped, NotPushable) and mapped.reason is NotPushableReason.PLANNED:
            return  # as the status table's 'skip' for PLANNED: Hubject keeps what it holds
        if isinstance(mapped, EvseDataRecord):
            desired = DataDesired(Action.UPDATE, mapped.canonical_json(), mapped.canonical_hash(), source)
            self.store.note_not_pushable(tx, op, source, None, now)
        else:
            desired = DataDesired(Action.DELETE, None, None, source)
            withdrawn = mapped.reason is NotPushableReason.REMOVED or evse.status == OcpiEvseStatus.REMOVED
            shown: NotPushable | None = None if withdrawn else mapped  # a REMOVED EVSE is no problem
            self.store.note_not_pushable(tx, op, source, shown, now)
        recorded.add(op, self.store.observe(tx, op, key, desired, now))

    def _decide_evse_id(
        self,
        tx: Tx,
        key: str,
        at: datetime,
        now: float,
        recorded: DataRecorded,
        holders: Sequence[EvseObservation] | None = None,
    ) -> None:
        """One EvseID from the EVSEs holding it now (``holders``, where the caller read them in this
        transaction): the owner's record, or a withdrawal if none does."""
        operator_id = self.operator_for(key)
        if operator_id is None or not self.pushes(operator_id):
            return
        chosen = owner(self._holders(tx, key, operator_id) if holders is None else holders)
        if chosen is not None:
            path = ObjectPath(chosen.country_code, chosen.party_id, chosen.location_id)
            version, document = OcpiStore.load_in(tx, path, self.store.db.dialect)
            if version is not None and document is not None:
                location = validate(MODELS[OcpiVersion(version)].location, document, "Location")
                evse = next((e for e in location.evses or () if e.uid == chosen.evse_uid), None)
                if evse is not None:
                    source = f"{path.country_code}/{path.party_id}/{path.location_id}/{evse.uid}"
                    self._decide(tx, key, source, path, location, evse, at, now, recorded)
                    return
        op = str(operator_id)
        recorded.add(op, self.store.observe(tx, op, key, _WITHDRAWN, now))

    # --- at start ------------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """What the records depend on besides the OCPI state: the operators' settings and these rules."""
        text = RULES_VERSION + "|" + "|".join(f"{k}={v!r}" for k, v in sorted(self._settings.items()))
        return hashlib.sha256(text.encode()).hexdigest()

    async def reconcile(self, db: Engine, *, force: bool = False, page: int = 200) -> int:
        """Map every stored EVSE again when the settings changed since the records were mapped (at start;
        also when data push was just switched on for an operator with EVSEs already stored), or always with
        ``force`` (before each data fullLoad: a time zone's UTC offset moves with daylight saving time,
        design [A-13]). ``page`` Locations per transaction, so the intake is never held up for long and
        memory stays bounded; an unchanged record pushes nothing. Returns how many EVSEs were mapped."""
        fingerprint = self.fingerprint()

        def current(tx: Tx) -> bool:
            found = tx.execute("SELECT value FROM bridge_meta WHERE name = 'evse_data_decisions'").fetchone()
            return found is not None and found[0] == fingerprint

        if not force and await db.read(current):
            return 0
        mapped, after = 0, ("", "", "")
        while True:

            def write(tx: Tx, after: tuple[str, str, str] = after) -> tuple[int, DataRecorded, Any]:
                now = self.clock()
                at = datetime.fromtimestamp(now, UTC)
                recorded, count = DataRecorded(), 0
                paths = [
                    ObjectPath(r[0], r[1], r[2])
                    for r in tx.execute(
                        "SELECT country_code, party_id, location_id FROM ocpi_location "
                        "WHERE (country_code, party_id, location_id) > (?, ?, ?) "
                        "ORDER BY country_code, party_id, location_id LIMIT ?",
                        (*after, page),
                    )
                ]
                for path in paths:
                    version, document = OcpiStore.load_in(tx, path, self.store.db.dialect)
                    if version is None or document is None:
                        continue
                    location = validate(MODELS[OcpiVersion(version)].location, document, "Location")
                    for evse in location.evses or ():
                        key = oicp_key(evse.evse_id)
                        source = f"{path.country_code}/{path.party_id}/{path.location_id}/{evse.uid}"
                        if key and self._owned_by(tx, key, source):  # else its owner's Location decides
                            self._decide(tx, key, source, path, location, evse, at, now, recorded)
                            count += 1
                if not paths:
                    tx.execute(
                        "INSERT INTO bridge_meta (name, value) VALUES ('evse_data_decisions', ?) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        (fingerprint,),
                    )
                    return count, recorded, None
                last = paths[-1]
                return count, recorded, (last.country_code, last.party_id, last.location_id)

            count, recorded, after = await db.write(write)
            mapped += count
            self.after_commit(recorded)
            if after is None:
                return mapped

    # --- after the commit --------------------------------------------------------------------------------

    def after_commit(self, recorded: DataRecorded) -> None:
        if self.lanes is not None:
            for operator, count in recorded.pending.items():
                self.lanes.notify_data(OperatorID(operator), pending=count)


def touched_removed(touched: Iterable[Touched]) -> list[str]:
    """EvseIDs of touched EVSEs that are REMOVED now (the status fast path can withdraw an EVSE)."""
    keys = []
    for item in touched:
        if item.state.status is OcpiEvseStatus.REMOVED:
            key = oicp_key(item.state.evse_id)
            if key:
                keys.append(key)
    return keys
