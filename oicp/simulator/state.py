"""What the simulated Hubject holds, and how each push ActionType changes it. Pure: no I/O, no clock.

ActionType semantics (OICP 2.3 CPO 02, eRoamingPushEvseStatus: "The way how Hubject handles the
transferred data MUST be defined in the request field ActionType"; the text names the four options
without defining them further, so the simulator follows their plain meaning, as Hubject QA behaves):

- fullLoad: the operator's whole set is replaced by the records sent (EVSEs not sent disappear);
- update: each record is written, whether or not Hubject held it before (upsert);
- insert: each record is added; a record Hubject already holds is overwritten (Hubject does not reject it);
- delete: each EVSE sent is removed (its status in the request is ignored); unknown ones are ignored.

When the simulator is told which EvseIDs have EVSE data (``known_evse_ids``), a push naming any other
EvseID is answered Result=false with code 603 "Unknown EVSE ID" and changes nothing: Hubject validates
the request as a whole (it is stored as one new version), so one unknown record rejects the request.
The unknown ids are listed in AdditionalInfo so a pusher can drop them and send the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from oicp.ids import EvseID, OperatorID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """The result of applying one push: accepted, or rejected with an OICP code and its reason."""

    accepted: bool
    code: str = "000"
    description: str = "Success"
    additional_info: str | None = None
    unknown_evse_ids: tuple[EvseID, ...] = ()


@dataclass
class SimulatorState:
    """EVSE statuses per operator, keyed by the operator's separator-free OperatorID."""

    known_evse_ids: frozenset[EvseID] | None = None
    # a check every status push passes first (--require-evse-data: evse_data_state.missing_data)
    status_precheck: Callable[[Sequence[EvseID]], PushOutcome | None] | None = None
    _records: dict[str, dict[EvseID, EvseStatus]] = field(default_factory=dict)
    _operator_ids: dict[str, OperatorID] = field(default_factory=dict)
    _operator_names: dict[str, str] = field(default_factory=dict)

    def apply_push(
        self,
        operator_id: OperatorID,
        action: ActionType,
        records: Sequence[EvseStatusRecord],
        operator_name: str | None = None,
    ) -> PushOutcome:
        if self.status_precheck is not None:
            refused = self.status_precheck([record.evse_id for record in records])
            if refused is not None:
                return refused
        unknown = self._unknown(record.evse_id for record in records)
        if unknown:
            return PushOutcome(
                accepted=False,
                code="603",
                description="Unknown EVSE ID.",
                additional_info="No EVSE data for: " + ", ".join(unknown),
                unknown_evse_ids=unknown,
            )
        key = operator_id.canonical_key
        self._operator_ids[key] = operator_id
        if operator_name:
            self._operator_names[key] = operator_name
        held = self._records.setdefault(key, {})
        if action is ActionType.FULL_LOAD:
            held.clear()
        if action is ActionType.DELETE:
            for record in records:
                held.pop(record.evse_id, None)
        else:
            for record in records:
                held[record.evse_id] = record.evse_status
        return PushOutcome(accepted=True)

    def statuses(self, operator_id: OperatorID | str) -> dict[EvseID, EvseStatus]:
        key = OperatorID(operator_id).canonical_key
        return dict(self._records.get(key, {}))

    def all_statuses(self) -> dict[EvseID, EvseStatus]:
        merged: dict[EvseID, EvseStatus] = {}
        for held in self._records.values():
            merged.update(held)
        return merged

    def operators(self) -> list[tuple[OperatorID, str | None]]:
        return [(self._operator_ids[key], self._operator_names.get(key)) for key in sorted(self._records)]

    def reset(self) -> None:
        self._records.clear()
        self._operator_ids.clear()
        self._operator_names.clear()

    def _unknown(self, evse_ids: Iterable[EvseID]) -> tuple[EvseID, ...]:
        if self.known_evse_ids is None:
            return ()
        return tuple(sorted({evse_id for evse_id in evse_ids if evse_id not in self.known_evse_ids}))
