"""The OICP status-code catalogue and how each code is to be handled.

The table is OICP 2.3 CPO, 03_CPO_Data_Types, "CodeType (list of error and status codes)", with
one column added: the disposition this library gives each code when it comes back in an
eRoamingAcknowledgement.

- SUCCESS: the operation was performed.
- RETRYABLE: a transient condition on Hubject's side; the same request may succeed later.
- PERMANENT: the request (or a record in it) is wrong, or the client is not entitled to it;
  repeating it unchanged will fail again. These are never retried.

Codes this table does not know (Hubject may add some) are treated as RETRYABLE: a retry policy
bounds the attempts, and an unknown answer must not be allowed to drop data silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from oicp._hints import CODE_HINTS


class Disposition(StrEnum):
    SUCCESS = "success"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


class Area(StrEnum):
    GENERAL = "General codes"
    INTERNAL = "Internal system codes"
    AUTHENTICATION = "Authentication codes"
    AUTHENTICATION_INTERNAL = "Authentication codes / Internal system codes"
    SESSION = "Session codes"
    EVSE = "EVSE codes"
    UNKNOWN = "Unknown"


S, R, P = Disposition.SUCCESS, Disposition.RETRYABLE, Disposition.PERMANENT

# code: (description as in the OICP table, area of usage, disposition)
CODE_CATALOGUE: dict[str, tuple[str, Area, Disposition]] = {
    "000": ("Success.", Area.GENERAL, S),
    "001": ("Hubject system error.", Area.INTERNAL, R),
    "002": ("Hubject database error.", Area.INTERNAL, R),
    "009": ("Data transaction error.", Area.INTERNAL, R),
    "017": ("Unauthorized Access.", Area.INTERNAL, P),
    "018": ("Inconsistent EvseID.", Area.INTERNAL, P),
    "019": ("Inconsistent EvcoID.", Area.INTERNAL, P),
    "021": ("System error.", Area.GENERAL, R),
    "022": ("Data error.", Area.GENERAL, P),
    "101": ("QR Code Authentication failed – Invalid Credentials.", Area.AUTHENTICATION, P),
    "102": ("RFID Authentication failed – invalid UID.", Area.AUTHENTICATION, P),
    "103": ("RFID Authentication failed – card not readable.", Area.AUTHENTICATION, P),
    "105": ("PLC Authentication failed - invalid EvcoID.", Area.AUTHENTICATION, P),
    "106": ("No positive authentication response.", Area.AUTHENTICATION_INTERNAL, P),
    "110": ("QR Code App Authentication failed – time out error.", Area.AUTHENTICATION, P),
    "120": (
        "PLC (ISO/ IEC 15118) Authentication failed – invalid underlying EvcoID.",
        Area.AUTHENTICATION,
        P,
    ),
    "121": ("PLC (ISO/ IEC 15118) Authentication failed – invalid certificate.", Area.AUTHENTICATION, P),
    "122": ("PLC (ISO/ IEC 15118) Authentication failed – time out error.", Area.AUTHENTICATION, P),
    "200": ("EvcoID locked.", Area.AUTHENTICATION, P),
    "210": ("No valid contract.", Area.SESSION, P),
    "300": ("Partner not found.", Area.SESSION, P),
    "310": ("Partner did not respond.", Area.SESSION, R),
    "320": ("Service not available.", Area.SESSION, R),
    "400": ("Session is invalid.", Area.SESSION, P),
    "501": ("Communication to EVSE failed.", Area.EVSE, R),
    "510": ("No EV connected to EVSE.", Area.EVSE, P),
    "601": ("EVSE already reserved.", Area.EVSE, P),
    "602": ("EVSE already in use/ wrong token.", Area.EVSE, P),
    "603": ("Unknown EVSE ID.", Area.EVSE, P),
    "604": ("EVSE ID is not Hubject compatible.", Area.EVSE, P),
    "700": ("EVSE out of service.", Area.EVSE, P),
}

# Codes that concern one EVSE record rather than the whole request: a pusher can drop (dead-letter)
# the records they name and send the rest again.
RECORD_LEVEL_CODES: frozenset[str] = frozenset({"018", "603", "604"})


@dataclass(frozen=True, slots=True)
class CodeInfo:
    code: str
    meaning: str
    area: Area
    disposition: Disposition

    @property
    def retryable(self) -> bool:
        return self.disposition is Disposition.RETRYABLE

    @property
    def success(self) -> bool:
        return self.disposition is Disposition.SUCCESS

    @property
    def record_level(self) -> bool:
        """The code concerns the EVSE records it names, not the whole request (``RECORD_LEVEL_CODES``)."""
        return self.code in RECORD_LEVEL_CODES

    @property
    def hint(self) -> str | None:
        """What an operator can do about this code (the library's one hint table), if anything."""
        return CODE_HINTS.get(self.code)


def classify(code: str) -> CodeInfo:
    """Look a StatusCode up in the catalogue; unknown codes are retryable (see module docstring)."""
    entry = CODE_CATALOGUE.get(code)
    if entry is None:
        return CodeInfo(code, "code not in the OICP 2.3 catalogue", Area.UNKNOWN, R)
    meaning, area, disposition = entry
    return CodeInfo(code, meaning, area, disposition)
