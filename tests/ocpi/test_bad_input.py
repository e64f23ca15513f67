"""Bad input gets a clear OCPI error and changes nothing in the store (table-driven)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.ocpi.conftest import TOKENS, Receiver, load_example, snapshot, start_receiver

LOCATION = load_example("2.2.1", "location_example.json")


def with_change(path: list[Any], value: Any) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(LOCATION)
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


DELETE = object()


@dataclass
class Case:
    name: str
    method: str
    segments: str  # after .../locations
    body: Any = None
    raw: bytes | None = None
    token: str | None = TOKENS[("BE", "BEC")]
    http_status: int = 200
    status_code: int = 2001
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)


CASES = [
    Case(
        "malformed JSON",
        "PUT",
        "/BE/BEC/LOC1",
        raw=b'{"id": "LOC1",',
        http_status=400,
        message="not valid JSON",
    ),
    Case(
        "JSON that is not an object",
        "PUT",
        "/BE/BEC/LOC1",
        raw=b"[1, 2]",
        http_status=400,
        message="JSON object",
    ),
    Case(
        "wrong type",
        "PUT",
        "/BE/BEC/LOC1",
        with_change(["evses", 0, "connectors", 0, "max_voltage"], "220"),
        message="evses.0.connectors.0.max_voltage",
    ),
    Case(
        "missing required field",
        "PUT",
        "/BE/BEC/LOC1",
        with_change(["address"], DELETE),
        message="address: Field required",
    ),
    Case(
        "unknown status",
        "PUT",
        "/BE/BEC/LOC1",
        with_change(["evses", 0, "status"], "BROKEN"),
        message="evses.0.status",
    ),
    Case(
        "unknown parking type",
        "PUT",
        "/BE/BEC/LOC1",
        with_change(["parking_type"], "ROOFTOP"),
        message="ROOFTOP",
    ),
    Case(
        "too-long string",
        "PUT",
        "/BE/BEC/LOC1",
        with_change(["evses", 0, "evse_id"], "X" * 49),
        message="longer than 48",
    ),
    Case("id in URL differs from body", "PUT", "/BE/BEC/LOC2", LOCATION, message="differs"),
    Case(
        "party in body differs from URL",
        "PUT",
        "/BE/BEC/LOC1",
        with_change(["party_id"], "XYZ"),
        message="party_id",
    ),
    Case(
        "party differs from the token's",
        "PUT",
        "/NL/TNM/LOC1",
        LOCATION,
        http_status=403,
        message="belongs to BE/BEC",
    ),
    Case(
        "missing token",
        "PUT",
        "/BE/BEC/LOC1",
        LOCATION,
        token=None,
        http_status=401,
        status_code=2000,
        message="Authorization",
    ),
    Case(
        "unknown token",
        "PUT",
        "/BE/BEC/LOC1",
        LOCATION,
        token="nope",
        http_status=401,
        status_code=2000,
        message="unknown token",
    ),
    Case(
        "PATCH without last_updated (2.2.1)",
        "PATCH",
        "/BE/BEC/LOC1/3256",
        {"status": "CHARGING"},
        message="last_updated",
    ),
    Case(
        "PATCH with an unknown status",
        "PATCH",
        "/BE/BEC/LOC1/3256",
        {"status": "BROKEN", "last_updated": "2020-01-01T00:00:00Z"},
        message="BROKEN",
    ),
    Case(
        "PATCH that changes nothing",
        "PATCH",
        "/BE/BEC/LOC1/3256",
        {"last_updated": "2020-01-01T00:00:00Z"},
        status_code=2002,
        message="changes nothing",
    ),
    Case(
        "PATCH of an unknown EVSE",
        "PATCH",
        "/BE/BEC/LOC1/9999",
        {"status": "CHARGING", "last_updated": "2020-01-01T00:00:00Z"},
        http_status=404,
        status_code=2003,
        message="9999",
    ),
    Case(
        "EVSE PUT under an unknown location",
        "PUT",
        "/BE/BEC/LOC9/3256",
        LOCATION["evses"][0],
        http_status=404,
        status_code=2003,
        message="LOC9",
    ),
    Case(
        "the spec's incomplete add-EVSE example",
        "PUT",
        "/BE/BEC/LOC1/3256",
        load_example("2.2.1", "location_put_example_add_evse.json"),
        message="physical_reference",
    ),
    Case(
        "location_id too long in the URL",
        "PUT",
        "/BE/BEC/" + "L" * 37,
        with_change(["id"], "L" * 37),
        message="longer than 36",
    ),
    Case(
        "oversize body",
        "PUT",
        "/BE/BEC/LOC1",
        with_change(["name"], "x" * 5000),
        http_status=413,
        message="limit",
    ),
]


@pytest.fixture
async def seeded(receiver: Receiver) -> Receiver:
    url = await receiver.client.discover_locations("2.2.1")
    assert (await receiver.client.call("PUT", f"{url}/BE/BEC/LOC1", LOCATION)).status_code == 1000
    return receiver


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input_is_refused_with_a_clear_error_and_changes_nothing(
    seeded: Receiver, case: Case
) -> None:
    # A small body limit makes "oversize" cheap; the same store and tokens as the seeded receiver.
    runner, base_url = await start_receiver(seeded.store, max_body_bytes=4000)
    try:
        before = await snapshot(seeded.store.db)
        async with aiohttp.ClientSession() as session:
            client = seeded.client.as_token(case.token)
            client.session, client.base_url = session, base_url
            url = f"{base_url}/ocpi/2.2.1/locations{case.segments}"
            reply = await client.call(case.method, url, case.body, raw=case.raw, headers=case.headers)
        assert (reply.http_status, reply.status_code) == (case.http_status, case.status_code), reply.body
        assert case.message in reply.body["status_message"]
        assert await snapshot(seeded.store.db) == before
    finally:
        await runner.cleanup()
