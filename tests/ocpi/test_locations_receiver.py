"""The Locations receiver: PUT replaces, PATCH merges, GET reads back, observations hand-off."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.ocpi.conftest import TOKENS, Receiver, load_example, observations

# Every example in tests/data/ocpi that is a complete, valid Location object.
V221_LOCATIONS = [
    "location_example.json",
    "location_example_parking_garage_opening_hours.json",
    "location_example_uc2_destination_charger.json",
    "location_example_uc3_destination_charger_not_published.json",
    "location_example_uc4_limited_visibility.json",
    "location_example_uc5_home_charge_point.json",
]


async def put_location(receiver: Receiver, version: str, location: dict[str, Any], cc: str, pid: str) -> str:
    client = receiver.client.as_token(TOKENS[(cc, pid)], base64_token=version == "2.2.1")
    url = f"{await client.discover_locations(version)}/{cc}/{pid}/{location['id']}"
    reply = await client.call("PUT", url, location)
    assert (reply.http_status, reply.status_code) == (201, 1000), reply.body
    return url


@pytest.mark.parametrize("name", V221_LOCATIONS)
async def test_every_2_2_1_location_example_is_accepted_and_read_back_equal(
    receiver: Receiver, name: str
) -> None:
    location = load_example("2.2.1", name)
    url = await put_location(receiver, "2.2.1", location, location["country_code"], location["party_id"])
    client = receiver.client.as_token(TOKENS.get((location["country_code"], location["party_id"])))
    assert (await client.call("GET", url)).data == location
    for evse in location.get("evses", []):
        assert (await client.call("GET", f"{url}/{evse['uid']}")).data == evse
        for connector in evse["connectors"]:
            got = await client.call("GET", f"{url}/{evse['uid']}/{connector['id']}")
            assert got.data == connector


async def test_the_2_1_1_location_example_is_accepted_and_read_back_equal(receiver: Receiver) -> None:
    location = load_example("2.1.1", "mod_locations__06.json")
    url = await put_location(receiver, "2.1.1", location, "BE", "BEC")
    client = receiver.client.as_token(TOKENS[("BE", "BEC")], base64_token=False)
    assert (await client.call("GET", url)).data == location
    assert (await client.call("GET", f"{url}/3257/1")).data == location["evses"][1]["connectors"][0]


async def test_put_location_emits_one_observation_per_evse_with_publish(receiver: Receiver) -> None:
    location = load_example("2.2.1", "location_example_uc3_destination_charger_not_published.json")
    await put_location(receiver, "2.2.1", location, location["country_code"], location["party_id"])
    seen = await observations(receiver.store.db)
    assert [(o["evse_uid"], o["status"], o["publish"]) for o in seen] == [
        (e["uid"], e["status"], 0) for e in location["evses"]
    ]


@pytest.mark.parametrize(
    ("example", "segments", "field"),
    [
        ("location_patch_example_status.json", "/3256", "status"),
        ("location_patch_example_location.json", "", "name"),
        ("location_patch_example_tariff.json", "/3256/2", "tariff_ids"),
    ],
)
async def test_2_2_1_patch_examples_merge_into_the_stored_object(
    receiver: Receiver, example: str, segments: str, field: str
) -> None:
    location = load_example("2.2.1", "location_example.json")
    url = await put_location(receiver, "2.2.1", location, "BE", "BEC")
    patch = load_example("2.2.1", example)
    client = receiver.client
    reply = await client.call("PATCH", url + segments, patch)
    assert (reply.http_status, reply.status_code) == (200, 1000), reply.body
    got = (await client.call("GET", url + segments)).data
    before = (await client.call("GET", url)).data
    assert got[field] == patch[field]
    assert got["last_updated"] == patch["last_updated"]
    # untouched fields stay; the Location's last_updated follows its EVSE's (mod_locations PATCH)
    assert before["last_updated"] == patch["last_updated"]
    assert before["address"] == location["address"]


async def test_patch_remove_evse_keeps_its_evse_id_and_emits_removed(receiver: Receiver) -> None:
    location = load_example("2.2.1", "location_example.json")
    url = await put_location(receiver, "2.2.1", location, "BE", "BEC")
    patch = {"status": "REMOVED", "evse_id": None, "last_updated": "2019-06-24T12:39:09Z"}
    patch.pop("evse_id")  # OCPI lets evse_id vanish: a PUT without it follows
    assert (await receiver.client.call("PATCH", f"{url}/3256", patch)).status_code == 1000
    evse = copy.deepcopy(location["evses"][0])
    del evse["evse_id"]
    evse.update(status="REMOVED", last_updated="2019-06-25T00:00:00Z")
    assert (await receiver.client.call("PUT", f"{url}/3256", evse)).status_code == 1000
    seen = await observations(receiver.store.db)
    removed = [o for o in seen if o["status"] == "REMOVED"]
    # touched twice (the PATCH, then the PUT's newer last_updated), each time with the evse_id it kept
    assert {(o["evse_uid"], o["evse_id"]) for o in removed} == {("3256", "BE*BEC*E041503001")}
    assert await receiver.store.remembered_evse_id("BE", "BEC", "LOC1", "3256") == "BE*BEC*E041503001"


async def test_2_1_1_patch_examples_merge_without_last_updated(receiver: Receiver) -> None:
    location = load_example("2.1.1", "mod_locations__06.json")
    url = await put_location(receiver, "2.1.1", location, "BE", "BEC")
    client = receiver.client.as_token(TOKENS[("BE", "BEC")], base64_token=False)
    for example, segments in [("mod_locations__01.json", "/3256"), ("mod_locations__02.json", "")]:
        patch = load_example("2.1.1", example)
        reply = await client.call("PATCH", url + segments, patch)
        assert reply.status_code == 1000, reply.body
        got = (await client.call("GET", url + segments)).data
        assert all(got[k] == v for k, v in patch.items())
        assert got["last_updated"] > location["last_updated"]  # set to the time of arrival


async def test_put_evse_replaces_it_and_updates_the_location_last_updated(receiver: Receiver) -> None:
    location = load_example("2.2.1", "location_example.json")
    url = await put_location(receiver, "2.2.1", location, "BE", "BEC")
    evse = {**location["evses"][1], "status": "CHARGING", "last_updated": "2020-01-01T00:00:00Z"}
    del evse["capabilities"]
    reply = await receiver.client.call("PUT", f"{url}/3257", evse)
    assert (reply.http_status, reply.status_code) == (200, 1000)
    assert (await receiver.client.call("GET", f"{url}/3257")).data == evse  # replaced: capabilities gone
    assert (await receiver.client.call("GET", url)).data["last_updated"] == "2020-01-01T00:00:00Z"


async def test_older_last_updated_never_overwrites_newer(receiver: Receiver) -> None:
    location = load_example("2.2.1", "location_example.json")
    url = await put_location(receiver, "2.2.1", location, "BE", "BEC")
    stale = {"status": "OUTOFORDER", "last_updated": "2010-01-01T00:00:00Z"}
    reply = await receiver.client.call("PATCH", f"{url}/3256", stale)
    assert reply.status_code == 1000
    assert "older" in reply.body["status_message"]
    assert (await receiver.client.call("GET", f"{url}/3256")).data["status"] == "AVAILABLE"


async def test_a_change_that_keeps_the_status_touches_the_evse_with_the_same_status(
    receiver: Receiver,
) -> None:
    """The intake re-decides every EVSE a change touches, from its state: here the same status again."""
    location = load_example("2.2.1", "location_example.json")
    url = await put_location(receiver, "2.2.1", location, "BE", "BEC")
    before = len(await observations(receiver.store.db))
    patch = {"physical_reference": "9", "last_updated": "2019-06-24T12:39:09Z"}
    assert (await receiver.client.call("PATCH", f"{url}/3256", patch)).status_code == 1000
    new = (await observations(receiver.store.db))[before:]
    assert [(o["evse_uid"], o["evse_id"], o["status"]) for o in new] == [
        ("3256", "BE*BEC*E041503001", "AVAILABLE")
    ]


async def test_patch_of_a_location_never_put_answers_unknown_location(receiver: Receiver) -> None:
    url = await receiver.client.discover_locations("2.2.1")
    reply = await receiver.client.call(
        "PATCH", f"{url}/BE/BEC/NOPE/1", {"status": "CHARGING", "last_updated": "2020-01-01T00:00:00Z"}
    )
    assert (reply.http_status, reply.status_code) == (404, 2003)
    assert "NOPE" in reply.body["status_message"]
