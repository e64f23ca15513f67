"""Every official OCPI Location example (tests/data/ocpi, verbatim copies) maps to EvseDataRecords that
validate against Hubject's official OpenAPI and the local rules, or to a documented not-pushable reason.

Whole Locations are mapped as they are. The fragments the specs show (an energy mix, opening hours, a
PATCH, an added EVSE) are applied to the version's base example (2.2.1 ``location_example.json``, 2.1.1
``mod_locations__06.json``) the way a receiver applies them, then mapped. The table below is the
answer for each file: how many records, or which reason, or that OCPI intake already refuses it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from bridge.evse_data import EvseDataSettings, NotPushable, NotPushableReason, RecordSettings, map_location
from bridge.ocpi.v211 import models as v211
from bridge.ocpi.v221 import models as v221
from oicp.evse_data import EvseDataRecord, PushEvseDataRequest, validate_records
from oicp.ids import OperatorID
from oicp.models import ActionType
from oicp.openapi_schemas import Schema, validation_errors
from oicp.simulator import HubjectSimulator, serve_simulator

DATA = Path(__file__).parents[1] / "data" / "ocpi"
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SETTINGS = RecordSettings.of("+49 30 1234567", EvseDataSettings())
REFUSED_BY_INTAKE = "refused by OCPI intake"

Expected = int | NotPushableReason | str

# file → (how it becomes a Location, the outcome)
EXAMPLES_221: dict[str, tuple[str, Expected]] = {
    "location_example.json": ("location", 2),
    "location_example_parking_garage_opening_hours.json": ("location", 1),
    "location_example_uc2_destination_charger.json": ("location", 1),
    "location_example_uc3_destination_charger_not_published.json": (
        "location",
        NotPushableReason.UNPUBLISHED,
    ),
    "location_example_uc4_limited_visibility.json": ("location", NotPushableReason.UNPUBLISHED),
    "location_example_uc5_home_charge_point.json": ("location", NotPushableReason.UNPUBLISHED),
    "location_energymix_example_complete.json": ("merge into location", 2),
    "location_energymix_example_energy_provider.json": ("merge into location", 2),
    "location_energymix_example_simple.json": ("merge into location", 2),
    "location_regularhours_example.json": ("merge into location", 2),
    "location_hours_247_open_exception_closing.json": ("opening_times", 2),
    "location_hours_opening_hours_with_exceptional_closing.json": ("opening_times", 2),
    "location_hours_opening_hours_with_exceptional_opening.json": ("opening_times", 2),
    "location_patch_example_location.json": ("merge into location", 2),
    "location_patch_example_status.json": ("merge into first EVSE", 2),
    "location_patch_example_remove_evse.json": ("merge into first EVSE", NotPushableReason.REMOVED),
    "location_patch_example_tariff.json": ("merge into first connector", 2),
    # "floor": -1 and "physical_reference": 3 are numbers where OCPI says string; no connector power
    "location_put_example_add_evse.json": ("add EVSE", REFUSED_BY_INTAKE),
}
EXAMPLES_211: dict[str, tuple[str, Expected]] = {
    "mod_locations__06.json": ("location", 2),
    "mod_locations__01.json": ("merge into first EVSE", 2),
    "mod_locations__02.json": ("merge into location", 2),
    "mod_locations__03.json": ("merge into first connector", 2),
    "mod_locations__04.json": ("add EVSE", REFUSED_BY_INTAKE),  # the same number-typed fields as above
    "mod_locations__05.json": ("merge into first EVSE", NotPushableReason.REMOVED),
    "mod_locations__07.json": ("member into location", 2),
    "mod_locations__08.json": ("member into location", 2),
    "mod_locations__09.json": ("member into location", 2),
    "mod_locations__10.json": ("member into location", 2),
}
BASE = {"2.2.1": "location_example.json", "2.1.1": "mod_locations__06.json"}


def _read(version: str, name: str) -> Any:
    text = (DATA / version / name).read_text(encoding="utf-8")
    if text.lstrip().startswith('"'):  # 2.1.1 shows some objects as a `"key": {...}` member
        return json.loads("{" + text + "}")
    return json.loads(text)


def _document(version: str, name: str, how: str) -> dict[str, Any]:
    fragment = _read(version, name)
    if how == "location":
        return dict(fragment)
    base: dict[str, Any] = _read(version, BASE[version])
    if how in ("merge into location", "member into location"):
        base.update(fragment)
    elif how == "opening_times":
        base["opening_times"] = fragment
    elif how == "merge into first EVSE":
        base["evses"][0].update(fragment)
    elif how == "merge into first connector":
        base["evses"][0]["connectors"][0].update(fragment)
    elif how == "add EVSE":
        base["evses"].append(fragment)
    return base


def _outcome(version: str, name: str, how: str) -> tuple[Expected, list[EvseDataRecord]]:
    model = v221.Location if version == "2.2.1" else v211.Location
    try:
        location = model.model_validate(_document(version, name, how))
    except ValidationError:
        return REFUSED_BY_INTAKE, []
    mapped = map_location(location, SETTINGS, at=AT)
    refused = [m for m in mapped if isinstance(m, NotPushable)]
    records = [m for m in mapped if isinstance(m, EvseDataRecord)]
    if refused:
        assert len({r.reason for r in refused}) == 1, refused
        return refused[0].reason, records
    return len(records), records


CASES = [("2.2.1", n, how, out) for n, (how, out) in EXAMPLES_221.items()] + [
    ("2.1.1", n, how, out) for n, (how, out) in EXAMPLES_211.items()
]


@pytest.mark.parametrize(("version", "name", "how", "expected"), CASES, ids=[f"{c[0]}/{c[1]}" for c in CASES])
def test_official_example_maps_to_valid_records_or_a_documented_reason(
    version: str, name: str, how: str, expected: Expected
) -> None:
    outcome, records = _outcome(version, name, how)
    assert outcome == expected
    operator = OperatorID("BE*BEC") if records and records[0].evse_id.startswith("BE") else None
    for record in records:
        assert validation_errors(Schema.EVSE_DATA_RECORD, record.to_wire()) == []
        checked = validate_records([record], operator or record.evse_id.operator_id)
        assert checked.refused == (), checked.refused
    if records:
        request = {
            "ActionType": "insert",
            "OperatorEvseData": {
                "OperatorID": str(records[0].evse_id.operator_id),
                "OperatorName": "Example CPO",
                "EvseDataRecord": [r.to_wire() for r in records],
            },
        }
        assert validation_errors(Schema.PUSH_EVSE_DATA, request) == []


def test_every_location_example_file_of_both_versions_is_in_the_table() -> None:
    files_221 = {p.name for p in (DATA / "2.2.1").glob("location_*.json")}
    files_211 = {p.name for p in (DATA / "2.1.1").glob("mod_locations__*.json")}
    assert files_221 == set(EXAMPLES_221)
    assert files_211 == set(EXAMPLES_211)


def test_unpublished_examples_map_to_restricted_records_when_unpublished_evses_are_pushed() -> None:
    settings = RecordSettings.of("+4930123456", EvseDataSettings(), include_unpublished=True)
    for name in ("location_example_uc3_destination_charger_not_published.json",):
        location = v221.Location.model_validate(_read("2.2.1", name))
        (record,) = map_location(location, settings, at=AT)
        assert isinstance(record, EvseDataRecord)
        assert record.accessibility == "Restricted access"
        assert validate_records([record], record.evse_id.operator_id).refused == ()


def test_the_base_example_maps_field_by_field_as_the_table_says() -> None:
    location = v221.Location.model_validate(_read("2.2.1", "location_example.json"))
    first = map_location(location, SETTINGS, at=AT)[0]
    assert isinstance(first, EvseDataRecord)
    wire = first.to_wire()
    assert wire["EvseID"] == "BE*BEC*E041503001"
    assert wire["ChargingStationNames"] == [{"lang": "en", "value": "Gent Zuid"}]
    assert wire["Address"]["Country"] == "BEL"
    assert wire["Address"]["Street"] == "F.Rooseveltlaan"
    assert wire["Address"]["HouseNum"] == "3A"
    assert wire["Address"]["TimeZone"] == "UTC+01:00"  # Europe/Brussels in December
    assert wire["GeoCoordinates"] == {"DecimalDegree": {"Latitude": "51.047599", "Longitude": "3.729944"}}
    assert wire["Plugs"] == ["Type 2 Connector (Cable Attached)", "Type 2 Outlet"]
    assert wire["ChargingPoolID"] == "BE*BEC*PLOC1"
    assert wire["ChargingStationID"] == "1"
    assert wire["PaymentOptions"] == ["Contract"]
    assert wire["ValueAddedServices"] == ["None"]  # RESERVABLE without hubject_reservation
    assert wire["AuthenticationModes"] == ["NFC RFID Classic", "REMOTE"]  # capabilities give none: default
    assert wire["IsOpen24Hours"] is True
    assert wire["HotlinePhoneNumber"] == "+49301234567"


async def test_mapped_examples_pushed_to_the_simulator_are_what_hubject_holds_and_status_then_passes() -> (
    None
):
    """map → validate → eRoamingPushEvseData over real HTTP → the simulator holds exactly the mapped
    records, an EMP pull returns them, and a status push for those EVSEs is no longer answered 603."""
    by_operator: dict[OperatorID, list[EvseDataRecord]] = {}
    for version, name, how, _ in CASES:
        _, records = _outcome(version, name, how)
        for record in records:
            by_operator.setdefault(record.evse_id.operator_id, [])
            if record.evse_id not in {r.evse_id for r in by_operator[record.evse_id.operator_id]}:
                by_operator[record.evse_id.operator_id].append(record)
    simulator = HubjectSimulator(require_evse_data=True)
    async with serve_simulator(simulator) as served, aiohttp.ClientSession() as http:
        for operator, records in by_operator.items():
            checked = validate_records(records, operator)
            assert checked.refused == ()
            request = PushEvseDataRequest.of(operator, "Example CPO", ActionType.FULL_LOAD, checked.valid)
            url = f"{served.url}/evsepush/v23/operators/{operator}/data-records"
            async with http.post(url, json=request.to_wire()) as response:
                assert (await response.json())["Result"] is True
            held = simulator.evse_data.records(operator)
            assert held == {r.evse_id: r.to_wire() for r in records}
            status = {
                "ActionType": "fullLoad",
                "OperatorEvseStatus": {
                    "OperatorID": str(operator),
                    "EvseStatusRecord": [
                        {"EvseID": str(r.evse_id), "EvseStatus": "Available"} for r in records
                    ],
                },
            }
            async with http.post(
                f"{served.url}/evsepush/v21/operators/{operator}/status-records", json=status
            ) as response:
                assert (await response.json())["Result"] is True
        pull = {"ProviderID": "DE-XYZ", "GeoCoordinatesResponseFormat": "DecimalDegree"}
        async with http.post(
            f"{served.url}/evsepull/v23/providers/DE-XYZ/data-records?size=2000", json=pull
        ) as response:
            page = await response.json()
    assert validation_errors(Schema.EVSE_DATA_RESPONSE, page) == []
    pulled = {r["EvseID"] for r in page["content"]}
    assert pulled == {str(r.evse_id) for records in by_operator.values() for r in records}
    assert not [e for e in simulator.request_log if e.result_code == "603"]
