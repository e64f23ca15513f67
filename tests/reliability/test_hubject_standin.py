"""The Hubject stand-in of the core regression tests, checked with the library's own OICP REST client: it
answers what the client parses, keeps Hubject's state with the ActionType semantics of
``oicp/simulator/state.py``, and misbehaves exactly as scripted."""

from __future__ import annotations

import asyncio

import pytest

from oicp.client import ClientSettings
from oicp.errors import HTTPStatusError, RateLimitedError, RejectedError, RequestTimeoutError
from oicp.ids import EvseID, OperatorID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord
from oicp.rest import RestClient
from tests.reliability.core_rig import wait_until
from tests.reliability.hubject_standin import Accept, Busy, Hang, HubjectStandIn, LandLate, Refuse

OPERATOR = OperatorID("DE*OBD")
A, B = "DE*OBD*E1*1", "DE*OBD*E1*2"


def records(**statuses: str) -> list[EvseStatusRecord]:
    return [EvseStatusRecord(evse_id=EvseID(k), evse_status=EvseStatus(v)) for k, v in statuses.items()]


def client(standin: HubjectStandIn, timeout: float = 2.0) -> RestClient:
    # one attempt per call: the stand-in's answer reaches the test as the client saw it
    return RestClient(ClientSettings(url=standin.url, timeout=timeout, connect_timeout=1.0, max_attempts=1))


async def test_action_types_change_the_state_as_hubject_does(standin: HubjectStandIn) -> None:
    standin.seed("DE*OBD", {"DE*OBD*E9*9": "Unknown"})
    async with client(standin) as rest:
        await rest.push_evse_status(OPERATOR, ActionType.UPDATE, records(**{A: "Available"}))
        assert standin.held("DEOBD") == {"DE*OBD*E9*9": "Unknown", A: "Available"}
        await rest.push_evse_status(
            OPERATOR, ActionType.FULL_LOAD, records(**{A: "Occupied", B: "Available"})
        )
        assert standin.held("DE*OBD") == {A: "Occupied", B: "Available"}
        await rest.push_evse_status(OPERATOR, ActionType.DELETE, records(**{A: "Unknown"}))
        assert standin.held("DE*OBD") == {B: "Available"}
    assert [(p.action, p.evse_ids, p.open_at_once) for p in standin.pushes("DE*OBD")] == [
        ("update", [A], 1),
        ("fullLoad", [A, B], 1),
        ("delete", [A], 1),
    ]
    assert standin.held_sizes("DE*OBD") == [2, 2, 1]


async def test_scripted_refusals_and_busy_answers_reach_the_client_as_hubject_errors(
    standin: HubjectStandIn,
) -> None:
    standin.script(Refuse("700", f"EVSE {B} out of service"), when=lambda p: p.has(B), times=1)
    standin.script(Busy(429, "600"), times=1)
    standin.script(Busy(503, "7"), times=1)
    async with client(standin) as rest:
        with pytest.raises(RejectedError) as refused:
            await rest.push_evse_status(
                OPERATOR, ActionType.UPDATE, records(**{A: "Available", B: "Occupied"})
            )
        assert (refused.value.code, refused.value.additional_info) == ("700", f"EVSE {B} out of service")
        with pytest.raises(RateLimitedError) as limited:
            await rest.push_evse_status(OPERATOR, ActionType.UPDATE, records(**{A: "Available"}))
        assert limited.value.retry_after == 600
        with pytest.raises(HTTPStatusError) as unavailable:
            await rest.push_evse_status(OPERATOR, ActionType.UPDATE, records(**{A: "Available"}))
        assert (unavailable.value.status, unavailable.value.retry_after) == (503, 7)
        await rest.push_evse_status(OPERATOR, ActionType.UPDATE, records(**{B: "Occupied"}))  # rules spent
    assert standin.held("DE*OBD") == {B: "Occupied"}
    assert [p.answer for p in standin.pushes()] == ["Refuse", "Busy", "Busy", "Accept"]


async def test_hang_and_late_landing_time_the_client_out_and_only_the_late_one_is_applied(
    standin: HubjectStandIn,
) -> None:
    standin.script(Hang(), times=1)
    standin.script(LandLate(apply_after=0.8), times=1)
    async with client(standin, timeout=0.3) as rest:
        with pytest.raises(RequestTimeoutError):
            await rest.push_evse_status(OPERATOR, ActionType.UPDATE, records(**{A: "Occupied"}))
        with pytest.raises(RequestTimeoutError):
            await rest.push_evse_status(OPERATOR, ActionType.FULL_LOAD, records(**{B: "Available"}))
        assert standin.held("DE*OBD") == {}
        late = standin.pushes(action="fullLoad")[0]
        await wait_until(lambda: standin.applied(late), within=3, what="the late fullLoad lands")
    assert standin.held("DE*OBD") == {B: "Available"}


async def test_open_requests_are_counted_per_operator(standin: HubjectStandIn) -> None:
    standin.script(Accept(delay=0.3))
    async with client(standin) as first, client(standin) as second:  # two clients: two push locks
        await asyncio.gather(
            first.push_evse_status(OPERATOR, ActionType.UPDATE, records(**{A: "Available"})),
            second.push_evse_status(OPERATOR, ActionType.UPDATE, records(**{B: "Available"})),
        )
    assert standin.max_open["DEOBD"] == 2
