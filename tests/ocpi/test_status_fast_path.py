"""The EVSE status PATCH fast path (row updates instead of load-merge-validate-rewrite) leaves exactly
what the general path leaves: the same Location as read back, EVSE rows, answers and observations, for
any sequence of status PATCHes, stale or not, repeated or not, mixed with general PATCHes and PUTs that
rewrite the document, on OCPI 2.1.1 and 2.2.1."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.store import Document, ObjectPath, OcpiStore, WriteResult
from bridge.ocpi.versions import OcpiVersion
from bridge.store.engine import Engine
from bridge.store.port import Tx
from tests.engines import build_engine, table_names
from tests.ocpi.conftest import RecordingLocations

T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
STATUSES = ["AVAILABLE", "CHARGING", "OUTOFORDER", "REMOVED", "UNKNOWN"]


class CountingStore(OcpiStore):
    """The store as shipped, counting the PATCHes its fast path took (so the comparison is not vacuous)."""

    fast = 0

    def _patch_evse_status(self, *args: Any, **kwargs: Any) -> WriteResult | None:
        result = super()._patch_evse_status(*args, **kwargs)
        CountingStore.fast += result is not None
        return result


class GeneralPathStore(OcpiStore):
    """The store with its fast path switched off: the reference the fast path must equal."""

    def _patch_evse_status(self, *args: Any, **kwargs: Any) -> WriteResult | None:
        return None


async def state(db: Engine, store: RecordingLocations) -> tuple[list[Any], list[Any], list[Any]]:
    """What the store holds as its readers see it (the fast path's own columns are how, not what)."""
    ids = await db.read(lambda conn: [r[0] for r in conn.execute("SELECT location_id FROM ocpi_location")])
    documents = [(location_id, await store.get_location("DE", "OBD", location_id)) for location_id in ids]

    def read(conn: Tx) -> tuple[list[Any], list[Any], list[Any]]:
        stamps = dict(conn.execute("SELECT location_id, last_updated_us FROM ocpi_location").fetchall())
        locations = [(location_id, document, stamps[location_id]) for location_id, document in documents]
        evses = [
            tuple(row)
            for row in conn.execute(
                "SELECT country_code, party_id, location_id, evse_uid, evse_id, status, publish, "
                "last_updated_us FROM ocpi_evse ORDER BY 1, 2, 3, 4"
            )
        ]
        has = "test_observation" in table_names(conn, db)
        seen = (
            [tuple(row)[1:] for row in conn.execute("SELECT * FROM test_observation ORDER BY n")]
            if has
            else []
        )
        return locations, evses, seen

    return await db.read(read)


# Most steps are status PATCHes (the fast path); some rewrite the whole document, which must fold in what
# the fast path wrote: an EVSE PATCH with another field too, or a PUT of the Location.
STEP_KINDS = ["status", "status", "status", "general", "put"]
steps = st.lists(
    st.tuples(
        st.sampled_from(STEP_KINDS),
        st.integers(0, 2),  # which EVSE of the first Location
        st.sampled_from(STATUSES),
        st.integers(-3, 20),  # seconds after T0 (negative: older than the PUT: stale)
        st.booleans(),  # whether last_updated is sent (2.1.1 may leave it out; a PUT always sends it)
        st.booleans(),  # whether the body repeats the uid
        st.sampled_from(["", ".5", ".250001"]),  # fractional seconds (stored as sent, compared exactly)
    ),
    min_size=1,
    max_size=12,
)


def stamp(second: int, fraction: str = "") -> str:
    return (T0 + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([OcpiVersion.V2_1_1, OcpiVersion.V2_2_1]), steps)
async def test_fast_path_equals_the_general_path(
    emptied_engine_url: Callable[[], str],
    version: OcpiVersion,
    sequence: list[tuple[str, int, str, int, bool, bool, str]],
) -> None:
    fleet = CpoFleet(seed=4, locations=1, evses_per_location=3, party_id="OBD", clock=lambda: T0)
    (location,) = list(fleet.locations())
    document: Document = fleet.location_json(location, version)
    document["last_updated"] = stamp(0)
    for evse in document["evses"]:
        evse["last_updated"] = stamp(0)
    results: list[list[Any]] = []
    states = []
    CountingStore.fast = 0
    for store_type in (CountingStore, GeneralPathStore):
        db = build_engine(emptied_engine_url())
        await db.open()
        try:
            ticks = iter(T0 + timedelta(seconds=30 + n, microseconds=123_456) for n in range(100))
            store = RecordingLocations(
                db,
                ocpi=store_type(db, clock=lambda ticks=ticks: next(ticks)),  # type: ignore[misc]
            )
            await store.put(version, ObjectPath("DE", "OBD", location.id), document)
            answers = []
            for kind, index, status, second, send_time, send_uid, fraction in sequence:
                uid = document["evses"][index]["uid"]
                if kind == "put":
                    replaced = json.loads(json.dumps(document))
                    replaced["last_updated"] = stamp(second, fraction)
                    replaced["evses"][index].update(status=status, last_updated=stamp(second, fraction))
                    result = await store.put(version, ObjectPath("DE", "OBD", location.id), replaced)
                else:
                    body: dict[str, Any] = {"status": status}
                    if send_time or version is OcpiVersion.V2_2_1:
                        body["last_updated"] = stamp(second, fraction)
                    if send_uid:
                        body["uid"] = uid
                    if kind == "general":
                        body["floor_level"] = str(second % 10)
                    result = await store.patch(version, ObjectPath("DE", "OBD", location.id, uid), body)
                answers.append(
                    (
                        result.outcome,
                        [(t.state.evse_uid, t.state.status, t.state.last_updated) for t in result.touched],
                    )
                )
            results.append(answers)
            states.append(await state(db, store))
        finally:
            await db.close()
    # every status-only PATCH takes the fast path (so the comparison is not vacuous), and only those
    assert CountingStore.fast == sum(kind == "status" for kind, *_ in sequence)
    assert results[0] == results[1]
    assert states[0] == states[1]
