"""The EVSE status PATCH fast path (SQLite JSON functions instead of load-merge-validate-rewrite) leaves
exactly what the general path leaves: the same Location document, EVSE rows, answers and observations,
for any sequence of status PATCHes, stale or not, repeated or not, on OCPI 2.1.1 and 2.2.1."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.store import Document, ObjectPath, OcpiStore, WriteResult
from bridge.ocpi.versions import OcpiVersion
from bridge.store.database import Database
from bridge.store.schema import MIGRATIONS
from tests.ocpi.conftest import TableSink

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


async def state(db: Database) -> tuple[list[Any], list[Any], list[Any]]:
    def read(conn: sqlite3.Connection) -> tuple[list[Any], list[Any], list[Any]]:
        locations = [
            (row[0], json.loads(row[1]), row[2])
            for row in conn.execute(
                "SELECT location_id, document, last_updated_us FROM ocpi_location ORDER BY 1"
            )
        ]
        evses = [tuple(row) for row in conn.execute("SELECT * FROM ocpi_evse ORDER BY 1, 2, 3, 4")]
        has = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'test_observation'").fetchone()
        seen = (
            [tuple(row)[1:] for row in conn.execute("SELECT * FROM test_observation ORDER BY n")]
            if has
            else []
        )
        return locations, evses, seen

    return await db.read(read)


patches = st.lists(
    st.tuples(
        st.integers(0, 2),  # which EVSE of the first Location
        st.sampled_from(STATUSES),
        st.integers(-3, 20),  # seconds after T0 (negative: older than the PUT: stale)
        st.booleans(),  # whether last_updated is sent (2.1.1 may leave it out)
        st.booleans(),  # whether the body repeats the uid
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([OcpiVersion.V2_1_1, OcpiVersion.V2_2_1]), patches)
async def test_fast_path_equals_the_general_path(
    tmp_path_factory: pytest.TempPathFactory,
    version: OcpiVersion,
    sequence: list[tuple[int, str, int, bool, bool]],
) -> None:
    folder: Path = tmp_path_factory.mktemp("fastpath")
    fleet = CpoFleet(seed=4, locations=1, evses_per_location=3, party_id="OBD", clock=lambda: T0)
    (location,) = list(fleet.locations())
    document: Document = fleet.location_json(location, version)
    document["last_updated"] = "2031-03-01T12:00:00Z"
    for evse in document["evses"]:
        evse["last_updated"] = "2031-03-01T12:00:00Z"
    results: list[list[Any]] = []
    states = []
    CountingStore.fast = 0
    for store_type in (CountingStore, GeneralPathStore):
        db = Database(folder / f"{store_type.__name__}.db", MIGRATIONS)
        await db.open()
        try:
            ticks = iter(T0 + timedelta(seconds=30 + n) for n in range(100))
            store = store_type(db, TableSink(), clock=lambda ticks=ticks: next(ticks))  # type: ignore[misc]
            await store.put(version, ObjectPath("DE", "OBD", location.id), document)
            answers = []
            for index, status, second, send_time, send_uid in sequence:
                uid = document["evses"][index]["uid"]
                body: dict[str, Any] = {"status": status}
                if send_time or version is OcpiVersion.V2_2_1:
                    body["last_updated"] = (T0 + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")
                if send_uid:
                    body["uid"] = uid
                result = await store.patch(version, ObjectPath("DE", "OBD", location.id, uid), body)
                answers.append(
                    (result.outcome, [(o.evse_uid, o.status, o.last_updated) for o in result.observations])
                )
            results.append(answers)
            states.append(await state(db))
        finally:
            await db.close()
    assert CountingStore.fast == len(sequence)  # every one of these PATCHes takes the fast path
    assert results[0] == results[1]
    assert states[0] == states[1]
