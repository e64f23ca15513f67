"""The simulated CPO: its fleet model (pure rules, with hypothesis) and its Locations sender over HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.cli import build_parser
from bridge.observation import OcpiEvseStatus as S
from bridge.ocpi.cpo_sim import SimulatedCpo
from bridge.ocpi.cpo_sim.model import TRANSITIONS, CpoFleet, format_datetime, parse_datetime
from bridge.ocpi.v211 import models as v211
from bridge.ocpi.v221 import models as v221
from bridge.ocpi.versions import OcpiVersion

TOKEN = "sim-token"


class StepClock:
    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


# --- the fleet model --------------------------------------------------------------------------------


def test_evse_ids_follow_the_operator_prefix_and_location_numbering() -> None:
    fleet = CpoFleet(locations=2, evses_per_location=2, country_code="DE", party_id="OBD")
    assert list(fleet.statuses_by_evse_id()) == [
        "DE*OBD*E1001*1",
        "DE*OBD*E1001*2",
        "DE*OBD*E1002*1",
        "DE*OBD*E1002*2",
    ]
    other = CpoFleet(
        locations=1, evses_per_location=1, country_code="NL", party_id="TNM", operator_id="NL*XYZ"
    )
    assert list(other.statuses_by_evse_id()) == ["NL*XYZ*E1001*1"]


def test_an_unknown_country_is_refused() -> None:
    with pytest.raises(ValueError, match="not simulated"):
        CpoFleet(country_code="XX")


@given(st.integers(min_value=0, max_value=2**32))
@settings(max_examples=25)
def test_the_same_seed_repeats_the_same_run(seed: int) -> None:
    runs = []
    for _ in range(2):
        fleet = CpoFleet(seed=seed, locations=5, evses_per_location=3, clock=StepClock())
        steps = [[(c.evse_uid, c.status) for c in fleet.step(4)] for _ in range(5)]
        runs.append((fleet.current_statuses(), steps))
    assert runs[0] == runs[1]


@given(st.integers(min_value=0, max_value=2**32))
@settings(max_examples=25)
def test_changes_follow_the_transition_table_and_removed_is_final(seed: int) -> None:
    fleet = CpoFleet(seed=seed, locations=4, evses_per_location=2, clock=StepClock())
    removed: set[str] = set()
    for _ in range(40):
        for change in fleet.step(3):
            assert change.evse_uid not in removed
            assert change.status in {status for status, _ in TRANSITIONS[change.previous]}
            if change.status is S.REMOVED:
                removed.add(change.evse_uid)
    assert all(fleet.current_statuses()[uid] is S.REMOVED for uid in removed)


def test_every_change_gets_a_strictly_later_last_updated_even_on_a_frozen_clock() -> None:
    fleet = CpoFleet(seed=1, locations=3, clock=StepClock())
    stamps = [change.last_updated for change in fleet.step(20)]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)
    for location in fleet.locations():
        assert location.last_updated == max(e.last_updated for e in location.evses)


def test_long_runs_visit_the_whole_status_vocabulary() -> None:
    fleet = CpoFleet(seed=4, locations=50, evses_per_location=4, clock=StepClock())
    seen = set(fleet.current_statuses().values())
    for _ in range(200):
        seen |= {change.status for change in fleet.step(10)}
    assert seen == set(S)


@pytest.mark.parametrize(
    ("version", "model"), [(OcpiVersion.V2_1_1, v211.Location), (OcpiVersion.V2_2_1, v221.Location)]
)
def test_rendered_locations_are_valid_ocpi_for_their_version(version: OcpiVersion, model: Any) -> None:
    fleet = CpoFleet(seed=2, locations=8, evses_per_location=4)
    fleet.step(10)
    for location in fleet.locations():
        model.model_validate(fleet.location_json(location, version))


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)))
def test_datetimes_round_trip_to_the_millisecond(value: datetime) -> None:
    text = format_datetime(value)
    assert len(text) <= 25
    assert abs(parse_datetime(text) - value) < timedelta(milliseconds=1)


# --- the sender over HTTP ---------------------------------------------------------------------------


@pytest.fixture
async def served() -> AsyncIterator[tuple[SimulatedCpo, TestServer, aiohttp.ClientSession]]:
    sim = SimulatedCpo(
        seed=11, locations=45, evses_per_location=2, clock=StepClock(), tokens=[TOKEN], max_limit=20
    )
    server = TestServer(sim.build_sender_app())
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield sim, server, session
    await server.close()
    await sim.aclose()


def auth(token: str = TOKEN, version: OcpiVersion = OcpiVersion.V2_2_1) -> dict[str, str]:
    if version is OcpiVersion.V2_2_1:
        token = base64.b64encode(token.encode()).decode()
    return {"Authorization": f"Token {token}"}


async def get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any, Any]:
    async with session.get(url, **kwargs) as response:
        return response.status, await response.json(), response.headers


async def test_locations_pages_carry_total_limit_and_a_next_link_until_the_last(
    served: tuple[SimulatedCpo, TestServer, aiohttp.ClientSession],
) -> None:
    sim, server, session = served
    url: str | None = str(server.make_url("/ocpi/2.2.1/locations"))
    ids: list[str] = []
    while url is not None:
        status, body, headers = await get(session, url, headers=auth())
        assert status == 200
        assert body["status_code"] == 1000
        assert headers["X-Total-Count"] == "45"
        assert headers["X-Limit"] == "20"
        ids += [location["id"] for location in body["data"]]
        link = headers.get("Link")
        url = link.split(">")[0].lstrip("<") if link else None
    assert sorted(ids) == sorted(location.id for location in sim.fleet.locations())
    assert len(ids) == 45


async def test_date_from_is_inclusive_and_date_to_exclusive(
    served: tuple[SimulatedCpo, TestServer, aiohttp.ClientSession],
) -> None:
    sim, server, session = served
    clock = sim.sender.clock
    assert isinstance(clock, StepClock)
    clock.now += timedelta(hours=1)
    changes = sim.step(3)
    first, last = changes[0].last_updated, changes[-1].last_updated
    url = str(server.make_url("/ocpi/2.2.1/locations"))
    params = {"date_from": format_datetime(first), "date_to": format_datetime(last)}
    _, body, _headers = await get(session, url, headers=auth(), params=params)
    got = {location["id"] for location in body["data"]}
    assert got == {c.location_id for c in changes if c.last_updated < last} - {changes[-1].location_id}
    _, body, _ = await get(session, url, headers=auth(), params={"date_from": format_datetime(first)})
    assert {location["id"] for location in body["data"]} == {c.location_id for c in changes}


async def test_one_location_and_one_evse_can_be_fetched_and_unknown_ones_are_404(
    served: tuple[SimulatedCpo, TestServer, aiohttp.ClientSession],
) -> None:
    _, server, session = served
    status, body, _ = await get(
        session, str(server.make_url("/ocpi/2.2.1/locations/LOC1003")), headers=auth()
    )
    assert (status, body["data"]["id"]) == (200, "LOC1003")
    status, body, _ = await get(
        session, str(server.make_url("/ocpi/2.2.1/locations/LOC1003/LOC1003-2")), headers=auth()
    )
    assert (status, body["data"]["evse_id"]) == (200, "DE*OBD*E1003*2")
    status, body, _ = await get(session, str(server.make_url("/ocpi/2.2.1/locations/NOPE")), headers=auth())
    assert (status, body["status_code"]) == (404, 2003)


async def test_2_2_1_endpoints_require_the_base64_token(
    served: tuple[SimulatedCpo, TestServer, aiohttp.ClientSession],
) -> None:
    _, server, session = served
    url = str(server.make_url("/ocpi/2.2.1/locations"))
    status, _, _ = await get(session, url, headers=auth(version=OcpiVersion.V2_1_1))  # plain token
    assert status == 401
    status, _, _ = await get(session, url, headers=auth("wrong"))
    assert status == 401
    status, body, _ = await get(
        session, str(server.make_url("/ocpi/versions")), headers=auth(version=OcpiVersion.V2_1_1)
    )
    assert status == 200  # the version-independent endpoint takes either form
    assert [v["version"] for v in body["data"]] == ["2.2.1"]


async def test_an_injected_page_failure_answers_500_once(
    served: tuple[SimulatedCpo, TestServer, aiohttp.ClientSession],
) -> None:
    sim, server, session = served
    sim.faults.fail_page_once(20)
    url = str(server.make_url("/ocpi/2.2.1/locations"))
    assert (await get(session, url, headers=auth(), params={"offset": "0"}))[0] == 200
    async with session.get(url, headers=auth(), params={"offset": "20"}) as response:
        assert response.status == 500
    assert (await get(session, url, headers=auth(), params={"offset": "20"}))[0] == 200


async def test_version_details_list_the_locations_sender(
    served: tuple[SimulatedCpo, TestServer, aiohttp.ClientSession],
) -> None:
    _, server, session = served
    _, body, _ = await get(session, str(server.make_url("/ocpi/2.2.1")), headers=auth())
    endpoints = {(e["identifier"], e["role"]) for e in body["data"]["endpoints"]}
    assert endpoints == {("locations", "SENDER"), ("credentials", "SENDER")}


def test_ocpi_sim_is_a_registered_command() -> None:
    parser, modules = build_parser()
    args = parser.parse_args(["ocpi-sim", "serve", "--locations", "3", "--fail-page", "20", "--token", "t"])
    assert modules["ocpi-sim"].__name__ == "bridge.ocpi.cpo_sim.command"  # type: ignore[attr-defined]
    assert (args.mode, args.locations, args.fail_page, args.token) == ("serve", 3, [20], ["t"])
