"""Which OCPI EVSE owns an EvseID, and which OCPI parties may publish for an operator. Pure.

Only the party that owns an EVSE can change it: ``[[operators]] ocpi_parties`` lists the OCPI parties
(``CC/PID``) allowed to publish an operator's EVSEs; by default the one whose country_code and party_id are
the OperatorID's two parts (``DE*ABC`` → ``DE/ABC``), as OCPI and OICP both derive them from the same
eMI3 operator code. A hub that forwards several CPOs lists its own party explicitly.

Among the EVSEs of allowed parties whose ``evse_id`` is the EvseID (an EVSE moved to another Location, a
CPO that reuses an id), the owner is the one in service (not REMOVED) with the newest ``last_updated``;
with none in service, the newest withdrawn one, so the EvseID is withdrawn; with none at all (renamed
away), there is no owner and the EvseID is withdrawn too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bridge.observation import EvseObservation, OcpiEvseStatus
from oicp.ids import OperatorID


@dataclass(frozen=True, slots=True, order=True)
class PartyRef:
    country_code: str
    party_id: str

    @classmethod
    def parse(cls, text: str) -> PartyRef:
        """``"DE/ABC"`` (also ``DE*ABC``, ``DE-ABC``); raises ValueError."""
        for separator in "/*-":
            country, sep, party = text.strip().partition(separator)
            if sep:
                break
        else:
            raise ValueError(f"{text!r} is not an OCPI party: write it as COUNTRY/PARTY, e.g. DE/ABC")
        country, party = country.strip().upper(), party.strip().upper()
        if len(country) != 2 or not country.isalpha() or len(party) != 3 or not party.isalnum():
            raise ValueError(
                f"{text!r} is not an OCPI party: COUNTRY (2 letters)/PARTY (3 letters or digits)"
            )
        return cls(country, party)

    def __str__(self) -> str:
        return f"{self.country_code}/{self.party_id}"


def default_party(operator_id: OperatorID) -> PartyRef | None:
    """The party an OperatorID names (``DE*ABC`` → ``DE/ABC``); None for a numeric (+49*123) one."""
    key = operator_id.canonical_key
    if len(key) == 5 and key[:2].isalpha():
        return PartyRef(key[:2].upper(), key[2:].upper())
    return None


ANSWERS_KEPT = 10_000  # (operator, party) pairs remembered; a few per deployment, bounded against junk


class PartyBinding:
    """The OCPI parties allowed to publish each operator's EVSEs."""

    def __init__(self, parties: Mapping[OperatorID, Sequence[PartyRef] | None]) -> None:
        self._allowed: dict[str, frozenset[PartyRef]] = {}
        for operator_id, listed in parties.items():
            fallback = default_party(operator_id)
            chosen = listed if listed is not None else ([fallback] if fallback is not None else [])
            self._allowed[operator_id.canonical_key] = frozenset(chosen)
        # the same question for every OCPI change: (operator as written, country, party) -> answer
        self._answers: dict[tuple[str, str, str], bool] = {}

    def allows(self, operator_id: OperatorID, country_code: str, party_id: str) -> bool:
        asked = (operator_id, country_code, party_id)
        answer = self._answers.get(asked)
        if answer is None:
            allowed = self._allowed.get(operator_id.canonical_key, frozenset())
            answer = PartyRef(country_code.upper(), party_id.upper()) in allowed
            if len(self._answers) >= ANSWERS_KEPT:
                self._answers.clear()
            self._answers[asked] = answer
        return answer

    def allowed(self, operator_id: OperatorID) -> frozenset[PartyRef]:
        return self._allowed.get(operator_id.canonical_key, frozenset())

    def fingerprint(self) -> str:
        return ";".join(f"{k}={','.join(sorted(map(str, v)))}" for k, v in sorted(self._allowed.items()))


def source_key(observation: EvseObservation) -> str:
    return "/".join(
        (observation.country_code, observation.party_id, observation.location_id, observation.evse_uid)
    )


def owner(candidates: Iterable[EvseObservation]) -> EvseObservation | None:
    """The EVSE whose state decides an EvseID, among the allowed candidates holding it."""
    if isinstance(candidates, list | tuple) and len(candidates) == 1:
        return candidates[0]  # the commonest case: one EVSE holds the EvseID
    ranked = sorted(
        candidates,
        key=lambda c: (c.status is not OcpiEvseStatus.REMOVED, c.last_updated, source_key(c)),
    )
    return ranked[-1] if ranked else None
