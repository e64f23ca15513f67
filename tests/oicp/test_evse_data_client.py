"""``RestClient.push_evse_data`` (and its streamed variant) against the simulator over loopback TLS: the
request reaches the data endpoint and changes what the simulated Hubject holds, refusals raise the status
push's error types, and the push lock and throttle are per operation (OICP 2.3 CPO 01: a data push and a
status push may overlap, two data pushes never do; PushEVSEData has its own 375 calls/min allowance)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from oicp import ActionType, ClientSettings, ConfigurationError, RejectedError, RestClient, RetryPolicy
from oicp._http import PUSH_EVSE_DATA, PUSH_EVSE_STATUS
from oicp._rest import data_push_request
from oicp.evse_data import EvseDataRecord, PushEvseDataRequest
from oicp.simulator import FaultKind, HubjectSimulator
from tests.oicp.conftest import E1, E2, OPERATOR, A, records
from tests.oicp.test_simulator_evse_data import record


def data(evse_id: str, city: str = "Berlin") -> EvseDataRecord:
    return EvseDataRecord.model_validate(record(evse_id, city=city))


async def test_insert_update_delete_change_what_hubject_holds(
    simulator: HubjectSimulator, settings: ClientSettings
) -> None:
    async with RestClient(settings) as client:
        result = await client.push_evse_data(
            OPERATOR, ActionType.INSERT, [data("DE*ABC*E1"), data("DE*ABC*E2")], operator_name="ABC"
        )
        assert result.acknowledgement.result
        assert set(simulator.evse_data.records(OPERATOR)) == {E1, E2}
        await client.push_evse_data(
            OPERATOR, ActionType.UPDATE, [data("DE*ABC*E1", city="Potsdam")], operator_name="ABC"
        )
        assert simulator.evse_data.records(OPERATOR)[E1]["Address"]["City"] == "Potsdam"
        await client.push_evse_data(OPERATOR, ActionType.DELETE, [data("DE*ABC*E2")], operator_name="ABC")
        assert set(simulator.evse_data.records(OPERATOR)) == {E1}
    logged = [e for e in simulator.request_log if e.operation == "data-push"]
    assert [e.action_type for e in logged] == ["insert", "update", "delete"]


async def test_an_insert_of_a_held_record_raises_the_refusal_with_hubjects_code(
    settings: ClientSettings,
) -> None:
    async with RestClient(settings) as client:
        await client.push_evse_data(OPERATOR, ActionType.INSERT, [data("DE*ABC*E1")], operator_name="ABC")
        with pytest.raises(RejectedError) as refused:
            await client.push_evse_data(OPERATOR, ActionType.INSERT, [data("DE*ABC*E1")], operator_name="ABC")
    assert refused.value.code == "009"
    assert "DE*ABC*E1" in (refused.value.additional_info or "").replace("DEABCE1", "DE*ABC*E1")


async def test_the_operator_name_is_required(settings: ClientSettings) -> None:
    async with RestClient(settings) as client:
        with pytest.raises(ConfigurationError, match="OperatorName"):
            await client.push_evse_data(OPERATOR, ActionType.INSERT, [data("DE*ABC*E1")])


async def test_a_streamed_full_load_replaces_the_set(
    simulator: HubjectSimulator, settings: ClientSettings
) -> None:
    calls = 0

    def pages() -> AsyncIterator[Sequence[str]]:
        async def gen() -> AsyncIterator[Sequence[str]]:
            nonlocal calls
            calls += 1
            for start in range(0, 30, 10):
                yield [data(f"DE*ABC*E{n}").canonical_json() for n in range(start, start + 10)]
            yield []

        return gen()

    async with RestClient(settings) as client:
        await client.push_evse_data(OPERATOR, ActionType.INSERT, [data("DE*ABC*E999")], operator_name="ABC")
        await client.push_evse_data_stream(OPERATOR, ActionType.FULL_LOAD, pages, operator_name="ABC")
    held = simulator.evse_data.records(OPERATOR)
    assert len(held) == 30
    assert "DE*ABC*E999" not in held
    assert calls == 1


async def test_data_and_status_pushes_overlap_but_two_data_pushes_never_do(
    simulator: HubjectSimulator, settings: ClientSettings
) -> None:
    simulator.faults.latency = 0.2
    async with RestClient(settings) as client:
        await asyncio.gather(
            client.push_evse_data(OPERATOR, ActionType.INSERT, [data("DE*ABC*E1")], operator_name="ABC"),
            client.push_evse_data(OPERATOR, ActionType.INSERT, [data("DE*ABC*E2")], operator_name="ABC"),
            client.push_evse_status(OPERATOR, ActionType.UPDATE, records({E1: A})),
        )
    assert simulator.max_in_flight["DATA:DEABC"] == 1  # data pushes one after the other
    assert simulator.max_in_flight_overall == 2  # a status push ran while a data push was out
    assert set(simulator.evse_data.records(OPERATOR)) == {E1, E2}


def test_each_operation_has_its_own_throttle_at_the_acceptable_use_policy_figure(
    settings: ClientSettings,
) -> None:
    client = RestClient(settings)
    session = client._http
    assert session.throttle_of(PUSH_EVSE_STATUS).calls_per_minute == 2000
    assert session.throttle_of(PUSH_EVSE_DATA).calls_per_minute == 375  # Hubject AUP, PushEVSEData
    assert session.throttle_of(PUSH_EVSE_STATUS) is client.throttle


async def test_a_data_push_retries_a_server_error_like_the_status_push(
    simulator: HubjectSimulator, settings: ClientSettings, fast_retries: RetryPolicy
) -> None:
    simulator.faults.queue.extend([FaultKind.SERVER_ERROR])
    async with RestClient(settings, retry_policy=fast_retries) as client:
        result = await client.push_evse_data(
            OPERATOR, ActionType.INSERT, [data("DE*ABC*E1")], operator_name="ABC"
        )
    assert result.attempts == 2
    assert set(simulator.evse_data.records(OPERATOR)) == {E1}


def test_the_envelope_is_what_the_wire_model_writes() -> None:
    records_ = [data("DE*ABC*E1"), data("DE*ABC*E2")]
    built = data_push_request(OPERATOR, "ABC", ActionType.UPDATE, records_)
    assert built == PushEvseDataRequest.of(OPERATOR, "ABC", ActionType.UPDATE, records_).to_wire()
