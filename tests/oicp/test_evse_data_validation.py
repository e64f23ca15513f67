"""The EvseDataRecord wire models and the local validation: what Hubject refuses that its schema does not
say (text lengths, ``No Payment`` exclusive, ``IsOpen24Hours`` vs ``OpeningTimes``, integer ranges, EvseID
prefix vs OperatorID, duplicates), so one bad record is set aside and never fails a batch."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oicp.evse_data import (
    EvseDataRecord,
    PushEvseDataRequest,
    record_problems,
    validate_records,
)
from oicp.ids import OperatorID
from oicp.models import ActionType
from oicp.openapi_schemas import Schema, _fast, _validator, validation_errors
from tests.oicp.test_simulator_evse_data import record as wire_record

OPERATOR = OperatorID("DE*ABC")


def make(**changes: Any) -> EvseDataRecord:
    wire = wire_record("DE*ABC*E1") | changes
    return EvseDataRecord.model_validate(wire)


def test_a_minimal_record_round_trips_through_the_wire_form() -> None:
    record = make()
    assert record.to_wire() == wire_record("DE*ABC*E1")
    assert record_problems(record) == []


def test_the_schema_spelling_of_the_station_id_is_read_and_the_examples_spelling_written() -> None:
    record = make(ChargingStationId="Pillar 3")
    assert record.charging_station_id == "Pillar 3"
    assert record.to_wire()["ChargingStationID"] == "Pillar 3"
    assert "ChargingStationId" not in record.to_wire()


def test_dynamic_info_available_is_a_string_on_the_wire() -> None:
    assert make().to_wire()["DynamicInfoAvailable"] == "true"
    with pytest.raises(ValueError, match="DynamicInfoAvailable"):
        make(DynamicInfoAvailable=True)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"ChargingStationNames": [{"lang": "en", "value": "x" * 151}]}, "ChargingStationNames/0/value"),
        ({"ChargingStationNames": []}, "ChargingStationNames: at least one"),
        ({"ChargingStationNames": [{"lang": "EN", "value": "x"}]}, "ChargingStationNames/0/lang"),
        ({"AdditionalInfo": [{"lang": "en", "value": "y" * 200}]}, "AdditionalInfo/0/value"),
        ({"ChargingStationID": "z" * 51}, "ChargingStationID"),
        ({"SubOperatorName": "s" * 101}, "SubOperatorName"),
        ({"ChargingStationImage": "https://" + "i" * 200}, "ChargingStationImage"),
        ({"Address": wire_record("X")["Address"] | {"Street": "A"}}, "Address.Street"),
        ({"Address": wire_record("X")["Address"] | {"City": ""}}, "Address.City"),
        ({"Address": wire_record("X")["Address"] | {"HouseNum": "12345678901"}}, "Address.HouseNum"),
        ({"Address": wire_record("X")["Address"] | {"Country": "DE"}}, "Address.Country"),
        ({"Address": wire_record("X")["Address"] | {"Country": "deu"}}, "Address.Country"),
        ({"Address": wire_record("X")["Address"] | {"TimeZone": "Europe/Berlin"}}, "Address.TimeZone"),
        ({"PaymentOptions": ["No Payment", "Contract"]}, "'No Payment' cannot be combined"),
        ({"PaymentOptions": []}, "PaymentOptions: at least one"),
        ({"ValueAddedServices": ["None", "Reservation"]}, "'None' cannot be combined"),
        ({"Plugs": []}, "Plugs: at least one"),
        ({"AuthenticationModes": []}, "AuthenticationModes: at least one"),
        ({"IsOpen24Hours": False}, "required when IsOpen24Hours is false"),
        (
            {"OpeningTimes": [{"Period": [{"begin": "08:00", "end": "20:00"}], "on": "Everyday"}]},
            "given although IsOpen24Hours is true",
        ),
        ({"ChargingFacilities": [{"PowerType": "DC", "Power": 1000}]}, "Power: 1000"),
        ({"ChargingFacilities": [{"PowerType": "DC", "Power": 50, "Amperage": 125}]}, "Amperage: 125"),
        ({"ChargingFacilities": [{"PowerType": "DC", "Power": 50, "Voltage": 1000}]}, "Voltage: 1000"),
        ({"EnergySource": [{"Energy": "Solar", "Percentage": 100}]}, "Percentage: 100"),
        ({"EnvironmentalImpact": {"CO2Emission": 100000}}, "CO2Emission"),
        ({"HotlinePhoneNumber": "+49 30"}, "HotlinePhoneNumber"),
        ({"ChargingPoolID": "DE*ABC*P"}, "ChargingPoolID"),
        (
            {"GeoCoordinates": {"DecimalDegree": {"Latitude": "91.000000", "Longitude": "13.0"}}},
            "out of range",
        ),
        (
            {"GeoCoordinates": {"DecimalDegree": {"Latitude": "52.1234567", "Longitude": "13.0"}}},
            "decimal degree",
        ),
        ({"GeoCoordinates": {}}, "one of Google, DecimalDegree"),
    ],
)
def test_each_rule_the_schema_cannot_express(changes: dict[str, Any], problem: str) -> None:
    problems = record_problems(make(**changes))
    assert any(problem in line for line in problems), problems


def test_the_official_schema_is_checked_too() -> None:
    problems = record_problems(
        make(Accessibility="Free publicly accessible", Plugs=["Type 2 Outlet"], MaxCapacity=5)
    )
    assert problems == []
    schema_only = make(GeoCoordinates={"Google": {"Coordinates": "not coordinates"}})
    assert any("Coordinates" in line for line in record_problems(schema_only))


def test_one_bad_record_is_set_aside_and_the_rest_sent() -> None:
    good = make()
    bad = make(EvseID="DE*ABC*E2", PaymentOptions=["No Payment", "Direct"])
    foreign = make(EvseID="DE*XYZ*E3")
    repeated = make(EvseID="DEABCE1")  # the same EVSE as DE*ABC*E1 without separators
    checked = validate_records([good, bad, foreign, repeated], OPERATOR)
    assert checked.valid == (good,)
    reasons = {str(r.record.evse_id): r.reasons for r in checked.refused}
    assert set(reasons) == {"DE*ABC*E2", "DE*XYZ*E3", "DEABCE1"}
    assert any("No Payment" in line for line in reasons["DE*ABC*E2"])
    assert any("018" in line and "DE*ABC" in line for line in reasons["DE*XYZ*E3"])
    assert any("twice" in line for line in reasons["DEABCE1"])


def test_sub_operators_hubject_knows_are_allowed() -> None:
    sub = make(EvseID="DE*SUB*E1")
    assert validate_records([sub], OPERATOR).valid == ()
    assert validate_records([sub], OPERATOR, sub_operator_ids=[OperatorID("DE*SUB")]).valid == (sub,)


def test_the_push_request_is_what_the_official_schema_wants() -> None:
    request = PushEvseDataRequest.of(OPERATOR, "ABC Charging", ActionType.INSERT, [make()])
    wire = request.to_wire()
    assert validation_errors(Schema.PUSH_EVSE_DATA, wire) == []
    assert wire["OperatorEvseData"]["OperatorName"] == "ABC Charging"
    with pytest.raises(ValueError, match="operator_name"):
        PushEvseDataRequest.of(OPERATOR, "", ActionType.INSERT, [])
    with pytest.raises(ValueError, match="operator_name"):
        PushEvseDataRequest.of(OPERATOR, "n" * 101, ActionType.INSERT, [])


def test_opening_times_key_on_is_not_read_as_a_yaml_boolean() -> None:
    """OpeningTimes.yaml lists ``on`` as required; read as YAML 1.1 that is the boolean True, which made
    every record with opening times fail the official schema."""
    record = make(
        IsOpen24Hours=False, OpeningTimes=[{"Period": [{"begin": "08:00", "end": "20:00"}], "on": "Workdays"}]
    )
    assert validation_errors(Schema.EVSE_DATA_RECORD, record.to_wire()) == []
    wire = record.to_wire()
    del wire["OpeningTimes"][0]["on"]
    assert validation_errors(Schema.EVSE_DATA_RECORD, wire) != []


@given(
    st.text(max_size=200),
    st.sampled_from(["en", "de", "EN", "e", "deu", "de-DE"]),
    st.integers(-5, 1200),
    st.booleans(),
)
def test_no_problem_means_the_official_schema_accepts_it(
    name: str, lang: str, power: int, always: bool
) -> None:
    times = None if always else [{"Period": [{"begin": "08:00", "end": "20:00"}], "on": "Everyday"}]
    record = make(
        ChargingStationNames=[{"lang": lang, "value": name}],
        ChargingFacilities=[{"PowerType": "AC_3_PHASE", "Power": power}],
        IsOpen24Hours=always,
        **({} if times is None else {"OpeningTimes": times}),
    )
    problems = record_problems(record)
    if not problems:
        assert validation_errors(Schema.EVSE_DATA_RECORD, record.to_wire()) == []
    assert (not problems) == (len(name) <= 150 and lang in ("en", "de", "deu", "de-DE") and 0 <= power <= 999)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2000, 2000) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
FIELDS = st.sampled_from(
    ["Plugs", "ChargingFacilities", "Address", "GeoCoordinates", "IsOpen24Hours", "EnergySource",
     "MaxCapacity", "EnvironmentalImpact", "OpeningTimes", "DynamicInfoAvailable", "lastUpdate", "EvseID"]
)  # fmt: skip
FACILITIES = st.fixed_dictionaries(
    {"PowerType": st.sampled_from(["AC_3_PHASE", "DC", "x"]), "Power": st.integers(-2, 1002) | st.floats()},
    optional={
        "Voltage": st.integers(-2, 1002) | st.booleans(),
        "Amperage": st.integers(-2, 102) | st.just(1.0),
    },
)


@given(st.lists(st.tuples(FIELDS, JSON_VALUES), max_size=3), st.lists(FACILITIES, max_size=2))
def test_the_schema_fast_path_never_passes_what_the_full_validator_rejects(
    changes: list[tuple[str, Any]], facilities: list[dict[str, Any]]
) -> None:
    wire = wire_record("DE*ABC*E1") | dict(changes)
    if facilities:
        wire["ChargingFacilities"] = facilities
    fast = _fast(Schema.EVSE_DATA_RECORD)
    assert fast is not None
    if fast(wire):
        assert list(_validator(Schema.EVSE_DATA_RECORD).iter_errors(wire)) == []
