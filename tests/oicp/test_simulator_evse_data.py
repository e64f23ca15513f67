"""The simulator's EVSE data service over real loopback HTTP: ActionType semantics (insert of an existing
record and update of a missing one abort the whole request, OICP 2.3 EMP 02), validation against the
official OpenAPI, the EMP PullEvseData pages, ``--require-evse-data`` (603 with the EvseIDs without
``*``), and faults on the data endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oicp.ids import EvseID, OperatorID
from oicp.models import ActionType
from oicp.openapi_schemas import Schema, validation_errors
from oicp.simulator import FaultKind, HubjectSimulator, ServedSimulator, serve_simulator
from oicp.simulator.evse_data_state import EvseDataState, evse_key, missing_data
from tests.oicp.test_simulator_command import hubject_sim

OPERATOR = OperatorID("DE*ABC")
DATA_PATH = "/evsepush/v23/operators/DE*ABC/data-records"
PULL_PATH = "/evsepull/v23/providers/DE-XYZ/data-records"
STATUS_PATH = "/evsepush/v21/operators/DE*ABC/status-records"


def record(evse_id: str, *, city: str = "Berlin", open_24h: bool = True) -> dict[str, Any]:
    """A minimal, schema-valid EvseDataRecord (the 16 mandatory fields)."""
    return {
        "EvseID": evse_id,
        "ChargingStationNames": [{"lang": "en", "value": "Test station"}],
        "Address": {
            "Country": "DEU",
            "City": city,
            "Street": "Hauptstraße",
            "PostalCode": "10115",
            "HouseNum": "1",
        },
        "GeoCoordinates": {"DecimalDegree": {"Latitude": "52.520008", "Longitude": "13.404954"}},
        "Plugs": ["Type 2 Outlet"],
        "ChargingFacilities": [{"PowerType": "AC_3_PHASE", "Power": 22, "Voltage": 230, "Amperage": 32}],
        "RenewableEnergy": False,
        "CalibrationLawDataAvailability": "Not Available",
        "AuthenticationModes": ["NFC RFID Classic", "REMOTE"],
        "PaymentOptions": ["Contract"],
        "ValueAddedServices": ["None"],
        "Accessibility": "Free publicly accessible",
        "HotlinePhoneNumber": "+4930123456",
        "IsOpen24Hours": open_24h,
        **(
            {}
            if open_24h
            else {"OpeningTimes": [{"Period": [{"begin": "08:00", "end": "20:00"}], "on": "Everyday"}]}
        ),
        "IsHubjectCompatible": True,
        "DynamicInfoAvailable": "true",
    }


def push_body(action: str, records: list[dict[str, Any]], operator: str = "DE*ABC") -> dict[str, Any]:
    return {
        "ActionType": action,
        "OperatorEvseData": {
            "OperatorID": operator,
            "OperatorName": "ABC Charging",
            "EvseDataRecord": records,
        },
    }


@pytest.fixture
def simulator() -> HubjectSimulator:
    return HubjectSimulator(require_evse_data=True)


@pytest.fixture
async def served(simulator: HubjectSimulator) -> AsyncIterator[ServedSimulator]:
    async with serve_simulator(simulator) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, served: ServedSimulator, path: str, body: Any, query: str = ""
) -> tuple[int, dict[str, Any]]:
    async with http.post(served.url + path + query, json=body) as response:
        return response.status, await response.json()


async def test_insert_is_acknowledged_and_the_record_is_held_as_sent(
    http: aiohttp.ClientSession, served: ServedSimulator, simulator: HubjectSimulator
) -> None:
    status, ack = await post(http, served, DATA_PATH, push_body("insert", [record("DE*ABC*E1")]))
    assert status == 200
    assert ack["Result"] is True
    assert ack["StatusCode"]["Code"] == "000"
    assert validation_errors(Schema.ACKNOWLEDGEMENT, ack) == []
    assert simulator.evse_data.records(OPERATOR) == {EvseID("DE*ABC*E1"): record("DE*ABC*E1")}


async def test_insert_of_an_existing_record_aborts_the_whole_request(
    http: aiohttp.ClientSession, served: ServedSimulator, simulator: HubjectSimulator
) -> None:
    await post(http, served, DATA_PATH, push_body("insert", [record("DE*ABC*E1")]))
    status, ack = await post(
        http,
        served,
        DATA_PATH,
        push_body("insert", [record("DE*ABC*E2"), record("DE*ABC*E1", city="Potsdam")]),
    )
    assert status == 200
    assert ack["Result"] is False
    assert ack["StatusCode"]["Code"] == "009"
    assert "DE*ABC*E1" in ack["StatusCode"]["AdditionalInfo"]
    held = simulator.evse_data.records(OPERATOR)
    assert set(held) == {EvseID("DE*ABC*E1")}  # E2 was not inserted either: all or nothing
    assert held[EvseID("DE*ABC*E1")]["Address"]["City"] == "Berlin"


async def test_update_of_a_missing_record_aborts_the_whole_request(
    http: aiohttp.ClientSession, served: ServedSimulator, simulator: HubjectSimulator
) -> None:
    await post(http, served, DATA_PATH, push_body("insert", [record("DE*ABC*E1")]))
    _status, ack = await post(
        http,
        served,
        DATA_PATH,
        push_body("update", [record("DE*ABC*E1", city="Potsdam"), record("DE*ABC*E9")]),
    )
    assert ack["Result"] is False
    assert ack["StatusCode"]["Code"] == "009"
    assert "DE*ABC*E9" in ack["StatusCode"]["AdditionalInfo"]
    assert simulator.evse_data.records(OPERATOR)[EvseID("DE*ABC*E1")]["Address"]["City"] == "Berlin"
    _, ack = await post(http, served, DATA_PATH, push_body("update", [record("DE*ABC*E1", city="Potsdam")]))
    assert ack["Result"] is True
    assert simulator.evse_data.records(OPERATOR)[EvseID("DE*ABC*E1")]["Address"]["City"] == "Potsdam"


async def test_full_load_replaces_and_delete_removes(
    http: aiohttp.ClientSession, served: ServedSimulator, simulator: HubjectSimulator
) -> None:
    await post(http, served, DATA_PATH, push_body("fullLoad", [record("DE*ABC*E1"), record("DE*ABC*E2")]))
    await post(http, served, DATA_PATH, push_body("fullLoad", [record("DE*ABC*E2"), record("DE*ABC*E3")]))
    assert set(simulator.evse_data.records(OPERATOR)) == {EvseID("DE*ABC*E2"), EvseID("DE*ABC*E3")}
    _, ack = await post(
        http, served, DATA_PATH, push_body("delete", [record("DE*ABC*E2"), record("DE*ABC*E7")])
    )
    assert ack["Result"] is True  # an unknown record in a delete is ignored
    assert set(simulator.evse_data.records(OPERATOR)) == {EvseID("DE*ABC*E3")}
    await post(http, served, DATA_PATH, push_body("fullLoad", []))
    assert simulator.evse_data.records(OPERATOR) == {}


async def test_a_body_breaking_the_official_schema_is_a_400_with_the_field_named(
    http: aiohttp.ClientSession, served: ServedSimulator, simulator: HubjectSimulator
) -> None:
    bad = record("DE*ABC*E1")
    bad["Plugs"] = ["Unspecified"]  # refused since OICP 2.3 (Release Notes)
    del bad["HotlinePhoneNumber"]
    status, ack = await post(http, served, DATA_PATH, push_body("insert", [bad]))
    assert status == 400
    assert ack["Result"] is False
    assert ack["StatusCode"]["Code"] == "022"
    info = ack["StatusCode"]["AdditionalInfo"]
    assert "Plugs/0" in info
    assert "HotlinePhoneNumber" in info
    no_name = push_body("insert", [record("DE*ABC*E1")])
    del no_name["OperatorEvseData"]["OperatorName"]  # mandatory for data, unlike status
    status, _ = await post(http, served, DATA_PATH, no_name)
    assert status == 400
    assert simulator.evse_data.records(OPERATOR) == {}


async def test_foreign_and_duplicated_evse_ids_are_refused_with_018(
    http: aiohttp.ClientSession, served: ServedSimulator, simulator: HubjectSimulator
) -> None:
    _, ack = await post(
        http, served, DATA_PATH, push_body("insert", [record("DE*ABC*E1"), record("DE*XYZ*E1")])
    )
    assert ack["StatusCode"]["Code"] == "018"
    assert "DE*XYZ*E1" in ack["StatusCode"]["AdditionalInfo"]
    _, ack = await post(
        http, served, DATA_PATH, push_body("insert", [record("DE*ABC*E1"), record("DEABCE1")])
    )
    assert ack["StatusCode"]["Code"] == "018"
    assert simulator.evse_data.records(OPERATOR) == {}


async def test_required_evse_data_answers_603_naming_the_ids_without_star_until_the_data_is_pushed(
    http: aiohttp.ClientSession, served: ServedSimulator, simulator: HubjectSimulator
) -> None:
    status_push = {
        "ActionType": "update",
        "OperatorEvseStatus": {
            "OperatorID": "DE*ABC",
            "EvseStatusRecord": [
                {"EvseID": "DE*ABC*E1", "EvseStatus": "Available"},
                {"EvseID": "DE*ABC*E2", "EvseStatus": "Occupied"},
            ],
        },
    }
    await post(http, served, DATA_PATH, push_body("insert", [record("DE*ABC*E1")]))
    status, ack = await post(http, served, STATUS_PATH, status_push)
    assert status == 200
    assert ack["Result"] is False
    assert ack["StatusCode"]["Code"] == "603"
    assert ack["StatusCode"]["AdditionalInfo"] == "EVSE data records missing for EvseIDs: DEABCE2"
    assert simulator.statuses(OPERATOR) == {}  # the request as a whole is refused
    await post(http, served, DATA_PATH, push_body("insert", [record("DE*ABC*E2")]))
    _, ack = await post(http, served, STATUS_PATH, status_push)
    assert ack["Result"] is True
    assert len(simulator.statuses(OPERATOR)) == 2


async def test_without_the_requirement_status_needs_no_data(http: aiohttp.ClientSession) -> None:
    simulator = HubjectSimulator()
    async with serve_simulator(simulator) as served:
        body = {
            "ActionType": "update",
            "OperatorEvseStatus": {
                "OperatorID": "DE*ABC",
                "EvseStatusRecord": [{"EvseID": "DE*ABC*E1", "EvseStatus": "Available"}],
            },
        }
        _, ack = await post(http, served, STATUS_PATH, body)
    assert ack["Result"] is True


async def test_pull_pages_filters_and_writes_the_requested_coordinate_format(
    http: aiohttp.ClientSession, served: ServedSimulator
) -> None:
    records = [record(f"DE*ABC*E{n}", open_24h=n % 2 == 0) for n in range(5)]
    await post(http, served, DATA_PATH, push_body("fullLoad", records))
    body = {"ProviderID": "DE-XYZ", "GeoCoordinatesResponseFormat": "Google", "OperatorIds": ["DE*ABC"]}
    status, page = await post(http, served, PULL_PATH, body, "?page=1&size=2")
    assert status == 200
    assert validation_errors(Schema.EVSE_DATA_RESPONSE, page) == []
    assert (page["number"], page["size"], page["totalElements"], page["totalPages"]) == (1, 2, 5, 3)
    assert (page["first"], page["last"], page["numberOfElements"]) == (False, False, 2)
    assert [r["EvseID"] for r in page["content"]] == ["DE*ABC*E2", "DE*ABC*E3"]
    assert page["content"][0]["GeoCoordinates"] == {"Google": {"Coordinates": "52.520008 13.404954"}}
    assert page["content"][0]["OperatorID"] == "DE*ABC"
    assert page["content"][0]["OperatorName"] == "ABC Charging"
    _, only_open = await post(http, served, PULL_PATH, {**body, "IsOpen24Hours": True}, "?size=20")
    assert [r["EvseID"] for r in only_open["content"]] == ["DE*ABC*E0", "DE*ABC*E2", "DE*ABC*E4"]
    _, other = await post(http, served, PULL_PATH, {**body, "OperatorIds": ["DE*XYZ"]})
    assert other["content"] == []
    assert other["totalElements"] == 0
    status, _ = await post(http, served, PULL_PATH, {"ProviderID": "DE-XYZ"})  # format is mandatory
    assert status == 400
    status, _ = await post(http, served, PULL_PATH, body, "?size=5000")
    assert status == 400


async def test_faults_hit_the_data_endpoint_too(
    http: aiohttp.ClientSession, served: ServedSimulator, simulator: HubjectSimulator
) -> None:
    simulator.faults.queue.extend([FaultKind.SERVER_ERROR, FaultKind.REJECT])
    status, _ = await post(http, served, DATA_PATH, push_body("insert", [record("DE*ABC*E1")]))
    assert status == 500
    status, ack = await post(http, served, DATA_PATH, push_body("insert", [record("DE*ABC*E1")]))
    assert status == 200
    assert ack["Result"] is False
    assert simulator.evse_data.records(OPERATOR) == {}
    simulator.faults.calls_per_minute = 1
    first, _ = await post(http, served, DATA_PATH, push_body("insert", [record("DE*ABC*E1")]))
    second, _ = await post(http, served, DATA_PATH, push_body("update", [record("DE*ABC*E1")]))
    assert (first, second) == (200, 429)
    logged = [e for e in simulator.request_log if e.operation == "data-push"]
    assert [e.http_status for e in logged] == [500, 200, 200, 429]
    assert simulator.push_count() == 0  # status push counters are not data pushes


async def test_data_pushes_of_one_operator_are_counted_in_flight(
    http: aiohttp.ClientSession, served: ServedSimulator, simulator: HubjectSimulator
) -> None:
    simulator.faults.latency = 0.05
    bodies = [push_body("fullLoad", [record(f"DE*ABC*E{n}")]) for n in range(3)]
    await asyncio.gather(*(post(http, served, DATA_PATH, body) for body in bodies))
    assert simulator.max_in_flight["DATA:DEABC"] == 3  # a client that pushes in parallel is visible


async def test_the_standalone_simulator_takes_require_evse_data() -> None:
    async with hubject_sim("--require-evse-data") as (url, _), aiohttp.ClientSession() as http:
        body = {
            "ActionType": "update",
            "OperatorEvseStatus": {
                "OperatorID": "DE*ABC",
                "EvseStatusRecord": [{"EvseID": "DE*ABC*E1", "EvseStatus": "Available"}],
            },
        }
        async with http.post(url + STATUS_PATH, json=body) as response:
            ack = await response.json()
        assert ack["StatusCode"]["Code"] == "603"
        async with http.post(url + DATA_PATH, json=push_body("insert", [record("DE*ABC*E1")])) as response:
            assert (await response.json())["Result"] is True
        async with http.post(url + STATUS_PATH, json=body) as response:
            assert (await response.json())["Result"] is True


def test_a_din_evse_id_without_data_is_named_without_stars_too() -> None:
    state = EvseDataState()
    outcome = missing_data(state, [EvseID("+49*810*000*438")])
    assert outcome is not None
    assert outcome.additional_info == "EVSE data records missing for EvseIDs: +49810000438"
    assert outcome.unknown_evse_ids == (EvseID("+49*810*000*438"),)
    state.apply_push(OperatorID("+49*810"), "DIN", ActionType.INSERT, [record("+49*810*000*438")])
    assert missing_data(state, [EvseID("+49*810*000*438")]) is None


# --- the pure state, property-tested against the plain model of EMP 02's words ---------------------

ids = st.integers(0, 5).map(lambda n: f"DE*ABC*E{n}")
batches = st.lists(ids, max_size=4, unique=True)
pushes = st.lists(st.tuples(st.sampled_from(list(ActionType)), batches), max_size=12)


@given(pushes)
def test_state_applies_each_action_type_all_or_nothing(sequence: list[tuple[ActionType, list[str]]]) -> None:
    state = EvseDataState()
    model: set[str] = set()
    for action, batch in sequence:
        outcome = state.apply_push(OPERATOR, "ABC", action, [record(e) for e in batch])
        keys = {evse_key(e) for e in batch}
        if (action is ActionType.INSERT and keys & model) or (action is ActionType.UPDATE and keys - model):
            assert not outcome.accepted
            assert outcome.code == "009"
        else:
            assert outcome.accepted
            if action is ActionType.FULL_LOAD:
                model = keys
            elif action is ActionType.DELETE:
                model -= keys
            else:
                model |= keys
        assert {evse_key(e) for e in state.records(OPERATOR)} == model


# --- bad input: a clear answer, never a 500 ---------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
KEYS = st.sampled_from(
    ["ActionType", "OperatorEvseData", "OperatorID", "OperatorName", "EvseDataRecord", "EvseID"]
)


def _mutated(changes: list[tuple[str, Any]]) -> Any:
    """A valid push with some values replaced at the envelope, block or first-record level."""
    body: dict[str, Any] = push_body("insert", [record("DE*ABC*E1"), record("DE*ABC*E2")])
    for key, value in changes:
        data = body.get("OperatorEvseData")
        records = data.get("EvseDataRecord") if isinstance(data, dict) else None
        if key in body or not isinstance(data, dict):
            body[key] = value
        elif key in data or not (isinstance(records, list) and records and isinstance(records[0], dict)):
            data[key] = value
        else:
            records[0][key] = value
    return body


async def _answers(bodies: list[Any]) -> list[tuple[str, int, Any]]:
    simulator = HubjectSimulator(require_evse_data=True)
    answers = []
    async with serve_simulator(simulator) as served, aiohttp.ClientSession() as http:
        for path in (DATA_PATH, PULL_PATH, "/evsepush/v23/operators/not-an-id/data-records"):
            for body in bodies:
                async with http.post(served.url + path, json=body) as response:
                    answers.append((path, response.status, await response.json()))
    return answers


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(KEYS, JSON), max_size=3).map(_mutated) | JSON, min_size=1, max_size=4))
def test_any_body_gets_an_acknowledgement_or_a_page_never_a_500(bodies: list[Any]) -> None:
    for path, status, answer in asyncio.run(_answers(bodies)):
        assert status in (200, 400), (path, status, answer)
        if "content" not in answer:
            assert validation_errors(Schema.ACKNOWLEDGEMENT, answer) == [], answer
