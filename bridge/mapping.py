"""OCPI EVSE status → what the bridge does on Hubject. Pure: no I/O, no clock.

The table is docs/mapping.md (from the GreenFlux "Location Status Mapping" note, the OCPI Locations module
and the OICP EvseStatus type). Each OCPI status maps to an OICP ``EvseStatus`` to push, to ``delete``
(withdraw the EVSE's status record from Hubject) or to ``skip`` (push nothing). ``[mapping]`` in the
configuration overrides any row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from bridge.observation import EvseObservation, OcpiEvseStatus
from oicp.ids import EvseID, OperatorID
from oicp.models import EvseStatus


class Withdrawal(StrEnum):
    """Targets of the table that are not an OICP status."""

    SKIP = "skip"  # push nothing for this status
    DELETE = "delete"  # withdraw the EVSE's status record from Hubject (ActionType delete)


Target = EvseStatus | Withdrawal

# docs/mapping.md, "Default table" — one row per OCPI status.
DEFAULT_TABLE: dict[OcpiEvseStatus, Target] = {
    OcpiEvseStatus.AVAILABLE: EvseStatus.AVAILABLE,
    OcpiEvseStatus.CHARGING: EvseStatus.OCCUPIED,
    OcpiEvseStatus.OUTOFORDER: EvseStatus.OUT_OF_SERVICE,
    OcpiEvseStatus.INOPERATIVE: EvseStatus.OUT_OF_SERVICE,
    OcpiEvseStatus.UNKNOWN: EvseStatus.UNKNOWN,
    OcpiEvseStatus.RESERVED: EvseStatus.RESERVED,
    OcpiEvseStatus.BLOCKED: EvseStatus.OCCUPIED,
    OcpiEvseStatus.PLANNED: Withdrawal.SKIP,
    OcpiEvseStatus.REMOVED: Withdrawal.DELETE,
}

# docs/mapping.md, "OCPP connector statuses ... map through OCPI as in the note" (OCPP 1.6 ChargePointStatus).
OCPP_TO_OCPI: dict[str, OcpiEvseStatus] = {
    "Available": OcpiEvseStatus.AVAILABLE,
    "Preparing": OcpiEvseStatus.CHARGING,  # the note leaves it empty: the bay is taken
    "Charging": OcpiEvseStatus.CHARGING,
    "SuspendedEVSE": OcpiEvseStatus.CHARGING,
    "SuspendedEV": OcpiEvseStatus.CHARGING,
    "Finishing": OcpiEvseStatus.CHARGING,  # the note leaves it empty: the bay is taken
    "Reserved": OcpiEvseStatus.RESERVED,
    "Unavailable": OcpiEvseStatus.OUTOFORDER,
    "Faulted": OcpiEvseStatus.OUTOFORDER,
    "Unknown": OcpiEvseStatus.UNKNOWN,  # also: charge point offline
}


class Action(StrEnum):
    """What the outbox holds for an EVSE: a status to push, or a withdrawal."""

    UPDATE = "update"
    DELETE = "delete"


class SkipReason(StrEnum):
    """Why an observation is not pushed (counted and shown on the status page)."""

    NO_EVSE_ID = "no evse_id"
    INVALID_EVSE_ID = "evse_id does not match Hubject's EvseID pattern"
    NO_OPERATOR = "EvseID prefix belongs to no configured operator"
    PARTY_NOT_ALLOWED = "this OCPI party may not publish for the EvseID's operator (ocpi_parties)"
    STATUS_SKIPPED = "status is mapped to skip"


@dataclass(frozen=True, slots=True)
class Push:
    """Put this in the outbox for (operator_id, evse_id)."""

    operator_id: OperatorID
    evse_id: EvseID
    action: Action
    status: EvseStatus | None  # None for DELETE


@dataclass(frozen=True, slots=True)
class Skip:
    reason: SkipReason
    evse_id: EvseID | None = None
    operator_id: OperatorID | None = None  # set when a known EVSE is skipped: it may need withdrawing


Decision = Push | Skip


def map_ocpp_status(ocpp_status: str) -> OcpiEvseStatus:
    """An OCPP 1.6 connector status through OCPI (unknown values count as UNKNOWN)."""
    return OCPP_TO_OCPI.get(ocpp_status, OcpiEvseStatus.UNKNOWN)


def normalise_evse_id(raw: str | None) -> EvseID | None:
    """An OCPI ``evse_id`` as a Hubject EvseID, or None if it cannot be one.

    Upper case; ``-`` separators (as in the OCPI 2.1.1 examples, ``BE-BEC-E041503001``) become ``*``
    (docs/mapping.md, "Rules around the table").
    """
    if raw is None:
        return None
    text = raw.strip()
    for candidate in (text, text.replace("-", "*")):
        if EvseID.is_valid(candidate):
            return EvseID(candidate)
    return None


def parse_overrides(overrides: Mapping[str, str]) -> dict[OcpiEvseStatus, Target]:
    """``[mapping]`` entries (OCPI status → OICP status, ``skip`` or ``delete``) as table rows.

    Raises ValueError naming the first bad entry.
    """
    targets: dict[str, Target] = {s.value.lower(): s for s in EvseStatus}
    targets.update({w.value: w for w in Withdrawal})
    table: dict[OcpiEvseStatus, Target] = {}
    for key, value in overrides.items():
        try:
            ocpi_status = OcpiEvseStatus(key.strip().upper())
        except ValueError:
            statuses = ", ".join(s.value for s in OcpiEvseStatus)
            raise ValueError(f"[mapping] {key!r} is not an OCPI status (one of {statuses})") from None
        target = targets.get(value.strip().lower())
        if target is None:
            choices = ", ".join([s.value for s in EvseStatus] + [w.value for w in Withdrawal])
            raise ValueError(f"[mapping] {key} = {value!r}: not one of {choices}")
        table[ocpi_status] = target
    return table


IDS_KEPT = 50_000  # evse_ids whose check StatusMapper remembers (~300 bytes each)


class StatusMapper:
    """Decides, for each observation, what goes to Hubject for which operator."""

    def __init__(
        self,
        operators: Iterable[OperatorID],
        overrides: Mapping[OcpiEvseStatus, Target] | None = None,
        *,
        push_unpublished: bool = False,
    ) -> None:
        self.table: dict[OcpiEvseStatus, Target] = {**DEFAULT_TABLE, **(overrides or {})}
        # Operators by their separator-free key: DE*ABC and DEABC are one operator (OICP OperatorID).
        self._operators = {OperatorID(o).canonical_key: OperatorID(o) for o in operators}
        self.push_unpublished = push_unpublished
        # raw OCPI evse_id -> (EvseID, its configured operator): the same few thousand ids come back with
        # every status change, and checking one costs more than the rest of the decision (bounded)
        self._ids: dict[str, tuple[EvseID | None, OperatorID | None]] = {}

    def operator_for(self, evse_id: EvseID) -> OperatorID | None:
        return self._operators.get(evse_id.operator_id.canonical_key)

    def _identify(self, raw: str) -> tuple[EvseID | None, OperatorID | None]:
        known = self._ids.get(raw)
        if known is None:
            evse_id = normalise_evse_id(raw)
            known = (evse_id, None if evse_id is None else self.operator_for(evse_id))
            if len(self._ids) >= IDS_KEPT:
                self._ids.clear()
            self._ids[raw] = known
        return known

    def fingerprint(self) -> str:
        """What the decisions depend on besides the OCPI state (a change re-decides every EvseID)."""
        table = ",".join(f"{k.value}={v.value}" for k, v in sorted(self.table.items()))
        return f"{table};{','.join(sorted(self._operators))};unpublished={self.push_unpublished}"

    def decide(self, observation: EvseObservation) -> Decision:
        if observation.evse_id is None or not observation.evse_id.strip():
            return Skip(SkipReason.NO_EVSE_ID)
        evse_id, operator_id = self._identify(observation.evse_id)
        if evse_id is None:
            return Skip(SkipReason.INVALID_EVSE_ID)
        if operator_id is None:
            return Skip(SkipReason.NO_OPERATOR, evse_id)
        if not observation.publish and not self.push_unpublished:
            # OCPI 2.2.1 publish=false: not to be shown to the public. Whatever Hubject holds for it is
            # withdrawn; the outbox makes that a no-op for an EVSE Hubject never had.
            return Push(operator_id, evse_id, Action.DELETE, None)
        target = self.table[observation.status]
        if isinstance(target, EvseStatus):
            return Push(operator_id, evse_id, Action.UPDATE, target)
        if target is Withdrawal.DELETE:
            return Push(operator_id, evse_id, Action.DELETE, None)
        return Skip(SkipReason.STATUS_SKIPPED, evse_id, operator_id)
