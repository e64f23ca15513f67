"""The EVSE data mapping tables: every OCPI 2.1.1 and 2.2.1 enum value is an explicit row.

Read them with docs/evse-data.md, which gives the why of each row (from shared/design/evse-data-mapping.md
§4). Keys are the OCPI 2.2.1 enums; OCPI 2.1.1 values are the same strings (a StrEnum member hashes and
compares as its value), and the 2.1.1-only LocationType has its own table. ``None`` means "OICP has no
value for this": the caller turns it into a typed reason, never a guess.
"""

from __future__ import annotations

from bridge.ocpi.v211.models import LocationType
from bridge.ocpi.v221.models import (
    Capability,
    ConnectorFormat,
    ConnectorType,
    EnergySourceCategory,
    EnvironmentalImpactCategory,
    Facility,
    ParkingRestriction,
    ParkingType,
)
from bridge.ocpi.v221.models import PowerType as OcpiPowerType
from oicp.evse_data import (
    AccessibilityLocation,
    AuthenticationMode,
    ChargingMode,
    EnergyType,
    PaymentOption,
    Plug,
    PowerType,
)

# §4.1 ConnectorType → (Plug, ChargingMode). Format matters only where OICP distinguishes it
# (PLUGS_BY_FORMAT wins). ChargingModes: AC vehicle connectors Mode_3, DC Mode_4, CHAdeMO its own;
# domestic and industrial sockets none (Mode_1 vs Mode_2 is the EV's cable, not the station); Tesla
# depends on the power type (MODE_BY_POWER_TYPE).
M3, M4 = ChargingMode.MODE_3, ChargingMode.MODE_4
PLUGS: dict[str, tuple[Plug, ChargingMode | None] | None] = {
    ConnectorType.CHADEMO: (Plug.CHADEMO, ChargingMode.CHADEMO),
    ConnectorType.CHAOJI: None,
    ConnectorType.DOMESTIC_A: None,
    ConnectorType.DOMESTIC_B: None,  # NEMA 5-15: a 5-15 socket does not take a 5-20 plug
    ConnectorType.DOMESTIC_C: None,
    ConnectorType.DOMESTIC_D: None,
    ConnectorType.DOMESTIC_E: (Plug.TYPE_E_FRENCH_STANDARD, None),
    ConnectorType.DOMESTIC_F: (Plug.TYPE_F_SCHUKO, None),
    ConnectorType.DOMESTIC_G: (Plug.TYPE_G_BRITISH_STANDARD, None),
    ConnectorType.DOMESTIC_H: None,
    ConnectorType.DOMESTIC_I: None,
    ConnectorType.DOMESTIC_J: (Plug.TYPE_J_SWISS_STANDARD, None),
    ConnectorType.DOMESTIC_K: None,
    ConnectorType.DOMESTIC_L: None,
    ConnectorType.DOMESTIC_M: None,
    ConnectorType.DOMESTIC_N: None,
    ConnectorType.DOMESTIC_O: None,
    ConnectorType.GBT_AC: None,
    ConnectorType.GBT_DC: None,
    # Both OCPI versions define the four IEC 60309-2 values (2.2.1 mod_locations ConnectorType, 2.1.1
    # §4.4); the intake models (bridge/ocpi/v*/models.py) do not list them yet, hence plain strings.
    "IEC_60309_2_single_16": (Plug.IEC_60309_SINGLE_PHASE, None),
    "IEC_60309_2_three_16": (Plug.IEC_60309_THREE_PHASE, None),
    "IEC_60309_2_three_32": (Plug.IEC_60309_THREE_PHASE, None),
    "IEC_60309_2_three_64": (Plug.IEC_60309_THREE_PHASE, None),
    ConnectorType.IEC_62196_T1: (Plug.TYPE_1_CONNECTOR_CABLE_ATTACHED, M3),  # no T1 socket value
    ConnectorType.IEC_62196_T1_COMBO: (Plug.CCS_COMBO_1_PLUG_CABLE_ATTACHED, M4),
    ConnectorType.IEC_62196_T2: (Plug.TYPE_2_OUTLET, M3),  # SOCKET; CABLE in PLUGS_BY_FORMAT
    ConnectorType.IEC_62196_T2_COMBO: (Plug.CCS_COMBO_2_PLUG_CABLE_ATTACHED, M4),
    ConnectorType.IEC_62196_T3A: (Plug.TYPE_3_OUTLET, M3),
    ConnectorType.IEC_62196_T3C: (Plug.TYPE_3_OUTLET, M3),  # OICP's value is the generic "type 3"
    ConnectorType.NEMA_5_20: (Plug.NEMA_5_20, None),
    ConnectorType.NEMA_6_30: None,
    ConnectorType.NEMA_6_50: None,
    ConnectorType.NEMA_10_30: None,
    ConnectorType.NEMA_10_50: None,
    ConnectorType.NEMA_14_30: None,
    ConnectorType.NEMA_14_50: None,
    ConnectorType.PANTOGRAPH_BOTTOM_UP: None,  # bus charging: no OICP value
    ConnectorType.PANTOGRAPH_TOP_DOWN: None,
    ConnectorType.TESLA_R: (Plug.TESLA_CONNECTOR, None),
    ConnectorType.TESLA_S: (Plug.TESLA_CONNECTOR, None),
}
PLUGS_BY_FORMAT: dict[tuple[str, str], Plug] = {
    (ConnectorType.IEC_62196_T2, ConnectorFormat.CABLE): Plug.TYPE_2_CONNECTOR_CABLE_ATTACHED,
}
MODE_BY_POWER_TYPE: dict[str, dict[PowerType, ChargingMode]] = {
    ConnectorType.TESLA_R: {PowerType.AC_1_PHASE: M3, PowerType.AC_3_PHASE: M3, PowerType.DC: M4},
    ConnectorType.TESLA_S: {PowerType.AC_1_PHASE: M3, PowerType.AC_3_PHASE: M3, PowerType.DC: M4},
}

# §4.2 PowerType (2.1.1 has the first, third and fifth only). AC_2_* → AC_1_PHASE.
POWER_TYPES: dict[OcpiPowerType, PowerType] = {
    OcpiPowerType.AC_1_PHASE: PowerType.AC_1_PHASE,
    OcpiPowerType.AC_2_PHASE: PowerType.AC_1_PHASE,
    OcpiPowerType.AC_2_PHASE_SPLIT: PowerType.AC_1_PHASE,
    OcpiPowerType.AC_3_PHASE: PowerType.AC_3_PHASE,
    OcpiPowerType.DC: PowerType.DC,
}
# phases for Power = V × A × phases when max_electric_power is absent (OCPI voltage is line to neutral)
PHASES: dict[OcpiPowerType, int] = {
    OcpiPowerType.AC_1_PHASE: 1,
    OcpiPowerType.AC_2_PHASE: 2,
    OcpiPowerType.AC_2_PHASE_SPLIT: 2,
    OcpiPowerType.AC_3_PHASE: 3,
    OcpiPowerType.DC: 1,
}

# §4.3 capabilities. What each one adds; an empty tuple is an explicit "not expressible in OICP".
AUTHENTICATION_BY_CAPABILITY: dict[Capability, tuple[AuthenticationMode, ...]] = {
    Capability.CHARGING_PROFILE_CAPABLE: (),
    Capability.CHARGING_PREFERENCES_CAPABLE: (),
    Capability.CHIP_CARD_SUPPORT: (),
    Capability.CONTACTLESS_CARD_SUPPORT: (),
    Capability.CREDIT_CARD_PAYABLE: (),  # "Direct Payment" is intercharge direct, not a card terminal
    Capability.DEBIT_CARD_PAYABLE: (),
    Capability.PED_TERMINAL: (),
    Capability.REMOTE_START_STOP_CAPABLE: (AuthenticationMode.REMOTE,),
    Capability.RESERVABLE: (),
    Capability.RFID_READER: (AuthenticationMode.NFC_RFID_CLASSIC,),
    Capability.START_SESSION_CONNECTOR_REQUIRED: (),
    Capability.TOKEN_GROUP_CAPABLE: (),
    Capability.UNLOCK_CAPABLE: (),
}
PAYMENT_BY_CAPABILITY: dict[Capability, tuple[PaymentOption, ...]] = {
    Capability.CHARGING_PROFILE_CAPABLE: (),
    Capability.CHARGING_PREFERENCES_CAPABLE: (),
    Capability.CHIP_CARD_SUPPORT: (PaymentOption.DIRECT,),
    Capability.CONTACTLESS_CARD_SUPPORT: (PaymentOption.DIRECT,),
    Capability.CREDIT_CARD_PAYABLE: (PaymentOption.DIRECT,),
    Capability.DEBIT_CARD_PAYABLE: (PaymentOption.DIRECT,),
    Capability.PED_TERMINAL: (PaymentOption.DIRECT,),
    Capability.REMOTE_START_STOP_CAPABLE: (),
    Capability.RESERVABLE: (),
    Capability.RFID_READER: (),
    Capability.START_SESSION_CONNECTOR_REQUIRED: (),
    Capability.TOKEN_GROUP_CAPABLE: (),
    Capability.UNLOCK_CAPABLE: (),
}
# RESERVABLE → Reservation only with hubject_reservation; CHARGING_PROFILE_CAPABLE →
# DynamicPowerLevel = true (not MaximumPowerCharging/ChargingPlans: a different meaning). Both in mapping.py.

# §4.4 parking type (2.2.1) → (AccessibilityLocation, ParkingFacility)
PARKING_TYPES: dict[ParkingType, tuple[AccessibilityLocation | None, bool | None]] = {
    ParkingType.ON_STREET: (AccessibilityLocation.ON_STREET, None),
    ParkingType.PARKING_LOT: (AccessibilityLocation.PARKING_LOT, True),
    ParkingType.PARKING_GARAGE: (AccessibilityLocation.PARKING_GARAGE, True),
    ParkingType.UNDERGROUND_GARAGE: (AccessibilityLocation.UNDERGROUND_PARKING_GARAGE, True),
    ParkingType.ALONG_MOTORWAY: (AccessibilityLocation.PARKING_LOT, True),  # a rest area is a lot
    ParkingType.ON_DRIVEWAY: (None, None),
}
# §4.4 location type (2.1.1 Location.type)
LOCATION_TYPES: dict[LocationType, tuple[AccessibilityLocation | None, bool | None]] = {
    LocationType.ON_STREET: (AccessibilityLocation.ON_STREET, None),
    LocationType.PARKING_LOT: (AccessibilityLocation.PARKING_LOT, True),
    LocationType.PARKING_GARAGE: (AccessibilityLocation.PARKING_GARAGE, True),
    LocationType.UNDERGROUND_GARAGE: (AccessibilityLocation.UNDERGROUND_PARKING_GARAGE, True),
    LocationType.OTHER: (None, None),
    LocationType.UNKNOWN: (None, None),
}

# §4.4 parking restrictions → AdditionalInfo phrase (English: Hubject wants English first);
# CUSTOMERS also makes the EVSE "Restricted access" (mapping.py).
RESTRICTION_PHRASES: dict[ParkingRestriction, str] = {
    ParkingRestriction.EV_ONLY: "Parking for electric vehicles only",
    ParkingRestriction.PLUGGED: "Parking only while charging",
    ParkingRestriction.DISABLED: "Reserved for drivers with a disability permit",
    ParkingRestriction.CUSTOMERS: "Customers/guests only",
    ParkingRestriction.MOTORCYCLES: "Suitable for motorcycles/scooters only",
}
# §4.4 facilities → the words of one "Nearby: ..." phrase
FACILITY_WORDS: dict[Facility, str] = {
    Facility.HOTEL: "hotel",
    Facility.RESTAURANT: "restaurant",
    Facility.CAFE: "cafe",
    Facility.MALL: "mall",
    Facility.SUPERMARKET: "supermarket",
    Facility.SPORT: "sport",
    Facility.RECREATION_AREA: "recreation area",
    Facility.NATURE: "nature",
    Facility.MUSEUM: "museum",
    Facility.BIKE_SHARING: "bike sharing",
    Facility.BUS_STOP: "bus stop",
    Facility.TAXI_STAND: "taxi stand",
    Facility.TRAM_STOP: "tram stop",
    Facility.METRO_STATION: "metro station",
    Facility.TRAIN_STATION: "train station",
    Facility.AIRPORT: "airport",
    Facility.PARKING_LOT: "parking lot",
    Facility.CARPOOL_PARKING: "carpool parking",
    Facility.FUEL_STATION: "fuel station",
    Facility.WIFI: "wifi",
}
CLOSED_HOURS_PHRASE = "Charging only during opening hours"

# §4.5 energy mix. GENERAL_GREEN / GENERAL_FOSSIL have no OICP type: dropped.
ENERGY_TYPES: dict[EnergySourceCategory, EnergyType | None] = {
    EnergySourceCategory.NUCLEAR: EnergyType.NUCLEAR_ENERGY,
    EnergySourceCategory.GENERAL_FOSSIL: None,
    EnergySourceCategory.COAL: EnergyType.COAL,
    EnergySourceCategory.GAS: EnergyType.NATURAL_GAS,
    EnergySourceCategory.GENERAL_GREEN: None,
    EnergySourceCategory.SOLAR: EnergyType.SOLAR,
    EnergySourceCategory.WIND: EnergyType.WIND,
    EnergySourceCategory.WATER: EnergyType.HYDRO_POWER,
}
# EnvironmentalImpact (2.2.1 key `category`, 2.1.1 key `source`) → the OICP wire field
IMPACT_FIELDS: dict[EnvironmentalImpactCategory, str] = {
    EnvironmentalImpactCategory.CARBON_DIOXIDE: "CO2Emission",
    EnvironmentalImpactCategory.NUCLEAR_WASTE: "NuclearWaste",
}
