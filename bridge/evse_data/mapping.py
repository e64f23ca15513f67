"""OCPI Location + EVSE (2.1.1 or 2.2.1) + the operator's settings → an OICP ``EvseDataRecord``, or the
typed reason why the EVSE cannot be pushed. Pure: the same inputs give the same record (and hash).

The tables are in ``tables.py``; docs/evse-data.md gives the why of each row and each rule here.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from bridge.evse_data.address import cut, split_house_number, street_text, utc_offset
from bridge.evse_data.hours import opening_times
from bridge.evse_data.settings import AddressSplit, RecordSettings, StationIdSource
from bridge.evse_data.tables import (
    AUTHENTICATION_BY_CAPABILITY,
    CLOSED_HOURS_PHRASE,
    ENERGY_TYPES,
    FACILITY_WORDS,
    IMPACT_FIELDS,
    LOCATION_TYPES,
    MODE_BY_POWER_TYPE,
    PARKING_TYPES,
    PAYMENT_BY_CAPABILITY,
    PHASES,
    PLUGS,
    PLUGS_BY_FORMAT,
    POWER_TYPES,
    RESTRICTION_PHRASES,
)
from bridge.mapping import normalise_evse_id
from bridge.ocpi.v211 import models as v211
from bridge.ocpi.v221 import models as v221
from oicp.evse_data import (
    INFO_TEXT_MAX,
    LANGUAGE_RE,
    Accessibility,
    AccessibilityLocation,
    Address,
    AuthenticationMode,
    ChargingFacility,
    DecimalDegree,
    EnergySource,
    EnvironmentalImpact,
    EvseDataRecord,
    GeoCoordinates,
    InfoText,
    PaymentOption,
    Plug,
    ValueAddedService,
)
from oicp.ids import EvseID

Location = v211.Location | v221.Location
Evse = v211.Evse | v221.Evse
Connector = v211.Connector | v221.Connector

POWER_MAX_KW = 999
VOLTAGE_MAX, AMPERAGE_MAX = 999, 99
IMPACT_MAX = 99999.0
IMAGE_URL_MAX = 200
STATION_ID_MAX = 50
SUB_OPERATOR_MAX = 100
CITY_MAX = 50
POOL_INSTANCE = re.compile(r"^[A-Z0-9][A-Z0-9*]{0,29}$")
_SIX_PLACES = Decimal("0.000001")


class NotPushableReason(StrEnum):
    """Why an EVSE gets no EvseDataRecord (counted and shown per operator)."""

    NO_EVSE_ID = "no evse_id"
    INVALID_EVSE_ID = "evse_id is not an OICP EvseID"
    REMOVED = "EVSE is REMOVED"
    PLANNED = "EVSE is PLANNED"
    UNPUBLISHED = "location is not published"
    NO_PLUG = "no OICP plug"
    INVALID_POWER = "negative connector voltage, amperage or power"
    INVALID_COORDINATES = "coordinates out of range"
    INVALID_COUNTRY = "country is not an ISO 3166-1 alpha-3 code"
    NO_CITY = "no city"
    NO_OPENING_TIMES = "no opening times (and open_24h_when_unknown = false)"


@dataclass(frozen=True, slots=True)
class NotPushable:
    reason: NotPushableReason
    detail: str = ""  # e.g. the connector standards without an OICP plug: "GBT_DC"
    evse_id: EvseID | None = None

    def describe(self) -> str:
        """``"no OICP plug for GBT_DC"``-style text for the status page."""
        return f"{self.reason.value} for {self.detail}" if self.detail else self.reason.value


MappedEvse = EvseDataRecord | NotPushable


def summarise(items: Iterable[NotPushable]) -> list[str]:
    """Counted lines for the status page, most frequent first: ``"2 EVSEs: no OICP plug for GBT_DC"``.
    Only the plug reason keeps its detail (the standards): the others' details name single EVSEs."""
    counts = Counter(i.describe() if i.reason is NotPushableReason.NO_PLUG else i.reason.value for i in items)
    return [
        f"{n} EVSE{'' if n == 1 else 's'}: {text}"
        for text, n in sorted(counts.items(), key=lambda c: (-c[1], c[0]))
    ]


def _kilowatts(watts: int) -> int:
    """W → integer kW, half up; at least 1 for a positive input (0 kW would read "no power"); ≤ 999."""
    kw = min((watts + 500) // 1000, POWER_MAX_KW)  # integers: exact for any size
    return max(kw, 1) if watts > 0 else kw


def _facility(connector: Connector) -> ChargingFacility | NotPushable:
    if isinstance(connector, v221.Connector):
        volts, amps, watts = connector.max_voltage, connector.max_amperage, connector.max_electric_power
    else:
        volts, amps, watts = connector.voltage, connector.amperage, None
    if volts < 0 or amps < 0 or (watts is not None and watts < 0):
        return NotPushable(NotPushableReason.INVALID_POWER, f"connector {connector.id}")
    power_type = POWER_TYPES[v221.PowerType(connector.power_type)]
    if watts is None:
        watts = volts * amps * PHASES[v221.PowerType(connector.power_type)]
    entry = PLUGS.get(connector.standard)
    mode = MODE_BY_POWER_TYPE.get(connector.standard, {}).get(power_type) or (entry[1] if entry else None)
    return ChargingFacility(
        power_type=power_type,
        power=_kilowatts(watts),
        # out-of-range optional values are left out, not clamped: a clamp would misinform
        voltage=volts if volts <= VOLTAGE_MAX else None,
        amperage=amps if amps <= AMPERAGE_MAX else None,
        charging_modes=None if mode is None else (mode,),
    )


def _plug(connector: Connector, settings: RecordSettings) -> Plug | None:
    override = settings.data.plugs.get(connector.standard)
    if override is not None:
        return override
    entry = PLUGS.get(connector.standard)
    if entry is None:
        return None  # no OICP value (or a value this table does not know): never a guess
    return PLUGS_BY_FORMAT.get((connector.standard, connector.format), entry[0])


def _plugs_and_facilities(
    evse: Evse, settings: RecordSettings
) -> tuple[tuple[Plug, ...], tuple[ChargingFacility, ...]] | NotPushable:
    plugs: list[Plug] = []
    facilities: list[ChargingFacility] = []
    unmapped: list[str] = []
    for connector in evse.connectors:
        plug = _plug(connector, settings)
        if plug is None:
            unmapped.append(str(connector.standard))
            continue
        facility = _facility(connector)
        if isinstance(facility, NotPushable):
            return facility
        if plug not in plugs:
            plugs.append(plug)
        if facility not in facilities:
            facilities.append(facility)
    if not plugs:
        return NotPushable(NotPushableReason.NO_PLUG, ", ".join(sorted(set(unmapped))))
    return tuple(plugs), tuple(facilities)


def _degrees(text: str, limit: int) -> str | None:
    value = Decimal(text).quantize(_SIX_PLACES, rounding=ROUND_HALF_UP)
    if not value.is_finite() or abs(value) > limit:
        return None
    return f"{value:.6f}"


def _coordinates(location: Location, evse: Evse) -> GeoCoordinates | NotPushable:
    point = evse.coordinates or location.coordinates
    latitude, longitude = _degrees(point.latitude, 90), _degrees(point.longitude, 180)
    if latitude is None or longitude is None:
        return NotPushable(NotPushableReason.INVALID_COORDINATES, f"{point.latitude},{point.longitude}")
    return GeoCoordinates(decimal_degree=DecimalDegree(latitude=latitude, longitude=longitude))


def _parking(location: Location) -> tuple[AccessibilityLocation | None, bool | None]:
    if isinstance(location, v221.Location):
        if location.parking_type is not None:
            return PARKING_TYPES[location.parking_type]
        if v221.Facility.PARKING_LOT in (location.facilities or ()):
            return AccessibilityLocation.PARKING_LOT, True
        return None, None
    return LOCATION_TYPES[location.type]


def _address(location: Location, evse: Evse, settings: RecordSettings, at: datetime) -> Address | NotPushable:
    country = location.country.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", country):
        return NotPushable(NotPushableReason.INVALID_COUNTRY, location.country)
    city = cut(location.city, CITY_MAX)
    if not city:
        return NotPushable(NotPushableReason.NO_CITY)
    street, number = location.address.strip(), ""
    if settings.data.address_split is AddressSplit.AUTO:
        street, number = split_house_number(street)
    zone = location.time_zone or settings.data.time_zone
    region = location.state if isinstance(location, v221.Location) else None
    return Address(
        country=country,
        city=city,
        street=street_text(street),
        postal_code=(location.postal_code or "").strip(),
        house_num=number,
        floor=(evse.floor_level or "").strip() or None,
        region=(cut(region, 50) or None) if region else None,
        parking_facility=_parking(location)[1],
        time_zone=None if zone is None else utc_offset(zone, at),
    )


def _station_names(location: Location, settings: RecordSettings) -> tuple[InfoText, ...]:
    name = (location.name or "").strip()
    if not name:
        name = settings.data.station_name_template.format(
            name="",
            address=location.address.strip(),
            city=location.city.strip(),
            postal_code=(location.postal_code or "").strip(),
            country=location.country,
            location_id=location.id,
        ).strip(" ,")
    name = cut(name, INFO_TEXT_MAX) or location.id[:INFO_TEXT_MAX] or location.country
    return (InfoText(lang=settings.data.language, value=name),)


def _texts(texts: list[v211.DisplayText] | list[v221.DisplayText] | None) -> tuple[InfoText, ...] | None:
    """OCPI DisplayTexts as InfoTexts; entries whose language fails LanguageCodeType are dropped."""
    result = []
    for text in texts or ():
        lang, value = text.language.strip().lower(), cut(text.text, INFO_TEXT_MAX)
        if LANGUAGE_RE.fullmatch(lang) and value:
            result.append(InfoText(lang=lang, value=value))
    return tuple(result) or None


def _capabilities(evse: Evse) -> list[v221.Capability]:
    return [v221.Capability(c) for c in evse.capabilities or ()]


def _authentication(evse: Evse, settings: RecordSettings) -> tuple[AuthenticationMode, ...]:
    modes = {mode for cap in _capabilities(evse) for mode in AUTHENTICATION_BY_CAPABILITY[cap]}
    if settings.data.rfid_desfire and AuthenticationMode.NFC_RFID_CLASSIC in modes:
        modes.add(AuthenticationMode.NFC_RFID_DESFIRE)
    if not modes:
        modes = set(settings.data.authentication_modes)
    modes |= set(settings.data.authentication_modes_extra)
    return tuple(mode for mode in AuthenticationMode if mode in modes)  # declaration order: stable


def _payment(evse: Evse, settings: RecordSettings) -> tuple[PaymentOption, ...]:
    configured = set(settings.data.payment_options)
    if PaymentOption.NO_PAYMENT in configured:
        return (PaymentOption.NO_PAYMENT,)  # exclusive (PaymentOption.yaml)
    options = configured | {o for cap in _capabilities(evse) for o in PAYMENT_BY_CAPABILITY[cap]}
    return tuple(option for option in PaymentOption if option in options)


def _services(evse: Evse, settings: RecordSettings) -> tuple[ValueAddedService, ...]:
    services = set(settings.data.value_added_services)
    if settings.data.hubject_reservation and v221.Capability.RESERVABLE in _capabilities(evse):
        services.add(ValueAddedService.RESERVATION)
    if not services:
        return (ValueAddedService.NONE,)
    return tuple(service for service in ValueAddedService if service in services)


def _accessibility(location: Location, evse: Evse, settings: RecordSettings) -> Accessibility:
    if v221.ParkingRestriction.CUSTOMERS in (evse.parking_restrictions or ()):
        return Accessibility.RESTRICTED_ACCESS
    if isinstance(location, v221.Location) and not location.publish:
        return Accessibility.RESTRICTED_ACCESS  # pushed although not published: not for everyone
    kind = location.parking_type if isinstance(location, v221.Location) else location.type
    if kind is not None and kind.value in v221.ParkingType.__members__:
        chosen = settings.data.accessibility_by_parking_type.get(v221.ParkingType(kind.value))
        if chosen is not None:
            return chosen
    return settings.data.accessibility


def _additional_info(location: Location, evse: Evse, open_24h: bool) -> tuple[InfoText, ...] | None:
    phrases: list[str] = []
    for restriction in evse.parking_restrictions or ():
        phrase = RESTRICTION_PHRASES[v221.ParkingRestriction(restriction)]
        if phrase not in phrases:
            phrases.append(phrase)
    nearby = dict.fromkeys(FACILITY_WORDS[v221.Facility(f)] for f in location.facilities or ())
    if nearby:
        phrases.append("Nearby: " + ", ".join(nearby))
    if location.charging_when_closed is False and not open_24h:
        phrases.append(CLOSED_HOURS_PHRASE)
    if not phrases:
        return None
    return (InfoText(lang="en", value=cut("; ".join(phrases), INFO_TEXT_MAX)),)  # English first (HJ)


def _energy(location: Location) -> tuple[tuple[EnergySource, ...] | None, EnvironmentalImpact | None]:
    mix = location.energy_mix
    if mix is None:
        return None, None
    sources = []
    for source in mix.energy_sources or ():
        energy = ENERGY_TYPES[v221.EnergySourceCategory(source.source)]
        if energy is None or not math.isfinite(source.percentage):
            continue
        # OICP Percentage is two digits (0..99): round half up, 100 → 99
        bounded = Decimal(repr(min(max(source.percentage, 0.0), 99.0)))
        percent = int(bounded.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        sources.append(EnergySource(energy=energy, percentage=min(percent, 99)))
    impacts: dict[str, float] = {}
    for impact in mix.environ_impact or ():
        category = impact.category if isinstance(impact, v221.EnvironmentalImpact) else impact.source
        field = IMPACT_FIELDS[v221.EnvironmentalImpactCategory(category)]
        if math.isfinite(impact.amount) and 0 <= impact.amount <= IMPACT_MAX:
            impacts.setdefault(field, impact.amount)
    environmental = EnvironmentalImpact.model_validate(impacts) if impacts else None
    return tuple(sources) or None, environmental


def _image(location: Location, evse: Evse) -> str | None:
    images = [*(evse.images or ()), *(location.images or ())]
    for wanted in ({"CHARGER"}, {"LOCATION", "ENTRANCE"}):  # never operator/owner/network logos
        for image in images:
            url: str = image.url
            if image.category.value in wanted and len(url) <= IMAGE_URL_MAX:
                return url
    return None


def _pool_id(location: Location, evse_id: EvseID) -> str | None:
    """``{CC}*{OOO}*P{location id}`` with the EvseID's own operator prefix; omitted for DIN EvseIDs or
    an id that cannot be a pool instance (design §3.2)."""
    if evse_id.startswith("+"):
        return None
    instance = re.sub(r"[^A-Z0-9]", "*", location.id.upper())
    if not POOL_INSTANCE.fullmatch(instance):
        return None
    return f"{evse_id.operator_id}*P{instance}"


def _sub_operator(location: Location) -> str | None:
    if location.suboperator is None:
        return None
    return cut(location.suboperator.name, SUB_OPERATOR_MAX) or None


def _station_id(location: Location, evse: Evse, source: StationIdSource) -> str | None:
    value = {
        StationIdSource.PHYSICAL_REFERENCE: evse.physical_reference,
        StationIdSource.LOCATION_ID: location.id,
        StationIdSource.EVSE_UID: evse.uid,
        StationIdSource.NONE: None,
    }[source]
    text = (value or "").strip()
    return text[:STATION_ID_MAX] or None


def _gate(location: Location, evse: Evse, settings: RecordSettings) -> EvseID | NotPushable:
    """The EvseID, unless the EVSE is not to be published at all."""
    if evse.evse_id is None or not evse.evse_id.strip():
        return NotPushable(NotPushableReason.NO_EVSE_ID, f"EVSE {evse.uid}")
    evse_id = normalise_evse_id(evse.evse_id)
    if evse_id is None:
        return NotPushable(NotPushableReason.INVALID_EVSE_ID, evse.evse_id)
    if evse.status == v221.Status.REMOVED:
        return NotPushable(NotPushableReason.REMOVED, evse_id=evse_id)
    if evse.status == v221.Status.PLANNED and not settings.push_planned:
        return NotPushable(NotPushableReason.PLANNED, evse_id=evse_id)
    if isinstance(location, v221.Location) and not location.publish and not settings.include_unpublished:
        return NotPushable(NotPushableReason.UNPUBLISHED, evse_id=evse_id)
    return evse_id


def map_evse(location: Location, evse: Evse, settings: RecordSettings, *, at: datetime) -> MappedEvse:
    """The EvseDataRecord of ``evse`` (one of ``location``'s EVSEs), or why there is none.

    ``at`` (timezone-aware) fixes the UTC offset of the location's time zone; everything else comes from
    the arguments, so equal inputs give equal records.
    """
    evse_id = _gate(location, evse, settings)
    if isinstance(evse_id, NotPushable):
        return evse_id
    parts = _plugs_and_facilities(evse, settings)
    if isinstance(parts, NotPushable):
        return NotPushable(parts.reason, parts.detail, evse_id)
    geo = _coordinates(location, evse)
    if isinstance(geo, NotPushable):
        return NotPushable(geo.reason, geo.detail, evse_id)
    address = _address(location, evse, settings, at)
    if isinstance(address, NotPushable):
        return NotPushable(address.reason, address.detail, evse_id)
    hours = opening_times(location.opening_times, settings.data.open_24h_when_unknown)
    if hours is None:
        return NotPushable(NotPushableReason.NO_OPENING_TIMES, evse_id=evse_id)
    open_24h, times = hours
    sources, impact = _energy(location)
    data, mix = settings.data, location.energy_mix
    return EvseDataRecord(
        evse_id=evse_id,
        charging_pool_id=_pool_id(location, evse_id),
        charging_station_id=_station_id(location, evse, data.charging_station_id_from),
        charging_station_names=_station_names(location, settings),
        charging_station_image=_image(location, evse),
        sub_operator_name=_sub_operator(location),
        address=address,
        geo_coordinates=geo,
        plugs=parts[0],
        dynamic_power_level=True if v221.Capability.CHARGING_PROFILE_CAPABLE in _capabilities(evse) else None,
        charging_facilities=parts[1],
        renewable_energy=data.renewable_energy if mix is None else mix.is_green_energy,
        energy_source=sources,
        environmental_impact=impact,
        calibration_law_data_availability=data.calibration_law,
        authentication_modes=_authentication(evse, settings),
        payment_options=_payment(evse, settings),
        value_added_services=_services(evse, settings),
        accessibility=_accessibility(location, evse, settings),
        accessibility_location=_parking(location)[0],
        hotline_phone_number=settings.hotline_phone_number,
        additional_info=_additional_info(location, evse, open_24h),
        charging_station_location_reference=_texts(evse.directions or location.directions),
        is_open_24_hours=open_24h,
        opening_times=times,
        hub_operator_id=data.hub_operator_id,
        is_hubject_compatible=data.hubject_compatible,
        dynamic_info_available=data.dynamic_info,
    )


def map_location(location: Location, settings: RecordSettings, *, at: datetime) -> list[MappedEvse]:
    """Every EVSE of ``location``, in order."""
    return [map_evse(location, evse, settings, at=at) for evse in location.evses or ()]
