"""The EVSE data mapping rule by rule (docs/evse-data.md): every OCPI enum value of both versions has an
explicit row, unknown or unmappable values are typed reasons, and each transformation does what the
table says."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.evse_data import (
    EvseDataSettings,
    NotPushable,
    NotPushableReason,
    RecordSettings,
    map_evse,
    summarise,
    tables,
)
from bridge.evse_data.address import cut, split_house_number, utc_offset
from bridge.ocpi.v211 import models as v211
from bridge.ocpi.v221 import models as v221
from oicp.evse_data import EvseDataRecord, record_problems

WINTER = datetime(2026, 1, 15, tzinfo=UTC)
SUMMER = datetime(2026, 7, 15, tzinfo=UTC)
DEFAULT = RecordSettings.of("+4930123456", EvseDataSettings())

CONNECTOR: dict[str, Any] = {
    "id": "1",
    "standard": "IEC_62196_T2",
    "format": "SOCKET",
    "power_type": "AC_3_PHASE",
    "max_voltage": 230,
    "max_amperage": 32,
    "last_updated": "2026-01-01T00:00:00Z",
}
EVSE: dict[str, Any] = {
    "uid": "U1",
    "evse_id": "DE*ABC*E100",
    "status": "AVAILABLE",
    "connectors": [CONNECTOR],
    "last_updated": "2026-01-01T00:00:00Z",
}
LOCATION: dict[str, Any] = {
    "country_code": "DE",
    "party_id": "ABC",
    "id": "LOC-1",
    "publish": True,
    "name": "Am Markt",
    "address": "Hauptstraße 12a",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DEU",
    "coordinates": {"latitude": "52.5200081", "longitude": "13.404954"},
    "time_zone": "Europe/Berlin",
    "evses": [EVSE],
    "last_updated": "2026-01-01T00:00:00Z",
}


def build(
    location: dict[str, Any] | None = None, evse: dict[str, Any] | None = None, **connector: Any
) -> tuple[v221.Location, v221.Evse]:
    doc = copy.deepcopy(LOCATION) | (location or {})
    doc["evses"] = [copy.deepcopy(EVSE) | (evse or {})]
    if connector:
        doc["evses"][0]["connectors"] = [CONNECTOR | connector]
    parsed = v221.Location.model_validate(doc)
    assert parsed.evses is not None
    return parsed, parsed.evses[0]


def mapped(
    location: dict[str, Any] | None = None,
    evse: dict[str, Any] | None = None,
    settings: RecordSettings = DEFAULT,
    at: datetime = WINTER,
    **connector: Any,
) -> EvseDataRecord:
    loc, one = build(location, evse, **connector)
    record = map_evse(loc, one, settings, at=at)
    assert isinstance(record, EvseDataRecord), record
    assert record_problems(record) == []
    return record


def refused(
    location: dict[str, Any] | None = None,
    evse: dict[str, Any] | None = None,
    settings: RecordSettings = DEFAULT,
    **connector: Any,
) -> NotPushable:
    loc, one = build(location, evse, **connector)
    result = map_evse(loc, one, settings, at=WINTER)
    assert isinstance(result, NotPushable), result
    return result


# --- the tables cover every OCPI value of both versions ------------------------------------------------


@pytest.mark.parametrize("models", [v211, v221], ids=["2.1.1", "2.2.1"])
def test_every_ocpi_enum_value_has_an_explicit_row(models: Any) -> None:
    assert {s.value for s in models.ConnectorType} <= set(tables.PLUGS)
    assert {p.value for p in models.PowerType} <= set(tables.POWER_TYPES)
    assert {p.value for p in models.PowerType} <= set(tables.PHASES)
    assert {c.value for c in models.Capability} <= set(tables.AUTHENTICATION_BY_CAPABILITY)
    assert {c.value for c in models.Capability} <= set(tables.PAYMENT_BY_CAPABILITY)
    assert {r.value for r in models.ParkingRestriction} <= set(tables.RESTRICTION_PHRASES)
    assert {f.value for f in models.Facility} <= set(tables.FACILITY_WORDS)
    assert {e.value for e in models.EnergySourceCategory} <= set(tables.ENERGY_TYPES)
    assert {e.value for e in models.EnvironmentalImpactCategory} <= set(tables.IMPACT_FIELDS)
    if models is v221:
        assert {p.value for p in v221.ParkingType} == set(tables.PARKING_TYPES)
    else:
        assert {t.value for t in v211.LocationType} == set(tables.LOCATION_TYPES)


def test_the_iec_60309_rows_are_there_for_when_intake_accepts_them() -> None:
    # both OCPI versions define them (2.2.1 mod_locations ConnectorType, 2.1.1 §4.4)
    assert tables.PLUGS["IEC_60309_2_single_16"] == ("IEC 60309 Single Phase", None)
    assert tables.PLUGS["IEC_60309_2_three_32"] == ("IEC 60309 Three Phase", None)


# --- plugs and facilities ------------------------------------------------------------------------


def test_type_2_socket_and_cable_are_different_plugs() -> None:
    assert mapped(format="SOCKET").plugs == ("Type 2 Outlet",)
    assert mapped(format="CABLE").plugs == ("Type 2 Connector (Cable Attached)",)


def test_an_evse_without_an_oicp_plug_is_not_pushed_and_says_which_standard() -> None:
    result = refused(standard="GBT_DC", power_type="DC")
    assert result.reason is NotPushableReason.NO_PLUG
    assert result.describe() == "no OICP plug for GBT_DC"
    assert result.evse_id == "DE*ABC*E100"


def test_unmappable_connectors_are_left_out_when_another_one_maps() -> None:
    chademo = CONNECTOR | {"id": "2", "standard": "CHADEMO", "format": "CABLE", "power_type": "DC",
                           "max_voltage": 500, "max_amperage": 125, "max_electric_power": 50000}  # fmt: skip
    gbt = CONNECTOR | {"id": "3", "standard": "GBT_DC", "power_type": "DC"}
    record = mapped(evse={"connectors": [gbt, chademo]})
    assert record.plugs == ("CHAdeMO",)
    (facility,) = record.charging_facilities
    assert (facility.power_type, facility.power, facility.voltage, facility.amperage) == ("DC", 50, 500, None)
    assert facility.charging_modes == ("CHAdeMO",)


def test_an_operator_may_map_a_standard_oicp_lacks() -> None:
    settings = RecordSettings.of("+4930123456", EvseDataSettings(plugs={"GBT_DC": "CHAdeMO"}))
    assert mapped(settings=settings, standard="GBT_DC", power_type="DC").plugs == ("CHAdeMO",)


def test_power_comes_from_max_electric_power_else_volts_amps_phases() -> None:
    assert mapped().charging_facilities[0].power == 22  # 230 V x 32 A x 3 = 22.08 kW
    assert mapped(max_electric_power=11000).charging_facilities[0].power == 11
    assert mapped(power_type="AC_1_PHASE", max_amperage=16).charging_facilities[0].power == 4  # 3.68 kW
    assert mapped(max_electric_power=400).charging_facilities[0].power == 1  # 0.4 kW: never 0 for > 0
    assert mapped(max_electric_power=0).charging_facilities[0].power == 0
    assert mapped(max_electric_power=2_000_000).charging_facilities[0].power == 999  # OICP's range


def test_out_of_range_voltage_and_amperage_are_left_out_not_clamped() -> None:
    facility = mapped(standard="IEC_62196_T2_COMBO", power_type="DC", max_voltage=1000, max_amperage=500,
                      max_electric_power=350000).charging_facilities[0]  # fmt: skip
    assert (facility.voltage, facility.amperage, facility.power) == (None, None, 350)
    assert facility.charging_modes == ("Mode_4",)


def test_two_phase_power_types_become_one_phase_with_the_real_power() -> None:
    facility = mapped(power_type="AC_2_PHASE", max_voltage=120, max_amperage=40).charging_facilities[0]
    assert (facility.power_type, facility.power) == ("AC_1_PHASE", 10)  # 120 V x 40 A x 2 = 9.6 kW


def test_negative_electrical_values_are_a_reason() -> None:
    assert refused(max_voltage=-230).reason is NotPushableReason.INVALID_POWER


def test_tesla_mode_follows_the_power_type() -> None:
    assert mapped(standard="TESLA_S", power_type="DC").charging_facilities[0].charging_modes == ("Mode_4",)
    assert mapped(standard="TESLA_R", power_type="AC_1_PHASE").charging_facilities[0].charging_modes == (
        "Mode_3",
    )
    assert (
        mapped(standard="DOMESTIC_F", power_type="AC_1_PHASE").charging_facilities[0].charging_modes is None
    )


def test_identical_connectors_give_one_plug_and_one_facility() -> None:
    record = mapped(evse={"connectors": [CONNECTOR, CONNECTOR | {"id": "2"}]})
    assert len(record.plugs) == 1
    assert len(record.charging_facilities) == 1


def test_211_connectors_use_voltage_and_amperage() -> None:
    doc = {k: v for k, v in LOCATION.items() if k not in ("country_code", "party_id", "publish")}
    connector = {k: v for k, v in CONNECTOR.items() if k not in ("max_voltage", "max_amperage")}
    doc["coordinates"] = {"latitude": "52.520008", "longitude": "13.404954"}  # 2.1.1: exactly 6 places
    doc |= {
        "type": "PARKING_GARAGE",
        "evses": [EVSE | {"connectors": [connector | {"voltage": 230, "amperage": 16}]}],
    }
    location = v211.Location.model_validate(doc)
    assert location.evses is not None
    record = map_evse(location, location.evses[0], DEFAULT, at=WINTER)
    assert isinstance(record, EvseDataRecord)
    assert record.charging_facilities[0].power == 11  # 230 x 16 x 3
    assert (record.accessibility_location, record.address.parking_facility) == ("ParkingGarage", True)
    assert record_problems(record) == []


# --- withdrawals and ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("evse", "location", "reason"),
    [
        ({"evse_id": None}, {}, NotPushableReason.NO_EVSE_ID),
        ({"evse_id": "not an id"}, {}, NotPushableReason.INVALID_EVSE_ID),
        ({"status": "REMOVED"}, {}, NotPushableReason.REMOVED),
        ({"status": "PLANNED"}, {}, NotPushableReason.PLANNED),
        ({}, {"publish": False}, NotPushableReason.UNPUBLISHED),
        ({}, {"country": "DE"}, NotPushableReason.INVALID_COUNTRY),
        ({}, {"city": "  "}, NotPushableReason.NO_CITY),
    ],
)
def test_not_pushable_reasons(
    evse: dict[str, Any], location: dict[str, Any], reason: NotPushableReason
) -> None:
    assert refused(location, evse).reason is reason


def test_planned_and_unpublished_follow_the_status_side_settings() -> None:
    settings = RecordSettings.of(
        "+4930123456", EvseDataSettings(), include_unpublished=True, push_planned=True
    )
    assert mapped(evse={"status": "PLANNED"}, settings=settings).evse_id == "DE*ABC*E100"
    assert mapped(location={"publish": False}, settings=settings).accessibility == "Restricted access"


def test_ocpi_211_style_dashes_become_stars() -> None:
    assert mapped(evse={"evse_id": "de-abc-e100"}).evse_id == "DE*ABC*E100"


def test_pool_id_uses_the_evse_ids_operator_and_is_omitted_when_it_cannot_be_one() -> None:
    assert mapped().charging_pool_id == "DE*ABC*PLOC*1"
    assert mapped(location={"id": "-x"}).charging_pool_id is None
    assert mapped(location={"id": "A" * 31}).charging_pool_id is None
    assert mapped(evse={"evse_id": "+49*810*000*438"}).charging_pool_id is None


# --- address, geo, names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "street", "number"),
    [
        ("Hauptstraße 12a", "Hauptstraße", "12a"),
        ("12 rue de la Paix", "rue de la Paix", "12"),
        ("Karl-Marx-Allee 90-92", "Karl-Marx-Allee", "90-92"),
        ("Parkplatz Nord", "Parkplatz Nord", ""),
        ("A9 Raststätte 3", "A9 Raststätte", "3"),
        ("1234567", "1234567", ""),
    ],
)
def test_house_number_split_is_conservative(address: str, street: str, number: str) -> None:
    assert split_house_number(address) == (street, number)


def test_address_fields() -> None:
    record = mapped(location={"state": "Berlin"}, evse={"floor_level": "-1"})
    address = record.address
    assert (address.street, address.house_num, address.postal_code) == ("Hauptstraße", "12a", "10115")
    assert (address.floor, address.region, address.country) == ("-1", "Berlin", "DEU")
    assert mapped(location={"address": "X"}, settings=RecordSettings.of(
        "+4930123456", EvseDataSettings(address_split="off"))).address.street == "X_"  # fmt: skip
    assert mapped(location={"postal_code": None}).address.postal_code == ""


def test_time_zone_is_the_offset_at_mapping_time() -> None:
    assert mapped(at=WINTER).address.time_zone == "UTC+01:00"
    assert mapped(at=SUMMER).address.time_zone == "UTC+02:00"
    assert mapped(location={"time_zone": "America/St_Johns"}).address.time_zone == "UTC-03:30"
    assert mapped(location={"time_zone": "Nowhere/Land"}).address.time_zone is None
    assert utc_offset("../../etc/passwd", WINTER) is None


def test_coordinates_are_decimal_degrees_with_six_places_evse_first() -> None:
    assert mapped().geo_coordinates.to_wire() == {
        "DecimalDegree": {"Latitude": "52.520008", "Longitude": "13.404954"}
    }
    own = mapped(evse={"coordinates": {"latitude": "-33.86785", "longitude": "151.20732"}})
    assert own.geo_coordinates.to_wire() == {
        "DecimalDegree": {"Latitude": "-33.867850", "Longitude": "151.207320"}
    }


def test_station_name_falls_back_to_the_template_and_is_cut_at_a_word() -> None:
    assert mapped(location={"name": None}).charging_station_names[0].value == "Hauptstraße 12a, Berlin"
    long_name = "Ladepark " + "sehr " * 40 + "lang"
    value = mapped(location={"name": long_name}).charging_station_names[0].value
    assert len(value) <= 150
    assert value.endswith("sehr")
    assert cut("x" * 200, 150) == "x" * 150


def test_directions_keep_valid_languages_and_prefer_the_evse() -> None:
    texts = [{"language": "EN", "text": "Level 2"}, {"language": "e1", "text": "bad"}]
    record = mapped(location={"directions": [{"language": "de", "text": "Hof"}]}, evse={"directions": texts})
    assert [t.to_wire() for t in record.charging_station_location_reference or ()] == [
        {"lang": "en", "value": "Level 2"}
    ]


def test_image_prefers_a_charger_photo_and_never_a_logo() -> None:
    logo = {"url": "https://x/logo.png", "category": "OPERATOR", "type": "png"}
    photo = {"url": "https://x/site.jpg", "category": "LOCATION", "type": "jpg"}
    charger = {"url": "https://x/charger.jpg", "category": "CHARGER", "type": "jpg"}
    assert (
        mapped(location={"images": [logo, photo]}, evse={"images": [charger]}).charging_station_image
        == charger["url"]
    )
    assert mapped(location={"images": [logo, photo]}).charging_station_image == photo["url"]
    assert mapped(location={"images": [logo]}).charging_station_image is None


# --- capabilities, payment, services, access -------------------------------------------------------


def test_capabilities() -> None:
    record = mapped(
        evse={
            "capabilities": ["RFID_READER", "CREDIT_CARD_PAYABLE", "RESERVABLE", "CHARGING_PROFILE_CAPABLE"]
        }
    )
    assert record.authentication_modes == ("NFC RFID Classic",)
    assert record.payment_options == ("Direct", "Contract")
    assert record.value_added_services == ("None",)  # RESERVABLE alone is not Hubject reservation
    assert record.dynamic_power_level is True
    bare = mapped()
    assert bare.authentication_modes == ("NFC RFID Classic", "REMOTE")  # the configured default
    assert bare.dynamic_power_level is None  # absence is no proof of false


def test_reservation_only_with_hubject_reservation_and_no_payment_is_exclusive() -> None:
    data = EvseDataSettings(hubject_reservation=True, payment_options=("No Payment",))
    record = mapped(
        evse={"capabilities": ["RESERVABLE", "CREDIT_CARD_PAYABLE"]},
        settings=RecordSettings.of("+4930123456", data),
    )
    assert record.value_added_services == ("Reservation",)
    assert record.payment_options == ("No Payment",)


def test_accessibility() -> None:
    assert mapped().accessibility == "Free publicly accessible"
    assert mapped(evse={"parking_restrictions": ["CUSTOMERS"]}).accessibility == "Restricted access"
    data = EvseDataSettings(accessibility_by_parking_type={"PARKING_GARAGE": "Paying publicly accessible"})
    record = mapped(
        location={"parking_type": "PARKING_GARAGE"}, settings=RecordSettings.of("+4930123456", data)
    )
    assert record.accessibility == "Paying publicly accessible"
    assert (record.accessibility_location, record.address.parking_facility) == ("ParkingGarage", True)
    motorway = mapped(location={"parking_type": "ALONG_MOTORWAY"})
    assert motorway.accessibility_location == "ParkingLot"
    assert mapped(location={"facilities": ["PARKING_LOT"]}).accessibility_location == "ParkingLot"


def test_additional_info_phrases() -> None:
    record = mapped(
        location={"facilities": ["HOTEL", "TRAIN_STATION"], "charging_when_closed": False,
                  "opening_times": {"twentyfourseven": False, "regular_hours": [
                      {"weekday": 1, "period_begin": "08:00", "period_end": "18:00"}]}},
        evse={"parking_restrictions": ["EV_ONLY", "CUSTOMERS"]},
    )  # fmt: skip
    (info,) = record.additional_info or ()
    assert info.lang == "en"
    assert info.value == (
        "Parking for electric vehicles only; Customers/guests only; Nearby: hotel, train station; "
        "Charging only during opening hours"
    )
    assert mapped().additional_info is None


# --- energy and opening hours ---------------------------------------------------------------------


def test_energy_mix() -> None:
    mix = {
        "is_green_energy": True,
        "energy_sources": [
            {"source": "SOLAR", "percentage": 100},
            {"source": "GENERAL_GREEN", "percentage": 10},
            {"source": "WATER", "percentage": 12.5},
        ],
        "environ_impact": [
            {"category": "CARBON_DIOXIDE", "amount": 30.3},
            {"category": "NUCLEAR_WASTE", "amount": 1e9},
        ],
    }
    record = mapped(location={"energy_mix": mix})
    assert record.renewable_energy is True
    assert [s.to_wire() for s in record.energy_source or ()] == [
        {"Energy": "Solar", "Percentage": 99},  # two digits
        {"Energy": "HydroPower", "Percentage": 13},  # half up
    ]
    assert record.environmental_impact is not None
    assert record.environmental_impact.to_wire() == {"CO2Emission": 30.3}  # out of range: left out
    assert mapped().renewable_energy is False  # the configured default


def hours(*rows: tuple[int, str, str], always: bool = False) -> dict[str, Any]:
    regular = [{"weekday": d, "period_begin": b, "period_end": e} for d, b, e in rows]
    return {"opening_times": {"twentyfourseven": always, "regular_hours": regular}}


def test_opening_hours() -> None:
    assert mapped().is_open_24_hours is True  # unknown: open_24h_when_unknown
    assert mapped(location=hours(always=True)).opening_times is None
    whole = hours(*((d, "00:00", "24:00") for d in range(1, 8)))
    assert mapped(location=whole).is_open_24_hours is True
    week = hours(*((d, "08:00", "20:00") for d in range(1, 6)), (6, "10:00", "14:00"), (7, "10:00", "14:00"))
    record = mapped(location=week)
    assert record.is_open_24_hours is False
    assert [t.to_wire() for t in record.opening_times or ()] == [
        {"Period": [{"begin": "08:00", "end": "20:00"}], "on": "Workdays"},
        {"Period": [{"begin": "10:00", "end": "14:00"}], "on": "Weekend"},
    ]
    daily = mapped(location=hours(*((d, "07:00", "18:00") for d in range(1, 8))))
    assert [t.on for t in daily.opening_times or ()] == ["Everyday"]
    mixed = mapped(location=hours((1, "08:00", "12:00"), (1, "11:00", "14:00"), (3, "22:00", "02:00")))
    assert [t.to_wire() for t in mixed.opening_times or ()] == [
        {"Period": [{"begin": "08:00", "end": "14:00"}], "on": "Monday"},  # overlaps merged
        {"Period": [{"begin": "22:00", "end": "02:00"}], "on": "Wednesday"},  # overnight passed through
    ]
    strict = RecordSettings.of("+4930123456", EvseDataSettings(open_24h_when_unknown=False))
    assert refused(settings=strict).reason is NotPushableReason.NO_OPENING_TIMES


# --- the hash tells whether Hubject needs an update ---------------------------------------------------


def test_hash_ignores_status_and_tariffs_and_follows_structure() -> None:
    base = mapped().canonical_hash()
    assert mapped(evse={"status": "CHARGING"}).canonical_hash() == base
    assert mapped(tariff_ids=["T1"]).canonical_hash() == base
    assert mapped(location={"last_updated": "2026-02-01T00:00:00Z"}).canonical_hash() == base
    assert mapped(max_amperage=16).canonical_hash() != base
    assert mapped(location={"name": "Neuer Name"}).canonical_hash() != base
    assert mapped(at=SUMMER).canonical_hash() != base  # DST: the offset changes twice a year


def test_not_pushable_evses_are_counted_by_reason_for_the_status_page() -> None:
    gbt = [refused(evse={"uid": f"G{n}"}, standard="GBT_DC", power_type="DC") for n in range(2)]
    removed = refused(evse={"status": "REMOVED"})
    no_id = [refused(evse={"evse_id": None, "uid": f"N{n}"}) for n in range(3)]
    assert summarise([*gbt, removed, *no_id]) == [
        "3 EVSEs: no evse_id",
        "2 EVSEs: no OICP plug for GBT_DC",
        "1 EVSE: EVSE is REMOVED",
    ]
