"""The Hubject simulator: ActionType semantics (property-tested), Hubject-like answers to bad requests,
fault decisions, the control endpoints, and client-certificate enforcement — over real loopback HTTP."""

from __future__ import annotations

import json
import ssl
from collections import deque
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oicp.ids import EvseID, OperatorID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord
from oicp.simulator import FaultKind, Faults, HubjectSimulator, SimulatorState, serve_simulator
from oicp.simulator.faults import FaultDecider
from tests.conftest import TLSMaterial

OPERATOR = OperatorID("DE*ABC")
PUSH_URL_PATH = "/api/oicp/evsepush/v21/operators/DE*ABC/status-records"

evse_ids = st.integers(min_value=0, max_value=9).map(lambda n: EvseID(f"DE*ABC*E{n}"))
statuses = st.sampled_from(list(EvseStatus))
record_maps = st.dictionaries(evse_ids, statuses, max_size=6)
pushes = st.lists(st.tuples(st.sampled_from(list(ActionType)), record_maps), max_size=12)


def as_records(statuses_by_id: dict[EvseID, EvseStatus]) -> list[EvseStatusRecord]:
    return [EvseStatusRecord(evse_id=e, evse_status=s) for e, s in statuses_by_id.items()]


@given(pushes)
def test_state_follows_the_plain_meaning_of_each_action_type(
    sequence: list[tuple[ActionType, dict[EvseID, EvseStatus]]],
) -> None:
    state = SimulatorState()
    model: dict[EvseID, EvseStatus] = {}
    for action, statuses_by_id in sequence:
        outcome = state.apply_push(OPERATOR, action, as_records(statuses_by_id))
        assert outcome.accepted
        if action is ActionType.FULL_LOAD:
            model = dict(statuses_by_id)
        elif action is ActionType.DELETE:
            model = {e: s for e, s in model.items() if e not in statuses_by_id}
        else:
            model.update(statuses_by_id)
        assert state.statuses(OPERATOR) == model


@given(record_maps, record_maps)
def test_operators_do_not_see_each_others_records(
    first: dict[EvseID, EvseStatus], second: dict[EvseID, EvseStatus]
) -> None:
    state = SimulatorState()
    other = OperatorID("DE*DEF")
    other_records = {EvseID(str(e).replace("ABC", "DEF")): s for e, s in second.items()}
    state.apply_push(OPERATOR, ActionType.FULL_LOAD, as_records(first))
    state.apply_push(other, ActionType.FULL_LOAD, as_records(other_records))
    state.apply_push(OPERATOR, ActionType.FULL_LOAD, [])
    assert state.statuses(OPERATOR) == {}
    assert state.statuses("DEDEF") == other_records


def test_unknown_evse_ids_reject_the_whole_push_with_603() -> None:
    state = SimulatorState(known_evse_ids=frozenset({EvseID("DE*ABC*E1")}))
    outcome = state.apply_push(
        OPERATOR,
        ActionType.UPDATE,
        as_records({EvseID("DE*ABC*E1"): EvseStatus.OCCUPIED, EvseID("DE*ABC*E7"): EvseStatus.AVAILABLE}),
    )
    assert not outcome.accepted
    assert outcome.code == "603"
    assert outcome.unknown_evse_ids == (EvseID("DE*ABC*E7"),)
    assert state.statuses(OPERATOR) == {}


# --- fault decisions (sans-I/O) --------------------------------------------------------------------------


def test_queued_faults_come_first_in_order_then_none() -> None:
    faults = Faults(queue=deque([FaultKind.DROP, FaultKind.HANG]))
    decider = FaultDecider(faults)
    assert [decider.decide("PushEVSEStatus", 0.0) for _ in range(3)] == [FaultKind.DROP, FaultKind.HANG, None]


def test_fault_rates_are_reproducible_from_the_seed_and_roughly_right() -> None:
    def draw(seed: int) -> list[FaultKind | None]:
        decider = FaultDecider(Faults(seed=seed, error_5xx_rate=0.3))
        return [decider.decide("PushEVSEStatus", 0.0) for _ in range(1000)]

    first = draw(7)
    assert first == draw(7)
    assert first != draw(8)
    assert 230 <= first.count(FaultKind.SERVER_ERROR) <= 370


def test_calls_per_minute_is_a_sliding_window_per_operation() -> None:
    decider = FaultDecider(Faults(calls_per_minute=3))
    assert [decider.decide("PushEVSEStatus", t) for t in (0.0, 1.0, 2.0)] == [None, None, None]
    assert decider.decide("PushEVSEStatus", 30.0) is FaultKind.RATE_LIMIT
    assert decider.decide("PullEVSEStatus", 30.0) is None
    assert decider.seconds_until_window_frees("PushEVSEStatus", 30.0) == pytest.approx(30.0)
    assert decider.decide("PushEVSEStatus", 60.5) is None


# --- answers over HTTP ------------------------------------------------------------------------------------


def valid_push(action: str = "update") -> dict[str, Any]:
    return {
        "ActionType": action,
        "OperatorEvseStatus": {
            "OperatorID": "DE*ABC",
            "EvseStatusRecord": [{"EvseID": "DE*ABC*E1", "EvseStatus": "Available"}],
        },
    }


async def post(url: str, body: bytes | dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=headers) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        ({**valid_push(), "ActionType": "replace"}, "ActionType"),
        ({"ActionType": "update"}, "OperatorEvseStatus"),
        (
            {
                "ActionType": "update",
                "OperatorEvseStatus": {
                    "OperatorID": "DE*ABC",
                    "EvseStatusRecord": [{"EvseID": "not-an-evse", "EvseStatus": "Available"}],
                },
            },
            "EvseID",
        ),
        (
            {
                "ActionType": "update",
                "OperatorEvseStatus": {
                    "OperatorID": "DE*ABC",
                    "EvseStatusRecord": [{"EvseID": "DE*ABC*E1", "EvseStatus": "Broken"}],
                },
            },
            "Broken",
        ),
    ],
)
async def test_invalid_push_is_answered_400_with_data_error_and_changes_nothing(
    body: bytes | dict[str, Any], needle: str
) -> None:
    simulator = HubjectSimulator()
    async with serve_simulator(simulator) as served:
        status, headers, answer = await post(served.base_url + PUSH_URL_PATH, body)
    assert status == 400
    assert answer["Result"] is False
    assert answer["StatusCode"]["Code"] == "022"
    assert needle in answer["StatusCode"]["AdditionalInfo"]
    assert "Process-ID" in headers
    assert simulator.all_statuses() == {}


async def test_operator_in_body_must_match_the_path() -> None:
    simulator = HubjectSimulator()
    async with serve_simulator(simulator) as served:
        url = served.base_url + "/api/oicp/evsepush/v21/operators/DE*XYZ/status-records"
        status, _, answer = await post(url, valid_push())
    assert (status, answer["Result"], answer["StatusCode"]["Code"]) == (200, False, "022")
    assert simulator.all_statuses() == {}


async def test_invalid_operator_in_path_is_a_data_error() -> None:
    simulator = HubjectSimulator()
    async with serve_simulator(simulator) as served:
        status, _, answer = await post(
            served.base_url + "/api/oicp/evsepush/v21/operators/X/status-records", valid_push()
        )
    assert status == 400
    assert answer["StatusCode"]["Code"] == "022"


async def test_invalid_pull_is_a_data_error() -> None:
    simulator = HubjectSimulator()
    async with serve_simulator(simulator) as served:
        url = served.base_url + "/api/oicp/evsepull/v21/providers/DE-XYZ/status-records"
        status, _, answer = await post(url, {"EvseID": ["DE*ABC*E1"]})
    assert status == 400
    assert answer["StatusCode"]["Code"] == "022"
    assert "ProviderID" in answer["StatusCode"]["AdditionalInfo"]


async def test_control_endpoints_switch_faults_show_state_and_reset() -> None:
    simulator = HubjectSimulator()
    async with serve_simulator(simulator) as served, aiohttp.ClientSession() as session:
        async with session.put(
            served.base_url + "/_simulator/faults", json={"queue": ["429"], "retry_after": 3}
        ) as r:
            assert r.status == 200
            assert (await r.json())["queue"] == ["429"]
        async with session.put(served.base_url + "/_simulator/faults", json={"nonsense": 1}) as r:
            assert r.status == 400
        status, headers, _ = await post(served.base_url + PUSH_URL_PATH, valid_push())
        assert status == 429
        assert headers["Retry-After"] == "3"
        status, _, answer = await post(served.base_url + PUSH_URL_PATH, valid_push())
        assert status == 200
        assert answer["Result"] is True
        async with session.get(served.base_url + "/_simulator/state") as r:
            state = await r.json()
        assert state["EvseStatuses"]["OperatorEvseStatus"][0]["EvseStatusRecord"] == [
            {"EvseID": "DE*ABC*E1", "EvseStatus": "Available"}
        ]
        async with session.post(served.base_url + "/_simulator/reset") as r:
            assert r.status == 200
    assert simulator.all_statuses() == {}
    assert simulator.request_log == []


async def test_request_log_records_what_was_asked_and_answered() -> None:
    simulator = HubjectSimulator()
    async with serve_simulator(simulator) as served:
        await post(served.base_url + PUSH_URL_PATH, valid_push("fullLoad"))
    (entry,) = simulator.request_log
    assert (entry.operation, entry.operator_id, entry.action_type) == ("push", "DE*ABC", "fullLoad")
    assert (entry.http_status, entry.result_code) == (200, "000")
    assert entry.body == valid_push("fullLoad")


async def test_mutual_tls_refuses_a_handshake_without_client_certificate(tls: TLSMaterial) -> None:
    simulator = HubjectSimulator()
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    async with serve_simulator(simulator, ssl_context=tls.server_context(require_client_cert=True)) as served:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.post(served.base_url + PUSH_URL_PATH, json=valid_push()) as response:
                    await response.read()
        context.load_cert_chain(tls.client_cert, tls.client_key)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
            session.post(served.base_url + PUSH_URL_PATH, json=valid_push()) as response,
        ):
            assert response.status == 200
    assert simulator.push_count() == 1
    assert "trustme" in (simulator.request_log[0].client_cert_subject or "")
