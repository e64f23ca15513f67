"""The EVSE data the simulated Hubject holds, and how each eRoamingPushEvseData ActionType changes it.
Pure: no I/O, no clock.

ActionType semantics are written down only for authentication data (OICP 2.3 EMP 02,
eRoamingPushAuthenticationData, "Action types"); Hubject's support pages apply the same words to EVSE data
(design shared/design/evse-data-mapping.md §6.3), so the simulator follows them:

- fullLoad: the operator's whole set is replaced by the records sent (an empty list deletes all);
- insert: "Hubject verifies that the provided data records do not already exist in the currently valid
  data status. If so, the transaction will be aborted, no data will be inserted, and the request will be
  answered with an error message. Error details will be provided with the AdditionalInfo field";
- update: "Hubject verifies that the provided data records do exist ... If not, the transaction will be
  aborted, no data will be updated";
- delete: the records sent are removed (unknown ones are ignored).

Aborted transactions answer code 009 (Data transaction error). Before any of that, every EvseID must
belong to the envelope's OperatorID and appear once (OICP 2.3 CPO 02, "EVSE consistency": 018).
Records are kept as the wire dicts that were sent (schema-valid, checked by the app), keyed by the
separator-free EvseID so ``DE*ABC*E1`` and ``DEABCE1`` are one EVSE.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from oicp.ids import EvseID, OperatorID
from oicp.models import ActionType
from oicp.simulator.state import PushOutcome

Record = dict[str, Any]


def evse_key(evse_id: str) -> str:
    """The separator-free, upper-case form of an EvseID (how Hubject writes them in AdditionalInfo)."""
    return evse_id.replace("*", "").strip().upper()


def _rejected(code: str, description: str, action: ActionType, ids: Iterable[str]) -> PushOutcome:
    listed = sorted(set(ids))
    return PushOutcome(
        accepted=False,
        code=code,
        description=description,
        additional_info=f"{action.value}: " + ", ".join(listed),
        unknown_evse_ids=tuple(EvseID(e) for e in listed),
    )


@dataclass
class EvseDataState:
    """EVSE data records per operator (keyed by separator-free OperatorID, then EvseID)."""

    _records: dict[str, dict[str, Record]] = field(default_factory=dict)
    _operator_ids: dict[str, OperatorID] = field(default_factory=dict)
    _operator_names: dict[str, str] = field(default_factory=dict)

    def _consistency(
        self, operator_id: OperatorID, action: ActionType, records: Sequence[Record]
    ) -> PushOutcome | None:
        foreign = [
            r["EvseID"]
            for r in records
            if EvseID(r["EvseID"]).operator_id.canonical_key != operator_id.canonical_key
        ]
        if foreign:
            return _rejected("018", "Inconsistent EvseID: not of this OperatorID.", action, foreign)
        seen: set[str] = set()
        repeated = []
        for record in records:
            key = evse_key(record["EvseID"])
            if key in seen:
                repeated.append(record["EvseID"])
            seen.add(key)
        if repeated:
            return _rejected("018", "Inconsistent EvseID: duplicated in the request.", action, repeated)
        return None

    def apply_push(
        self, operator_id: OperatorID, operator_name: str, action: ActionType, records: Sequence[Record]
    ) -> PushOutcome:
        """Apply one schema-valid push; all or nothing."""
        refused = self._consistency(operator_id, action, records)
        if refused is not None:
            return refused
        key = operator_id.canonical_key
        held = self._records.get(key, {})
        if action is ActionType.INSERT:
            existing = [r["EvseID"] for r in records if evse_key(r["EvseID"]) in held]
            if existing:
                return _rejected(
                    "009", "Data transaction error: EVSE data records already exist.", action, existing
                )
        if action is ActionType.UPDATE:
            missing = [r["EvseID"] for r in records if evse_key(r["EvseID"]) not in held]
            if missing:
                return _rejected(
                    "009", "Data transaction error: EVSE data records do not exist.", action, missing
                )
        held = {} if action is ActionType.FULL_LOAD else dict(held)
        for record in records:
            if action is ActionType.DELETE:
                held.pop(evse_key(record["EvseID"]), None)
            else:
                held[evse_key(record["EvseID"])] = dict(record)
        self._records[key] = held
        self._operator_ids[key] = operator_id
        self._operator_names[key] = operator_name
        return PushOutcome(accepted=True)

    def holds(self, evse_id: str) -> bool:
        """Whether any operator has EVSE data for this EvseID."""
        wanted = evse_key(evse_id)
        return any(wanted in held for held in self._records.values())

    def records(self, operator_id: OperatorID | str) -> dict[EvseID, Record]:
        held = self._records.get(OperatorID(operator_id).canonical_key, {})
        return {EvseID(record["EvseID"]): dict(record) for record in held.values()}

    def operators(self) -> list[tuple[OperatorID, str]]:
        return [(self._operator_ids[key], self._operator_names[key]) for key in sorted(self._records)]

    def count(self) -> int:
        return sum(len(held) for held in self._records.values())

    def reset(self) -> None:
        self._records.clear()
        self._operator_ids.clear()
        self._operator_names.clear()


def missing_data(state: EvseDataState, evse_ids: Iterable[EvseID]) -> PushOutcome | None:
    """What Hubject answers a status push naming EvseIDs whose data it does not hold: Result false, 603,
    "EVSE data records missing for EvseIDs: DE811E288B04491002" — the ids without ``*``, as Hubject writes
    them (recorded by WWCP_OICP's CPOAdapter, design §6.1). None if every EvseID has data."""
    missing = sorted({e for e in evse_ids if not state.holds(e)})
    if not missing:
        return None
    return PushOutcome(
        accepted=False,
        code="603",
        description="One or more EVSE data record not found!",
        additional_info="EVSE data records missing for EvseIDs: "
        + ", ".join(sorted({evse_key(e) for e in missing})),
        unknown_evse_ids=tuple(missing),  # as sent: a DIN EvseID without '*' is no EvseID any more
    )
