"""OcpiStore: commit-or-nothing with the decision, ordering, evse_id memory, sender upserts."""

from __future__ import annotations

import copy
import sqlite3
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.ocpi.store import ObjectPath, OcpiStore, format_datetime, merge_patch
from bridge.ocpi.v221.models import parse_datetime
from bridge.ocpi.versions import OcpiVersion
from bridge.store.database import Database
from tests.ocpi.conftest import RecordingLocations, load_example, observations, snapshot

LOCATION = load_example("2.2.1", "location_example.json")
V = OcpiVersion.V2_2_1


async def test_a_failing_decision_rolls_back_the_ocpi_change(db: Database) -> None:
    """The intake decides the outbox in the OCPI change's own transaction: if that fails, nothing stays."""
    store = OcpiStore(db)
    path = ObjectPath("BE", "BEC", "LOC1")
    updated = store.check_put(V, path, LOCATION)

    def change_then_fail(conn: sqlite3.Connection) -> None:
        store.put_in(conn, V, path, LOCATION, updated)
        raise RuntimeError("outbox refused")

    before = await snapshot(db)
    with pytest.raises(RuntimeError, match="outbox refused"):
        await db.write(change_then_fail)
    assert await snapshot(db) == before


async def test_observations_are_committed_with_the_change(store: RecordingLocations) -> None:
    await store.put(V, ObjectPath("BE", "BEC", "LOC1"), LOCATION)
    seen = await observations(store.db)
    assert [(o["evse_uid"], o["evse_id"], o["status"]) for o in seen] == [
        ("3256", "BE*BEC*E041503001", "AVAILABLE"),
        ("3257", "BE*BEC*E041503002", "RESERVED"),
    ]


async def test_sender_locations_older_last_updated_never_overwrites_newer(store: RecordingLocations) -> None:
    assert await store.apply_sender_locations("BE", "BEC", V, [LOCATION]) == 1
    older = copy.deepcopy(LOCATION)
    older["last_updated"] = "2010-01-01T00:00:00Z"
    older["evses"][0]["status"] = "OUTOFORDER"
    assert await store.apply_sender_locations("BE", "BEC", V, [older]) == 0
    stored = await store.get_location("BE", "BEC", "LOC1")
    assert stored == LOCATION


async def test_sender_locations_skip_invalid_and_foreign_ones(store: RecordingLocations) -> None:
    invalid = {**LOCATION, "id": "BAD", "evses": [{**LOCATION["evses"][0], "status": "BROKEN"}]}
    foreign = {**LOCATION, "id": "FOREIGN", "party_id": "XYZ"}
    assert await store.apply_sender_locations("BE", "BEC", V, [invalid, foreign, LOCATION]) == 1
    assert await store.location_count("BE", "BEC") == 1


async def test_an_evse_dropped_from_a_replacing_put_is_reported_removed(store: RecordingLocations) -> None:
    await store.put(V, ObjectPath("BE", "BEC", "LOC1"), LOCATION)
    newer = {**LOCATION, "evses": LOCATION["evses"][:1], "last_updated": "2020-01-01T00:00:00Z"}
    await store.put(V, ObjectPath("BE", "BEC", "LOC1"), newer)
    last = (await observations(store.db))[-1]
    assert (last["evse_uid"], last["evse_id"], last["status"]) == ("3257", "BE*BEC*E041503002", "REMOVED")


async def test_unpublishing_a_location_emits_observations(store: RecordingLocations) -> None:
    await store.put(V, ObjectPath("BE", "BEC", "LOC1"), LOCATION)
    hidden = {**LOCATION, "publish": False, "last_updated": "2020-01-01T00:00:00Z"}
    result = await store.put(V, ObjectPath("BE", "BEC", "LOC1"), hidden)
    assert [t.state.publish for t in result.touched] == [False, False]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3),
    max_leaves=5,
)
documents = st.dictionaries(st.text(min_size=1, max_size=5), json_values, max_size=5)


@given(documents, documents)
def test_patch_keeps_absent_fields_and_takes_present_ones(
    stored: dict[str, object], patch: dict[str, object]
) -> None:
    merged = merge_patch(stored, patch, list_keys={})
    assert merged == {**stored, **patch}


@given(st.datetimes(min_value=datetime(1, 1, 2), timezones=st.just(UTC)))
def test_a_formatted_datetime_reads_back_as_itself_to_the_second(value: datetime) -> None:
    """OCPI DateTime text as the store writes it (years below 1000 zero-padded, which strftime is not)."""
    text = format_datetime(value)
    assert len(text) == 20
    assert text.endswith("Z")
    assert parse_datetime(text) == value.replace(microsecond=0)


async def test_an_evse_put_into_a_location_stored_with_evses_null_adds_it(store: RecordingLocations) -> None:
    """``"evses": null`` is a valid Location (an optional field left empty); an EVSE PUT into it must add
    the EVSE (the receiver fuzzer found a 500 here: the stored null was taken for a list)."""
    location = copy.deepcopy(LOCATION)
    evse = location["evses"][0]
    location["evses"] = None
    path = ObjectPath("BE", "BEC", location["id"])
    assert (await store.put(OcpiVersion.V2_2_1, path, location)).outcome.value == "created"
    evse_path = ObjectPath("BE", "BEC", location["id"], evse["uid"])
    assert (await store.put(OcpiVersion.V2_2_1, evse_path, evse)).outcome.value == "updated"
    stored = await store.get_location("BE", "BEC", location["id"])
    assert stored is not None
    assert [e["uid"] for e in stored["evses"]] == [evse["uid"]]
