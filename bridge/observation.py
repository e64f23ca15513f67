"""What OCPI says about one EVSE, normalised across OCPI versions: the state the outbox is decided from
(``bridge.intake``; the OCPI store reports the EVSEs a change touched as ``EvseObservation``s)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class OcpiEvseStatus(StrEnum):
    """OCPI Status enum (2.1.1 and 2.2.1 mod_locations, "Status" enum): the same nine values."""

    AVAILABLE = "AVAILABLE"
    BLOCKED = "BLOCKED"
    CHARGING = "CHARGING"
    INOPERATIVE = "INOPERATIVE"
    OUTOFORDER = "OUTOFORDER"
    PLANNED = "PLANNED"
    REMOVED = "REMOVED"
    RESERVED = "RESERVED"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class EvseObservation:
    """What OCPI said about one EVSE at one moment, normalised across OCPI versions.

    ``evse_id`` is the OCPI ``evse_id`` as last seen for this EVSE (intake remembers it by uid, since
    OCPI lets it vanish when status becomes REMOVED), or None if the EVSE never had one.
    ``last_updated`` is the EVSE's OCPI ``last_updated``, timezone-aware UTC.
    ``publish`` is the location's ``publish`` flag (always True for OCPI 2.1.1, which has none).
    """

    country_code: str
    party_id: str
    location_id: str
    evse_uid: str
    evse_id: str | None
    status: OcpiEvseStatus
    last_updated: datetime
    publish: bool
