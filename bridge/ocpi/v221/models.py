"""OCPI 2.2.1 Locations module objects (mod_locations.asciidoc), as typed pydantic models.

Strict types: a JSON number is not a string and a string is not a number (``"voltage": "220"`` is
rejected); lengths are OCPI's ``string(n)`` maxima; every closed vocabulary is a StrEnum. Unknown extra
fields are tolerated and kept (forward compatibility with CPOs that send newer fields).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

from bridge.observation import OcpiEvseStatus

Status = OcpiEvseStatus  # 2.2.1 mod_locations Status enum


def parse_datetime(value: Any) -> Any:
    """OCPI DateTime (types.asciidoc DateTime): an ISO 8601 string in UTC; no designator means UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        if len(value) > 30:
            raise ValueError("a DateTime is at most 25 characters, e.g. 2015-06-29T20:39:09Z")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 DateTime: {value!r} (e.g. 2015-06-29T20:39:09Z)") from None
    else:
        raise ValueError("a DateTime must be a string such as 2015-06-29T20:39:09Z")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 falls before year 1 in UTC
        raise ValueError(f"DateTime out of range in UTC: {value!r}") from None


def format_datetime(value: datetime) -> str:
    """An OCPI DateTime to the second, e.g. 2015-06-29T20:39:09Z (years below 1000 zero-padded, which
    ``strftime('%Y')`` does not do on Linux)."""
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


DateTime = Annotated[datetime, BeforeValidator(parse_datetime)]


S2 = Annotated[StrictStr, Field(max_length=2)]
S3 = Annotated[StrictStr, Field(max_length=3)]
S4 = Annotated[StrictStr, Field(max_length=4)]
S5 = Annotated[StrictStr, Field(max_length=5)]
S10 = Annotated[StrictStr, Field(max_length=10)]
S11 = Annotated[StrictStr, Field(max_length=11)]
S16 = Annotated[StrictStr, Field(max_length=16)]
S36 = Annotated[StrictStr, Field(max_length=36)]
# Ids (CiString in types): printable ASCII only, so NUL, control characters, RTL marks and emoji in an id
# are refused rather than stored under a key no URL can address cleanly.
ID_PATTERN = r"^[ -~]*$"
Id36 = Annotated[StrictStr, Field(max_length=36, pattern=ID_PATTERN)]
S39 = Annotated[StrictStr, Field(max_length=39)]
S45 = Annotated[StrictStr, Field(max_length=45)]
S48 = Annotated[StrictStr, Field(max_length=48)]
S64 = Annotated[StrictStr, Field(max_length=64)]
S100 = Annotated[StrictStr, Field(max_length=100)]
S255 = Annotated[StrictStr, Field(max_length=255)]
S512 = Annotated[StrictStr, Field(max_length=512)]
URL = Annotated[StrictStr, Field(max_length=255)]
Number = Annotated[float, Field(strict=True)]


class Capability(StrEnum):
    CHARGING_PROFILE_CAPABLE = "CHARGING_PROFILE_CAPABLE"
    CHARGING_PREFERENCES_CAPABLE = "CHARGING_PREFERENCES_CAPABLE"
    CHIP_CARD_SUPPORT = "CHIP_CARD_SUPPORT"
    CONTACTLESS_CARD_SUPPORT = "CONTACTLESS_CARD_SUPPORT"
    CREDIT_CARD_PAYABLE = "CREDIT_CARD_PAYABLE"
    DEBIT_CARD_PAYABLE = "DEBIT_CARD_PAYABLE"
    PED_TERMINAL = "PED_TERMINAL"
    REMOTE_START_STOP_CAPABLE = "REMOTE_START_STOP_CAPABLE"
    RESERVABLE = "RESERVABLE"
    RFID_READER = "RFID_READER"
    START_SESSION_CONNECTOR_REQUIRED = "START_SESSION_CONNECTOR_REQUIRED"
    TOKEN_GROUP_CAPABLE = "TOKEN_GROUP_CAPABLE"
    UNLOCK_CAPABLE = "UNLOCK_CAPABLE"


class ConnectorFormat(StrEnum):
    SOCKET = "SOCKET"
    CABLE = "CABLE"


class ConnectorType(StrEnum):
    CHADEMO = "CHADEMO"
    CHAOJI = "CHAOJI"
    DOMESTIC_A = "DOMESTIC_A"
    DOMESTIC_B = "DOMESTIC_B"
    DOMESTIC_C = "DOMESTIC_C"
    DOMESTIC_D = "DOMESTIC_D"
    DOMESTIC_E = "DOMESTIC_E"
    DOMESTIC_F = "DOMESTIC_F"
    DOMESTIC_G = "DOMESTIC_G"
    DOMESTIC_H = "DOMESTIC_H"
    DOMESTIC_I = "DOMESTIC_I"
    DOMESTIC_J = "DOMESTIC_J"
    DOMESTIC_K = "DOMESTIC_K"
    DOMESTIC_L = "DOMESTIC_L"
    DOMESTIC_M = "DOMESTIC_M"
    DOMESTIC_N = "DOMESTIC_N"
    DOMESTIC_O = "DOMESTIC_O"
    GBT_AC = "GBT_AC"
    GBT_DC = "GBT_DC"
    IEC_62196_T1 = "IEC_62196_T1"
    IEC_62196_T1_COMBO = "IEC_62196_T1_COMBO"
    IEC_62196_T2 = "IEC_62196_T2"
    IEC_62196_T2_COMBO = "IEC_62196_T2_COMBO"
    IEC_62196_T3A = "IEC_62196_T3A"
    IEC_62196_T3C = "IEC_62196_T3C"
    NEMA_5_20 = "NEMA_5_20"
    NEMA_6_30 = "NEMA_6_30"
    NEMA_6_50 = "NEMA_6_50"
    NEMA_10_30 = "NEMA_10_30"
    NEMA_10_50 = "NEMA_10_50"
    NEMA_14_30 = "NEMA_14_30"
    NEMA_14_50 = "NEMA_14_50"
    PANTOGRAPH_BOTTOM_UP = "PANTOGRAPH_BOTTOM_UP"
    PANTOGRAPH_TOP_DOWN = "PANTOGRAPH_TOP_DOWN"
    TESLA_R = "TESLA_R"
    TESLA_S = "TESLA_S"


class EnergySourceCategory(StrEnum):
    NUCLEAR = "NUCLEAR"
    GENERAL_FOSSIL = "GENERAL_FOSSIL"
    COAL = "COAL"
    GAS = "GAS"
    GENERAL_GREEN = "GENERAL_GREEN"
    SOLAR = "SOLAR"
    WIND = "WIND"
    WATER = "WATER"


class EnvironmentalImpactCategory(StrEnum):
    NUCLEAR_WASTE = "NUCLEAR_WASTE"
    CARBON_DIOXIDE = "CARBON_DIOXIDE"


class Facility(StrEnum):
    HOTEL = "HOTEL"
    RESTAURANT = "RESTAURANT"
    CAFE = "CAFE"
    MALL = "MALL"
    SUPERMARKET = "SUPERMARKET"
    SPORT = "SPORT"
    RECREATION_AREA = "RECREATION_AREA"
    NATURE = "NATURE"
    MUSEUM = "MUSEUM"
    BIKE_SHARING = "BIKE_SHARING"
    BUS_STOP = "BUS_STOP"
    TAXI_STAND = "TAXI_STAND"
    TRAM_STOP = "TRAM_STOP"
    METRO_STATION = "METRO_STATION"
    TRAIN_STATION = "TRAIN_STATION"
    AIRPORT = "AIRPORT"
    PARKING_LOT = "PARKING_LOT"
    CARPOOL_PARKING = "CARPOOL_PARKING"
    FUEL_STATION = "FUEL_STATION"
    WIFI = "WIFI"


class ImageCategory(StrEnum):
    CHARGER = "CHARGER"
    ENTRANCE = "ENTRANCE"
    LOCATION = "LOCATION"
    NETWORK = "NETWORK"
    OPERATOR = "OPERATOR"
    OTHER = "OTHER"
    OWNER = "OWNER"


class ParkingType(StrEnum):
    ALONG_MOTORWAY = "ALONG_MOTORWAY"
    PARKING_GARAGE = "PARKING_GARAGE"
    PARKING_LOT = "PARKING_LOT"
    ON_DRIVEWAY = "ON_DRIVEWAY"
    ON_STREET = "ON_STREET"
    UNDERGROUND_GARAGE = "UNDERGROUND_GARAGE"


class ParkingRestriction(StrEnum):
    EV_ONLY = "EV_ONLY"
    PLUGGED = "PLUGGED"
    DISABLED = "DISABLED"
    CUSTOMERS = "CUSTOMERS"
    MOTORCYCLES = "MOTORCYCLES"


class PowerType(StrEnum):
    AC_1_PHASE = "AC_1_PHASE"
    AC_2_PHASE = "AC_2_PHASE"
    AC_2_PHASE_SPLIT = "AC_2_PHASE_SPLIT"
    AC_3_PHASE = "AC_3_PHASE"
    DC = "DC"


class TokenType(StrEnum):
    AD_HOC_USER = "AD_HOC_USER"
    APP_USER = "APP_USER"
    OTHER = "OTHER"
    RFID = "RFID"


class OcpiObject(BaseModel):
    """Unknown fields are kept, not rejected: CPOs add fields from later OCPI versions."""

    model_config = ConfigDict(extra="allow")


class DisplayText(OcpiObject):
    language: S2
    text: S512


class GeoLocation(OcpiObject):
    latitude: Annotated[StrictStr, Field(max_length=10, pattern=r"^-?[0-9]{1,2}\.[0-9]{5,7}$")]
    longitude: Annotated[StrictStr, Field(max_length=11, pattern=r"^-?[0-9]{1,3}\.[0-9]{5,7}$")]

    @model_validator(mode="after")
    def _in_range(self) -> GeoLocation:
        if not -90 <= float(self.latitude) <= 90 or not -180 <= float(self.longitude) <= 180:
            raise ValueError("latitude must be within -90..90 and longitude within -180..180")
        return self


class AdditionalGeoLocation(GeoLocation):
    name: DisplayText | None = None


class Image(OcpiObject):
    url: URL
    thumbnail: URL | None = None
    category: ImageCategory
    type: S4
    width: StrictInt | None = Field(default=None, ge=0, le=99999)
    height: StrictInt | None = Field(default=None, ge=0, le=99999)


class BusinessDetails(OcpiObject):
    name: S100
    website: URL | None = None
    logo: Image | None = None


class EnergySource(OcpiObject):
    source: EnergySourceCategory
    percentage: Number


class EnvironmentalImpact(OcpiObject):
    category: EnvironmentalImpactCategory
    amount: Number


class EnergyMix(OcpiObject):
    is_green_energy: StrictBool
    energy_sources: list[EnergySource] | None = None
    environ_impact: list[EnvironmentalImpact] | None = None
    supplier_name: S64 | None = None
    energy_product_name: S64 | None = None


class RegularHours(OcpiObject):
    weekday: StrictInt = Field(ge=1, le=7)
    period_begin: Annotated[StrictStr, Field(pattern=r"^[0-2][0-9]:[0-5][0-9]$")]
    period_end: Annotated[StrictStr, Field(pattern=r"^[0-2][0-9]:[0-5][0-9]$")]


class ExceptionalPeriod(OcpiObject):
    period_begin: DateTime
    period_end: DateTime


class Hours(OcpiObject):
    regular_hours: list[RegularHours] | None = None
    twentyfourseven: StrictBool
    exceptional_openings: list[ExceptionalPeriod] | None = None
    exceptional_closings: list[ExceptionalPeriod] | None = None


class StatusSchedule(OcpiObject):
    period_begin: DateTime
    period_end: DateTime | None = None
    status: Status


class Connector(OcpiObject):
    """mod_locations Connector Object."""

    id: Id36
    standard: ConnectorType
    format: ConnectorFormat
    power_type: PowerType
    max_voltage: StrictInt
    max_amperage: StrictInt
    max_electric_power: StrictInt | None = None
    tariff_ids: list[S36] | None = None
    terms_and_conditions: URL | None = None
    last_updated: DateTime


class Evse(OcpiObject):
    """mod_locations EVSE Object."""

    uid: Id36
    evse_id: S48 | None = None
    status: Status
    status_schedule: list[StatusSchedule] | None = None
    capabilities: list[Capability] | None = None
    connectors: list[Connector] = Field(min_length=1)
    floor_level: S4 | None = None
    coordinates: GeoLocation | None = None
    physical_reference: S16 | None = None
    directions: list[DisplayText] | None = None
    parking_restrictions: list[ParkingRestriction] | None = None
    images: list[Image] | None = None
    last_updated: DateTime


class PublishTokenType(OcpiObject):
    uid: S36 | None = None
    type: TokenType | None = None
    visual_number: S64 | None = None
    issuer: S64 | None = None
    group_id: S36 | None = None


class Location(OcpiObject):
    """mod_locations Location Object (2.2.1 adds ``country_code``, ``party_id``, ``publish``)."""

    country_code: S2
    party_id: S3
    id: Id36
    publish: StrictBool
    publish_allowed_to: list[PublishTokenType] | None = None
    name: S255 | None = None
    address: S45
    city: S45
    postal_code: S10 | None = None
    state: Annotated[StrictStr, Field(max_length=20)] | None = None
    country: S3
    coordinates: GeoLocation
    related_locations: list[AdditionalGeoLocation] | None = None
    parking_type: ParkingType | None = None
    evses: list[Evse] | None = None
    directions: list[DisplayText] | None = None
    operator: BusinessDetails | None = None
    suboperator: BusinessDetails | None = None
    owner: BusinessDetails | None = None
    facilities: list[Facility] | None = None
    time_zone: S255
    opening_times: Hours | None = None
    charging_when_closed: StrictBool | None = None
    images: list[Image] | None = None
    energy_mix: EnergyMix | None = None
    last_updated: DateTime


# URL segment limits (mod_locations request parameters).
LOCATION_ID_MAX = 36
EVSE_UID_MAX = 36
CONNECTOR_ID_MAX = 36


class Role(StrEnum):
    CPO = "CPO"
    EMSP = "EMSP"
    HUB = "HUB"
    NAP = "NAP"
    NSP = "NSP"
    OTHER = "OTHER"
    SCSP = "SCSP"


class CredentialsRole(OcpiObject):
    role: Role
    business_details: BusinessDetails
    party_id: S3
    country_code: S2


class Credentials(OcpiObject):
    """credentials.asciidoc Credentials object."""

    token: S64
    url: URL
    roles: list[CredentialsRole] = Field(min_length=1)
