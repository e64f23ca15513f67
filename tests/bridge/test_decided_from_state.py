"""Decided from state, end to end in one process: any interleaving of Location PUTs and EVSE PATCHes —
stale, repeated, future-dated, moved between Locations, renamed, REMOVED, from the operator's own party and
from a foreign one — through the real intake and SQLite store, then the lanes drain to the Hubject
simulator. Hubject must then hold, for every EvseID, the mapping of the newest accepted OCPI state of the
EVSE that owns it, computed here independently from what GET answers (the Location documents)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.ocpi.errors import OcpiError
from bridge.ocpi.locations import ObjectPath
from bridge.ocpi.versions import OcpiVersion
from oicp import ClientSettings, EvseID, EvseStatus, OperatorID, RestClient, RetryPolicy
from oicp.simulator import HubjectSimulator, serve_simulator
from tests.bridge.conftest import make_dispatcher, make_intake
from tests.engines import build_engine

V = OcpiVersion.V2_2_1
ABC = OperatorID("DE*ABC")
OWN, FOREIGN = ("DE", "ABC"), ("NL", "XYZ")  # only DE/ABC may publish DE*ABC's EVSEs (the default)
T0 = datetime(2025, 3, 1, tzinfo=UTC)
MAPPED = {
    "AVAILABLE": EvseStatus.AVAILABLE,
    "CHARGING": EvseStatus.OCCUPIED,
    "OUTOFORDER": EvseStatus.OUT_OF_SERVICE,
}
STATUSES = [*MAPPED, "REMOVED"]
EVSE_IDS = ["DE*ABC*E1", "DE*ABC*E2", "DE*ABC*E3"]


def stamp(second: int) -> str:
    return (T0 + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")


def connector(second: int) -> dict[str, Any]:
    return {
        "id": "1", "standard": "IEC_62196_T2", "format": "SOCKET", "power_type": "AC_3_PHASE",
        "max_voltage": 230, "max_amperage": 16, "last_updated": stamp(second),
    }  # fmt: skip


def location(party: tuple[str, str], location_id: str, evses: list[tuple[str, str, str]], second: int) -> Any:
    return {
        "country_code": party[0], "party_id": party[1], "id": location_id, "publish": True,
        "address": "Street 1", "city": "City", "country": "DEU",
        "coordinates": {"latitude": "50.00000", "longitude": "8.00000"}, "time_zone": "Europe/Berlin",
        "evses": [
            {"uid": uid, "evse_id": evse_id, "status": status, "connectors": [connector(second)],
             "last_updated": stamp(second)}
            for uid, evse_id, status in evses
        ],
        "last_updated": stamp(second),
    }  # fmt: skip


evse = st.tuples(st.sampled_from(["U1", "U2", "U3"]), st.sampled_from(EVSE_IDS), st.sampled_from(STATUSES))
operation = st.one_of(
    st.tuples(
        st.just("put"), st.sampled_from([OWN, OWN, FOREIGN]), st.sampled_from(["L1", "L2"]),
        st.lists(evse, max_size=3, unique_by=lambda e: e[0]), st.integers(-5, 40),
    ),
    st.tuples(
        st.just("patch"), st.sampled_from([OWN, OWN, FOREIGN]), st.sampled_from(["L1", "L2"]),
        st.tuples(st.sampled_from(["U1", "U2", "U3"]), st.sampled_from(STATUSES)), st.integers(-5, 40),
    ),
)  # fmt: skip
FUTURE = 10**9  # seconds after T0: decades ahead of any clock, refused


def expected_from_documents(documents: list[tuple[tuple[str, str], str, Any]]) -> dict[EvseID, EvseStatus]:
    """The oracle: per EvseID, the owner among the operator's own party's EVSEs in the documents — in
    service first, then the newest last_updated, then the later source — mapped; withdrawn if none."""
    candidates: dict[str, list[tuple[bool, str, str, str]]] = {}
    for party, location_id, document in documents:
        if party != OWN or document is None:
            continue
        for item in document.get("evses") or []:
            source = "/".join((*party, location_id, item["uid"]))
            ranked = (item["status"] != "REMOVED", item["last_updated"], source, item["status"])
            candidates.setdefault(item["evse_id"], []).append(ranked)
    expected: dict[EvseID, EvseStatus] = {}
    for evse_id, holders in candidates.items():
        live, _, _, status = max(holders)
        if live:
            expected[EvseID(evse_id)] = MAPPED[status]
    return expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operation, min_size=1, max_size=14))
async def test_hubject_holds_the_mapping_of_each_evse_ids_owner(
    emptied_engine_url: Callable[[], str], operations: list[tuple[Any, ...]]
) -> None:
    db = build_engine(emptied_engine_url())
    await db.open()
    try:
        intake = make_intake(db)
        async with serve_simulator(HubjectSimulator()) as hubject:
            policy = RetryPolicy(max_attempts=1, initial_wait=0.01, max_wait=0.01)
            async with RestClient(ClientSettings(url=hubject.url), retry_policy=policy) as rest:
                dispatcher = make_dispatcher(intake, rest)
                for n, (kind, party, location_id, what, second) in enumerate(operations):
                    if n % 5 == 4:
                        second = FUTURE  # now and then one dated far ahead: refused, changes nothing
                    country_code, party_id = party
                    path = ObjectPath(country_code, party_id, location_id)
                    try:
                        if kind == "put":
                            await intake.put(V, path, location(party, location_id, what, second))
                        else:
                            uid, status = what
                            body = {"status": status, "last_updated": stamp(second)}
                            evse_path = ObjectPath(country_code, party_id, location_id, uid)
                            await intake.patch(V, evse_path, body)
                    except OcpiError:
                        pass  # refused (future, duplicate EvseID, unknown Location): nothing was stored
                    if n % 3 == 2:
                        await dispatcher.run_until_idle()
                await dispatcher.run_until_idle()
            documents = [
                (party, location_id, await intake.ocpi.get_location(*party, location_id))
                for party in (OWN, FOREIGN)
                for location_id in ("L1", "L2")
            ]
            assert hubject.simulator.statuses(ABC) == expected_from_documents(documents)
    finally:
        await db.close()


async def test_the_oracle_and_the_bridge_agree_on_a_move_and_a_rename(
    new_engine_url: Callable[[], str],
) -> None:
    """A fixed interleaving (so the property above is known not to be vacuous): E1 moves from L1 to L2,
    the old uid is then withdrawn; L1's U2 is renamed from E2 to E3; a foreign party claims E2."""
    db = build_engine(new_engine_url())
    await db.open()
    try:
        intake = make_intake(db)
        async with serve_simulator(HubjectSimulator()) as hubject:
            async with RestClient(ClientSettings(url=hubject.url)) as rest:
                dispatcher = make_dispatcher(intake, rest)
                steps = [
                    (OWN, "L1", [("U1", "DE*ABC*E1", "AVAILABLE"), ("U2", "DE*ABC*E2", "CHARGING")], 1),
                    (OWN, "L2", [("U9", "DE*ABC*E1", "OUTOFORDER")], 2),
                    (OWN, "L1", [("U1", "DE*ABC*E1", "REMOVED"), ("U2", "DE*ABC*E3", "CHARGING")], 3),
                    (FOREIGN, "L7", [("U1", "DE*ABC*E2", "AVAILABLE")], 4),
                ]
                for party, location_id, evses, second in steps:
                    await intake.put(
                        V, ObjectPath(*party, location_id), location(party, location_id, evses, second)
                    )
                    await dispatcher.run_until_idle()
            expected = {
                EvseID("DE*ABC*E1"): EvseStatus.OUT_OF_SERVICE,  # moved: L2's EVSE holds it
                EvseID("DE*ABC*E3"): EvseStatus.OCCUPIED,  # renamed from E2, which is withdrawn
            }
            documents = [
                (party, location_id, await intake.ocpi.get_location(*party, location_id))
                for party, location_id in ((OWN, "L1"), (OWN, "L2"), (FOREIGN, "L7"))
            ]
            assert expected_from_documents(documents) == expected
            assert hubject.simulator.statuses(ABC) == expected
    finally:
        await db.close()
