"""OICP 2.3 EVSE data: the ``EvseDataRecord`` wire models, the eRoamingPushEvseData request, and the
local validation Hubject's schema cannot express.

Wire names are exactly those of Hubject's OpenAPI (``oicp/openapi/cpo-2.3/src/schemas/EvseDataRecord.yaml``
and its neighbours); Python attributes are snake_case with the wire name as alias, as in ``oicp.models``.
Every closed vocabulary is a StrEnum whose values are the wire values.

The models check types, enums and ids. Lengths and numeric ranges are deliberately not enforced by the
models but by ``record_problems``: the YAML writes text limits as ``maximum`` (which JSON Schema ignores on
strings), so a record can be schema-valid and still be refused by Hubject; ``validate_records`` sorts a
batch into what can be sent and what cannot (with the reasons), so one bad record never fails a request.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from oicp.ids import EvseID, OperatorID
from oicp.models import ActionType
from oicp.openapi_schemas import Schema, validation_errors

# --- closed vocabularies (OICP 2.3 CPO 03 and the YAML enums) ---------------------------------------


class Plug(StrEnum):
    """``Plug.yaml``: all 18 values."""

    SMALL_PADDLE_INDUCTIVE = "Small Paddle Inductive"
    LARGE_PADDLE_INDUCTIVE = "Large Paddle Inductive"
    AVCON_CONNECTOR = "AVCON Connector"
    TESLA_CONNECTOR = "Tesla Connector"
    NEMA_5_20 = "NEMA 5-20"
    TYPE_E_FRENCH_STANDARD = "Type E French Standard"
    TYPE_F_SCHUKO = "Type F Schuko"
    TYPE_G_BRITISH_STANDARD = "Type G British Standard"
    TYPE_J_SWISS_STANDARD = "Type J Swiss Standard"
    TYPE_1_CONNECTOR_CABLE_ATTACHED = "Type 1 Connector (Cable Attached)"
    TYPE_2_OUTLET = "Type 2 Outlet"
    TYPE_2_CONNECTOR_CABLE_ATTACHED = "Type 2 Connector (Cable Attached)"
    TYPE_3_OUTLET = "Type 3 Outlet"
    IEC_60309_SINGLE_PHASE = "IEC 60309 Single Phase"
    IEC_60309_THREE_PHASE = "IEC 60309 Three Phase"
    CCS_COMBO_2_PLUG_CABLE_ATTACHED = "CCS Combo 2 Plug (Cable Attached)"
    CCS_COMBO_1_PLUG_CABLE_ATTACHED = "CCS Combo 1 Plug (Cable Attached)"
    CHADEMO = "CHAdeMO"


class PowerType(StrEnum):
    """``ChargingFacility.yaml`` PowerType (``Unspecified`` is gone since 2.3, Release Notes)."""

    AC_1_PHASE = "AC_1_PHASE"
    AC_3_PHASE = "AC_3_PHASE"
    DC = "DC"


class ChargingMode(StrEnum):
    MODE_1 = "Mode_1"
    MODE_2 = "Mode_2"
    MODE_3 = "Mode_3"
    MODE_4 = "Mode_4"
    CHADEMO = "CHAdeMO"


class AuthenticationMode(StrEnum):
    NFC_RFID_CLASSIC = "NFC RFID Classic"
    NFC_RFID_DESFIRE = "NFC RFID DESFire"
    PNC = "PnC"
    REMOTE = "REMOTE"
    DIRECT_PAYMENT = "Direct Payment"
    NO_AUTHENTICATION_REQUIRED = "No Authentication Required"


class PaymentOption(StrEnum):
    """``PaymentOption.yaml``: "No Payment can not be combined with other payment option"."""

    NO_PAYMENT = "No Payment"
    DIRECT = "Direct"
    CONTRACT = "Contract"


class ValueAddedService(StrEnum):
    RESERVATION = "Reservation"
    DYNAMIC_PRICING = "DynamicPricing"
    PARKING_SENSORS = "ParkingSensors"
    MAXIMUM_POWER_CHARGING = "MaximumPowerCharging"
    PREDICTIVE_CHARGE_POINT_USAGE = "PredictiveChargePointUsage"
    CHARGING_PLANS = "ChargingPlans"
    ROOF_PROVIDED = "RoofProvided"
    NONE = "None"


class Accessibility(StrEnum):
    FREE_PUBLICLY_ACCESSIBLE = "Free publicly accessible"
    RESTRICTED_ACCESS = "Restricted access"
    PAYING_PUBLICLY_ACCESSIBLE = "Paying publicly accessible"
    TEST_STATION = "Test Station"


class AccessibilityLocation(StrEnum):
    ON_STREET = "OnStreet"
    PARKING_LOT = "ParkingLot"
    PARKING_GARAGE = "ParkingGarage"
    UNDERGROUND_PARKING_GARAGE = "UndergroundParkingGarage"


class CalibrationLawDataAvailability(StrEnum):
    LOCAL = "Local"
    EXTERNAL = "External"
    NOT_AVAILABLE = "Not Available"


class DynamicInfoAvailable(StrEnum):
    """A JSON *string* on the wire (``"true"``), not a boolean (``EvseDataRecord.yaml``)."""

    TRUE = "true"
    FALSE = "false"
    AUTO = "auto"


class EnergyType(StrEnum):
    SOLAR = "Solar"
    WIND = "Wind"
    HYDRO_POWER = "HydroPower"
    GEOTHERMAL_ENERGY = "GeothermalEnergy"
    BIOMASS = "Biomass"
    COAL = "Coal"
    NUCLEAR_ENERGY = "NuclearEnergy"
    PETROLEUM = "Petroleum"
    NATURAL_GAS = "NaturalGas"


class DayValue(StrEnum):
    """``OpeningTimes.yaml`` ``on``."""

    EVERYDAY = "Everyday"
    WORKDAYS = "Workdays"
    WEEKEND = "Weekend"
    MONDAY = "Monday"
    TUESDAY = "Tuesday"
    WEDNESDAY = "Wednesday"
    THURSDAY = "Thursday"
    FRIDAY = "Friday"
    SATURDAY = "Saturday"
    SUNDAY = "Sunday"


# --- the models ---------------------------------------------------------------------------------------


class DataModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict Hubject expects: wire names, optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class InfoText(DataModel):
    """``InfoTextType.yaml``: a text with its language (ISO 639-1 / 639-2/T)."""

    lang: str
    value: str


class Address(DataModel):
    """``AddressIso19773.yaml``."""

    country: str = Field(alias="Country")
    city: str = Field(alias="City")
    street: str = Field(alias="Street")
    postal_code: str = Field(alias="PostalCode")
    house_num: str = Field(alias="HouseNum")
    floor: str | None = Field(default=None, alias="Floor")
    region: str | None = Field(default=None, alias="Region")
    parking_facility: bool | None = Field(default=None, alias="ParkingFacility")
    parking_spot: str | None = Field(default=None, alias="ParkingSpot")
    time_zone: str | None = Field(default=None, alias="TimeZone")


class DecimalDegree(DataModel):
    latitude: str = Field(alias="Latitude")
    longitude: str = Field(alias="Longitude")


class GoogleCoordinates(DataModel):
    coordinates: str = Field(alias="Coordinates")


class GeoCoordinates(DataModel):
    """``GeoCoordinates.yaml``: one of the three formats MUST be given; the bridge writes DecimalDegree
    (separate fields cannot be swapped, design [A-2]); the others are read, e.g. from a simulator pull."""

    google: GoogleCoordinates | None = Field(default=None, alias="Google")
    decimal_degree: DecimalDegree | None = Field(default=None, alias="DecimalDegree")
    degree_minute_seconds: DecimalDegree | None = Field(default=None, alias="DegreeMinuteSeconds")


class ChargingFacility(DataModel):
    """``ChargingFacility.yaml``: Power in kW (integer), Voltage line to neutral."""

    power_type: PowerType = Field(alias="PowerType")
    power: int = Field(alias="Power")
    voltage: int | None = Field(default=None, alias="Voltage")
    amperage: int | None = Field(default=None, alias="Amperage")
    charging_modes: tuple[ChargingMode, ...] | None = Field(default=None, alias="ChargingModes")


class EnergySource(DataModel):
    energy: EnergyType | None = Field(default=None, alias="Energy")
    percentage: int | None = Field(default=None, alias="Percentage")


class EnvironmentalImpact(DataModel):
    co2_emission: float | None = Field(default=None, alias="CO2Emission")
    nuclear_waste: float | None = Field(default=None, alias="NuclearWaste")


class Period(DataModel):
    begin: str
    end: str


class OpeningTime(DataModel):
    period: tuple[Period, ...] = Field(alias="Period")
    on: DayValue


class EvseDataRecord(DataModel):
    """``EvseDataRecord.yaml`` without the two fields Hubject writes on pulls (deltaType, lastUpdate)."""

    evse_id: EvseID = Field(alias="EvseID")
    charging_pool_id: str | None = Field(default=None, alias="ChargingPoolID")
    # The YAML spells it ChargingStationId; every Hubject example and the production peers send
    # ChargingStationID (design ). We write ID and read both.
    charging_station_id: str | None = Field(
        default=None,
        alias="ChargingStationID",
        validation_alias=AliasChoices("ChargingStationID", "ChargingStationId", "charging_station_id"),
    )
    charging_station_names: tuple[InfoText, ...] = Field(alias="ChargingStationNames")
    hardware_manufacturer: str | None = Field(default=None, alias="HardwareManufacturer")
    charging_station_image: str | None = Field(default=None, alias="ChargingStationImage")
    sub_operator_name: str | None = Field(default=None, alias="SubOperatorName")
    address: Address = Field(alias="Address")
    geo_coordinates: GeoCoordinates = Field(alias="GeoCoordinates")
    plugs: tuple[Plug, ...] = Field(alias="Plugs")
    dynamic_power_level: bool | None = Field(default=None, alias="DynamicPowerLevel")
    charging_facilities: tuple[ChargingFacility, ...] = Field(alias="ChargingFacilities")
    renewable_energy: bool = Field(alias="RenewableEnergy")
    energy_source: tuple[EnergySource, ...] | None = Field(default=None, alias="EnergySource")
    environmental_impact: EnvironmentalImpact | None = Field(default=None, alias="EnvironmentalImpact")
    calibration_law_data_availability: CalibrationLawDataAvailability = Field(
        alias="CalibrationLawDataAvailability"
    )
    authentication_modes: tuple[AuthenticationMode, ...] = Field(alias="AuthenticationModes")
    max_capacity: int | None = Field(default=None, alias="MaxCapacity")
    payment_options: tuple[PaymentOption, ...] = Field(alias="PaymentOptions")
    value_added_services: tuple[ValueAddedService, ...] = Field(alias="ValueAddedServices")
    accessibility: Accessibility = Field(alias="Accessibility")
    accessibility_location: AccessibilityLocation | None = Field(default=None, alias="AccessibilityLocation")
    hotline_phone_number: str = Field(alias="HotlinePhoneNumber")
    additional_info: tuple[InfoText, ...] | None = Field(default=None, alias="AdditionalInfo")
    charging_station_location_reference: tuple[InfoText, ...] | None = Field(
        default=None, alias="ChargingStationLocationReference"
    )
    geo_charging_point_entrance: GeoCoordinates | None = Field(default=None, alias="GeoChargingPointEntrance")
    is_open_24_hours: bool = Field(alias="IsOpen24Hours")
    opening_times: tuple[OpeningTime, ...] | None = Field(default=None, alias="OpeningTimes")
    hub_operator_id: OperatorID | None = Field(default=None, alias="HubOperatorID")
    clearinghouse_id: str | None = Field(default=None, alias="ClearinghouseID")
    is_hubject_compatible: bool = Field(alias="IsHubjectCompatible")
    dynamic_info_available: DynamicInfoAvailable = Field(alias="DynamicInfoAvailable")

    def canonical_json(self) -> str:
        """The record as canonical JSON (sorted keys, no insignificant whitespace): equal records give
        equal text, so the hash below tells whether Hubject needs an update (design §6.2)."""
        return json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def canonical_hash(self) -> str:
        """SHA-256 of ``canonical_json``, hex."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


class OperatorEvseData(DataModel):
    operator_id: OperatorID = Field(alias="OperatorID")
    # mandatory for data (OICP 2.3 Release Notes), unlike for status; <= 100 characters
    operator_name: str = Field(alias="OperatorName", min_length=1, max_length=100)
    evse_data_records: tuple[EvseDataRecord, ...] = Field(alias="EvseDataRecord")


class PushEvseDataRequest(DataModel):
    """eRoamingPushEvseData (CPO OpenAPI schema ``eRoamingPushEvseData.yaml``)."""

    action_type: ActionType = Field(alias="ActionType")
    operator_evse_data: OperatorEvseData = Field(alias="OperatorEvseData")

    @classmethod
    def of(
        cls,
        operator_id: OperatorID,
        operator_name: str,
        action: ActionType,
        records: Iterable[EvseDataRecord],
    ) -> PushEvseDataRequest:
        return cls(
            action_type=action,
            operator_evse_data=OperatorEvseData(
                operator_id=operator_id, operator_name=operator_name, evse_data_records=tuple(records)
            ),
        )


# --- local validation (design §6.9) ---------------------------------------------------------------------

# OICP "Field Length" column (CPO 03 EvseDataType / AddressIso19773Type); the YAML's `maximum`/`minimum`.
TEXT_LIMITS: dict[str, tuple[int, int]] = {
    "ChargingStationID": (0, 50),
    "HardwareManufacturer": (0, 50),
    "ChargingStationImage": (0, 200),
    "SubOperatorName": (0, 100),
    "ClearinghouseID": (0, 20),
    "Address.Country": (3, 3),
    "Address.City": (1, 50),
    "Address.Street": (2, 100),
    "Address.PostalCode": (0, 10),
    "Address.HouseNum": (0, 10),
    "Address.Floor": (0, 5),
    "Address.Region": (0, 50),
    "Address.ParkingSpot": (0, 5),
}
INFO_TEXT_MAX = 150
# (low, high) inclusive, from the YAML's integer minimum/maximum
POWER_RANGE = (0, 999)
VOLTAGE_RANGE = (0, 999)
AMPERAGE_RANGE = (0, 99)
PERCENTAGE_RANGE = (0, 99)
IMPACT_RANGE = (0.0, 99999.0)

LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(?:-[A-Z]{2,3}(?:-[a-zA-Z]{4})?)?(?:-x-[a-zA-Z0-9]{1,8})?$")
HOTLINE_RE = re.compile(r"^\+[0-9]{5,15}$")
TIME_ZONE_RE = re.compile(r"^UTC[+-][0-9]{2}:[0-9]{2}$")
DECIMAL_DEGREE_RE = re.compile(r"^-?1?\d{1,2}\.\d{1,6}$")
CHARGING_POOL_ID_RE = re.compile(r"^[A-Za-z]{2}\*?[A-Za-z0-9]{3}\*?P[A-Za-z0-9\*]{1,30}$")
COUNTRY_RE = re.compile(r"^[A-Z]{3}$")
TIME_RE = re.compile(r"^[0-9]{2}:[0-9]{2}$")


def _text(name: str, value: str | None) -> list[str]:
    if value is None:
        return []
    low, high = TEXT_LIMITS[name]
    if not low <= len(value) <= high:
        return [f"{name}: {len(value)} characters, allowed {low}..{high}"]
    return []


def _info_texts(name: str, texts: Sequence[InfoText] | None, *, required: bool = False) -> list[str]:
    if texts is None or not texts:
        return [f"{name}: at least one entry is required"] if required else []
    problems = []
    for index, text in enumerate(texts):
        if not LANGUAGE_RE.fullmatch(text.lang):
            problems.append(f"{name}/{index}/lang: {text.lang!r} is not a LanguageCodeType")
        if len(text.value) > INFO_TEXT_MAX:
            problems.append(f"{name}/{index}/value: {len(text.value)} characters, at most {INFO_TEXT_MAX}")
    return problems


def _in_range(name: str, value: float | None, bounds: tuple[float, float]) -> list[str]:
    if value is None or bounds[0] <= value <= bounds[1]:
        return []
    return [f"{name}: {value} is outside {bounds[0]}..{bounds[1]}"]


def _coordinates(name: str, geo: GeoCoordinates | None) -> list[str]:
    if geo is None:
        return []
    if geo.decimal_degree is None and geo.google is None and geo.degree_minute_seconds is None:
        return [f"{name}: one of Google, DecimalDegree, DegreeMinuteSeconds is required"]
    point = geo.decimal_degree
    if point is None:
        return []  # other formats: the official schema's patterns are the check
    problems = []
    for axis, text, limit in (("Latitude", point.latitude, 90.0), ("Longitude", point.longitude, 180.0)):
        if not DECIMAL_DEGREE_RE.fullmatch(text):
            problems.append(f"{name}/DecimalDegree/{axis}: {text!r} is not a decimal degree")
        elif abs(float(text)) > limit:
            problems.append(f"{name}/DecimalDegree/{axis}: {text} is out of range")
    return problems


def _address(address: Address) -> list[str]:
    problems: list[str] = []
    for field_name in (
        "Country",
        "City",
        "Street",
        "PostalCode",
        "HouseNum",
        "Floor",
        "Region",
        "ParkingSpot",
    ):
        problems += _text(f"Address.{field_name}", address.to_wire().get(field_name))
    if not COUNTRY_RE.fullmatch(address.country):
        problems.append(f"Address.Country: {address.country!r} is not an ISO 3166-1 alpha-3 code")
    if address.time_zone is not None and not TIME_ZONE_RE.fullmatch(address.time_zone):
        problems.append(f"Address.TimeZone: {address.time_zone!r} is not UTC+HH:MM")
    return problems


def _lists(record: EvseDataRecord) -> list[str]:
    problems = []
    for name, items in (
        ("Plugs", record.plugs),
        ("ChargingFacilities", record.charging_facilities),
        ("AuthenticationModes", record.authentication_modes),
        ("PaymentOptions", record.payment_options),
        ("ValueAddedServices", record.value_added_services),
    ):
        if not items:
            problems.append(f"{name}: at least one entry is required")
    if PaymentOption.NO_PAYMENT in record.payment_options and len(set(record.payment_options)) > 1:
        problems.append("PaymentOptions: 'No Payment' cannot be combined with other options")
    if ValueAddedService.NONE in record.value_added_services and len(set(record.value_added_services)) > 1:
        problems.append("ValueAddedServices: 'None' cannot be combined with services")
    return problems


def _facilities(record: EvseDataRecord) -> list[str]:
    problems = []
    for index, facility in enumerate(record.charging_facilities):
        where = f"ChargingFacilities/{index}"
        problems += _in_range(f"{where}/Power", facility.power, POWER_RANGE)
        problems += _in_range(f"{where}/Voltage", facility.voltage, VOLTAGE_RANGE)
        problems += _in_range(f"{where}/Amperage", facility.amperage, AMPERAGE_RANGE)
    for index, source in enumerate(record.energy_source or ()):
        problems += _in_range(f"EnergySource/{index}/Percentage", source.percentage, PERCENTAGE_RANGE)
    impact = record.environmental_impact
    if impact is not None:
        problems += _in_range("EnvironmentalImpact/CO2Emission", impact.co2_emission, IMPACT_RANGE)
        problems += _in_range("EnvironmentalImpact/NuclearWaste", impact.nuclear_waste, IMPACT_RANGE)
    if record.max_capacity is not None and record.max_capacity < 0:
        problems.append(f"MaxCapacity: {record.max_capacity} is negative")
    return problems


def _opening(record: EvseDataRecord) -> list[str]:
    times = record.opening_times or ()
    if record.is_open_24_hours and times:
        return ["OpeningTimes: given although IsOpen24Hours is true"]
    if not record.is_open_24_hours and not times:
        # Hubject refuses false with no times (WWCP notes it; okit flags it)
        return ["OpeningTimes: required when IsOpen24Hours is false"]
    problems = []
    for index, opening in enumerate(times):
        if not opening.period:
            problems.append(f"OpeningTimes/{index}/Period: at least one period is required")
        for period in opening.period:
            if not (TIME_RE.fullmatch(period.begin) and TIME_RE.fullmatch(period.end)):
                problems.append(f"OpeningTimes/{index}/Period: {period.begin}-{period.end} is not HH:MM")
    return problems


def record_problems(record: EvseDataRecord) -> list[str]:
    """What Hubject would refuse in this record that its OpenAPI schema does not say, followed by any
    violation of the official schema itself (empty: the record can be sent)."""
    problems = _info_texts("ChargingStationNames", record.charging_station_names, required=True)
    problems += _info_texts("AdditionalInfo", record.additional_info)
    problems += _info_texts("ChargingStationLocationReference", record.charging_station_location_reference)
    for name, value in (
        ("ChargingStationID", record.charging_station_id),
        ("HardwareManufacturer", record.hardware_manufacturer),
        ("ChargingStationImage", record.charging_station_image),
        ("SubOperatorName", record.sub_operator_name),
        ("ClearinghouseID", record.clearinghouse_id),
    ):
        problems += _text(name, value)
    problems += _address(record.address)
    problems += _coordinates("GeoCoordinates", record.geo_coordinates)
    problems += _coordinates("GeoChargingPointEntrance", record.geo_charging_point_entrance)
    problems += _lists(record)
    problems += _facilities(record)
    problems += _opening(record)
    if not HOTLINE_RE.fullmatch(record.hotline_phone_number):
        problems.append(f"HotlinePhoneNumber: {record.hotline_phone_number!r} is not +<5..15 digits>")
    if record.charging_pool_id is not None and not CHARGING_POOL_ID_RE.fullmatch(record.charging_pool_id):
        problems.append(f"ChargingPoolID: {record.charging_pool_id!r} is not an EVSE pool id")
    problems += validation_errors(Schema.EVSE_DATA_RECORD, record.to_wire())
    return problems


@dataclass(frozen=True, slots=True)
class Refused:
    """A record that must not be sent, and why (one line per problem)."""

    record: EvseDataRecord
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Validated:
    valid: tuple[EvseDataRecord, ...]
    refused: tuple[Refused, ...]


def validate_records(
    records: Iterable[EvseDataRecord],
    operator_id: OperatorID,
    *,
    sub_operator_ids: Iterable[OperatorID] = (),
) -> Validated:
    """Split a batch for ``operator_id`` into the records that can be sent and those that cannot.

    Besides ``record_problems``: every EvseID must belong to the envelope's OperatorID or a sub-operator
    Hubject knows for it, else Hubject refuses the whole upload with 018 (OICP 2.3 CPO 02, "EVSE
    consistency"); and an EvseID may appear once per request (018 too, Hubject's integration guide): a
    repeated one is refused, the first occurrence is kept.
    """
    allowed = {operator_id.canonical_key} | {o.canonical_key for o in sub_operator_ids}
    seen: set[str] = set()
    valid: list[EvseDataRecord] = []
    refused: list[Refused] = []
    for record in records:
        reasons = record_problems(record)
        if record.evse_id.operator_id.canonical_key not in allowed:
            reasons.append(
                f"EvseID: {record.evse_id} does not belong to operator {operator_id} (Hubject: 018)"
            )
        key = record.evse_id.replace("*", "")
        if key in seen:
            reasons.append(f"EvseID: {record.evse_id} appears twice in the request (Hubject: 018)")
        seen.add(key)
        if reasons:
            refused.append(Refused(record, tuple(reasons)))
        else:
            valid.append(record)
    return Validated(tuple(valid), tuple(refused))
