"""The simulated CPO's fleet: locations, EVSEs and their status over time. Pure: no I/O, clock injected.

The fleet is the *truth* the tests compare the bridge against. ``step()`` makes a batch of status changes
drawn from ``TRANSITIONS`` with a seeded RNG, so the same seed and clock give the same run. Every change
gets a strictly increasing ``last_updated`` (OCPI ordering is by ``last_updated``; two changes of one EVSE
must never share a timestamp), and bumps the location's ``last_updated`` too (OCPI 2.2.1 mod_locations,
Location object: "Timestamp when this Location or one of its EVSEs or Connectors were last updated").
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.observation import OcpiEvseStatus as S
from bridge.ocpi.versions import OcpiVersion

Clock = Callable[[], datetime]
Json = dict[str, Any]

# Next status after a change, with relative weights: mostly AVAILABLE <-> CHARGING, sometimes a fault or a
# reservation, rarely REMOVED (terminal: a removed EVSE never comes back).
TRANSITIONS: dict[S, tuple[tuple[S, int], ...]] = {
    S.AVAILABLE: (
        (S.CHARGING, 70),
        (S.RESERVED, 5),
        (S.BLOCKED, 4),
        (S.OUTOFORDER, 6),
        (S.INOPERATIVE, 3),
        (S.UNKNOWN, 10),
        (S.REMOVED, 2),
    ),
    S.CHARGING: ((S.AVAILABLE, 85), (S.OUTOFORDER, 5), (S.UNKNOWN, 10)),
    S.RESERVED: ((S.CHARGING, 60), (S.AVAILABLE, 40)),
    S.BLOCKED: ((S.AVAILABLE, 90), (S.CHARGING, 10)),
    S.OUTOFORDER: ((S.AVAILABLE, 85), (S.INOPERATIVE, 10), (S.REMOVED, 5)),
    S.INOPERATIVE: ((S.AVAILABLE, 80), (S.OUTOFORDER, 15), (S.REMOVED, 5)),
    S.UNKNOWN: ((S.AVAILABLE, 70), (S.CHARGING, 25), (S.OUTOFORDER, 5)),
    S.PLANNED: ((S.AVAILABLE, 90), (S.INOPERATIVE, 10)),
    S.REMOVED: (),
}

INITIAL_STATUSES: tuple[tuple[S, int], ...] = (
    (S.AVAILABLE, 60),
    (S.CHARGING, 28),
    (S.OUTOFORDER, 3),
    (S.INOPERATIVE, 2),
    (S.UNKNOWN, 4),
    (S.PLANNED, 3),
)

# ISO 3166-1 alpha-2 -> (alpha-3 for Location.country, time zone, latitude, longitude, cities)
COUNTRIES: dict[str, tuple[str, str, float, float, tuple[str, ...]]] = {
    "DE": ("DEU", "Europe/Berlin", 51.16, 10.45, ("Berlin", "Hamburg", "München", "Köln", "Leipzig")),
    "NL": ("NLD", "Europe/Amsterdam", 52.13, 5.29, ("Amsterdam", "Utrecht", "Rotterdam", "Arnhem")),
    "BE": ("BEL", "Europe/Brussels", 50.50, 4.47, ("Gent", "Brussel", "Antwerpen", "Leuven")),
    "FR": ("FRA", "Europe/Paris", 46.23, 2.21, ("Paris", "Lyon", "Lille", "Nantes")),
    "AT": ("AUT", "Europe/Vienna", 47.52, 14.55, ("Wien", "Graz", "Linz")),
    "CH": ("CHE", "Europe/Zurich", 46.82, 8.23, ("Zürich", "Bern", "Basel")),
    "DK": ("DNK", "Europe/Copenhagen", 56.26, 9.50, ("København", "Aarhus", "Odense")),
    "IT": ("ITA", "Europe/Rome", 41.87, 12.57, ("Roma", "Milano", "Torino")),
    "ES": ("ESP", "Europe/Madrid", 40.46, -3.75, ("Madrid", "Barcelona", "Valencia")),
    "GB": ("GBR", "Europe/London", 54.00, -2.00, ("London", "Leeds", "Bristol")),
}
STREETS = ("Hauptstraße", "Bahnhofstraße", "Kerkstraat", "Rue de la Gare", "Marktplatz", "Ringweg")

FIRST_LOCATION_NUMBER = 1001
MILLISECOND = timedelta(milliseconds=1)


def format_datetime(value: datetime) -> str:
    """OCPI DateTime: RFC 3339 in UTC with a ``Z`` and milliseconds (fits OCPI's string(25))."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_datetime(value: str) -> datetime:
    """An OCPI DateTime; no zone designator means UTC (OCPI 2.2.1 types, DateTime). Raises ValueError."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class SimEvse:
    uid: str
    evse_id: str
    status: S
    dc: bool
    created: datetime
    last_updated: datetime


@dataclass
class SimLocation:
    id: str
    number: int
    name: str
    address: str
    city: str
    postal_code: str
    latitude: float
    longitude: float
    created: datetime
    last_updated: datetime
    evses: list[SimEvse] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EvseChange:
    """One status change made by ``step()``: what a CPO would PATCH to a receiver."""

    location_id: str
    evse_uid: str
    evse_id: str
    previous: S
    status: S
    last_updated: datetime


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a Locations GET: the rendered locations and the size of the whole filtered set."""

    locations: list[Json]
    total: int


def _weighted(rng: random.Random, choices: tuple[tuple[S, int], ...]) -> S:
    values = [value for value, _ in choices]
    weights = [weight for _, weight in choices]
    return rng.choices(values, weights=weights, k=1)[0]


class CpoFleet:
    """N locations x M EVSEs of one CPO party, with realistic EvseIDs such as ``DE*OBD*E1001*1``."""

    def __init__(
        self,
        *,
        seed: int = 0,
        locations: int = 10,
        evses_per_location: int = 2,
        country_code: str = "DE",
        party_id: str = "OBD",
        operator_id: str | None = None,
        clock: Clock = system_clock,
    ) -> None:
        if country_code not in COUNTRIES:
            raise ValueError(f"country {country_code!r} not simulated; choose one of {', '.join(COUNTRIES)}")
        if locations < 0 or evses_per_location < 1:
            raise ValueError("need locations >= 0 and evses_per_location >= 1")
        self.country_code = country_code
        self.party_id = party_id
        self.operator_id = operator_id or f"{country_code}*{party_id}"
        self.operator_name = f"{party_id} Charging"
        self._rng = random.Random(seed)
        self._clock = clock
        self._last_tick = datetime.min.replace(tzinfo=UTC)
        self._locations: dict[str, SimLocation] = {}
        self._evses: list[tuple[SimLocation, SimEvse]] = []
        created = self._tick()
        for index in range(locations):
            self._add_location(FIRST_LOCATION_NUMBER + index, evses_per_location, created)

    # --- building --------------------------------------------------------------------------------

    def _add_location(self, number: int, evse_count: int, created: datetime) -> None:
        _alpha3, _zone, lat, lon, cities = COUNTRIES[self.country_code]
        rng = self._rng
        street = rng.choice(STREETS)
        location = SimLocation(
            id=f"LOC{number}",
            number=number,
            name=f"{street} {number}",
            address=f"{street} {rng.randint(1, 200)}",
            city=rng.choice(cities),
            postal_code=f"{rng.randint(10000, 99999)}",
            latitude=round(lat + rng.uniform(-1.5, 1.5), 6),
            longitude=round(lon + rng.uniform(-1.5, 1.5), 6),
            created=created,
            last_updated=created,
        )
        for index in range(1, evse_count + 1):
            evse = SimEvse(
                uid=f"{location.id}-{index}",
                evse_id=f"{self.operator_id}*E{number}*{index}",
                status=_weighted(rng, INITIAL_STATUSES),
                dc=index % 4 == 0,
                created=created,
                last_updated=created,
            )
            location.evses.append(evse)
            self._evses.append((location, evse))
        self._locations[location.id] = location

    def _tick(self) -> datetime:
        """The clock, made strictly increasing (two changes never share a ``last_updated``)."""
        now = self._clock()
        if now <= self._last_tick:
            now = self._last_tick + MILLISECOND
        self._last_tick = now
        return now

    # --- the truth -------------------------------------------------------------------------------

    @property
    def evse_count(self) -> int:
        return len(self._evses)

    def locations(self) -> Iterator[SimLocation]:
        return iter(self._locations.values())

    def location(self, location_id: str) -> SimLocation | None:
        return self._locations.get(location_id)

    def current_statuses(self) -> dict[str, S]:
        """Every EVSE's current status by its ``uid`` (unique across the fleet: ``LOC1001-1``)."""
        return {evse.uid: evse.status for _, evse in self._evses}

    def statuses_by_evse_id(self) -> dict[str, S]:
        return {evse.evse_id: evse.status for _, evse in self._evses}

    def step(self, changes: int | None = None) -> list[EvseChange]:
        """Make ``changes`` status changes (default: 1 % of the EVSEs, at least one); return them in order."""
        count = max(1, self.evse_count // 100) if changes is None else changes
        live = [pair for pair in self._evses if pair[1].status is not S.REMOVED]
        made: list[EvseChange] = []
        for _ in range(count):
            if not live:
                break
            location, evse = live[self._rng.randrange(len(live))]
            if evse.status is S.REMOVED:
                continue
            new = _weighted(self._rng, TRANSITIONS[evse.status])
            at = self._tick()
            made.append(EvseChange(location.id, evse.uid, evse.evse_id, evse.status, new, at))
            evse.status, evse.last_updated, location.last_updated = new, at, at
        return made

    # --- queries (the sender's GET) --------------------------------------------------------------

    def page(
        self,
        version: OcpiVersion,
        *,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> Page:
        """Locations with ``date_from <= last_updated < date_to`` (OCPI 2.2.1 mod_locations, GET Method),
        ordered by (last_updated, id), the slice ``[offset, offset + limit)``."""
        selected = [
            loc
            for loc in self._locations.values()
            if (date_from is None or loc.last_updated >= date_from)
            and (date_to is None or loc.last_updated < date_to)
        ]
        selected.sort(key=lambda loc: (loc.last_updated, loc.id))
        window = selected[offset : offset + limit]
        return Page([self.location_json(loc, version) for loc in window], len(selected))

    # --- rendering -------------------------------------------------------------------------------

    def location_json(self, location: SimLocation, version: OcpiVersion) -> Json:
        alpha3, zone, _, _, _ = COUNTRIES[self.country_code]
        body: Json = {}
        if version is OcpiVersion.V2_2_1:
            body |= {"country_code": self.country_code, "party_id": self.party_id}
        body["id"] = location.id
        if version is OcpiVersion.V2_2_1:
            body["publish"] = True
        else:
            body["type"] = "ON_STREET"
        body |= {
            "name": location.name,
            "address": location.address,
            "city": location.city,
            "postal_code": location.postal_code,
            "country": alpha3,
            "coordinates": {"latitude": f"{location.latitude:.6f}", "longitude": f"{location.longitude:.6f}"},
        }
        if version is OcpiVersion.V2_2_1:
            body["parking_type"] = "ON_STREET"
        body["evses"] = [self.evse_json(evse, version) for evse in location.evses]
        body["operator"] = {"name": self.operator_name}
        body["time_zone"] = zone
        body["last_updated"] = format_datetime(location.last_updated)
        return body

    def evse_json(self, evse: SimEvse, version: OcpiVersion) -> Json:
        return {
            "uid": evse.uid,
            "evse_id": evse.evse_id,
            "status": evse.status.value,
            "capabilities": ["REMOTE_START_STOP_CAPABLE", "RFID_READER"],
            "connectors": [self._connector_json(evse, version)],
            "physical_reference": evse.uid.rsplit("-", 1)[1],
            "last_updated": format_datetime(evse.last_updated),
        }

    def _connector_json(self, evse: SimEvse, version: OcpiVersion) -> Json:
        volts, amps = (920, 200) if evse.dc else (400, 32)
        connector: Json = {
            "id": "1",
            "standard": "IEC_62196_T2_COMBO" if evse.dc else "IEC_62196_T2",
            "format": "CABLE" if evse.dc else "SOCKET",
            "power_type": "DC" if evse.dc else "AC_3_PHASE",
        }
        if version is OcpiVersion.V2_2_1:
            connector |= {"max_voltage": volts, "max_amperage": amps}
        else:
            connector |= {"voltage": volts, "amperage": amps}
        connector["last_updated"] = format_datetime(evse.created)
        return connector

    @staticmethod
    def evse_patch_json(change: EvseChange) -> Json:
        """The body of a receiver PATCH for one change (OCPI requires ``last_updated`` in every PATCH)."""
        return {"status": change.status.value, "last_updated": format_datetime(change.last_updated)}
