"""GET /ocpi/versions and version details list credentials and locations for 2.1.1 and 2.2.1."""

from __future__ import annotations

import pytest

from tests.ocpi.conftest import Receiver


async def test_versions_lists_2_2_1_and_2_1_1_with_their_details_urls(receiver: Receiver) -> None:
    reply = await receiver.client.call("GET", f"{receiver.base_url}/ocpi/versions")
    assert reply.http_status == 200
    assert reply.status_code == 1000
    assert {v["version"]: v["url"] for v in reply.data} == {
        "2.2.1": f"{receiver.base_url}/ocpi/2.2.1",
        "2.1.1": f"{receiver.base_url}/ocpi/2.1.1",
    }
    assert set(reply.body) == {"data", "status_code", "status_message", "timestamp"}


@pytest.mark.parametrize("version", ["2.1.1", "2.2.1"])
async def test_version_details_list_credentials_and_locations(receiver: Receiver, version: str) -> None:
    reply = await receiver.client.call("GET", f"{receiver.base_url}/ocpi/{version}")
    assert reply.data["version"] == version
    urls = {e["identifier"]: e["url"] for e in reply.data["endpoints"]}
    assert urls == {
        "credentials": f"{receiver.base_url}/ocpi/{version}/credentials",
        "locations": f"{receiver.base_url}/ocpi/{version}/locations",
    }
    if version == "2.2.1":
        assert {"identifier": "locations", "role": "RECEIVER", "url": urls["locations"]} in reply.data[
            "endpoints"
        ]


async def test_versions_needs_a_token(receiver: Receiver) -> None:
    reply = await receiver.client.as_token(None).call("GET", f"{receiver.base_url}/ocpi/versions")
    assert reply.http_status == 401
    assert "Authorization" in reply.body["status_message"]


@pytest.mark.parametrize("base64_token", [True, False])
async def test_token_is_accepted_base64_encoded_and_plain(receiver: Receiver, base64_token: bool) -> None:
    client = receiver.client.as_token(receiver.client.token, base64_token=base64_token)
    reply = await client.call("GET", f"{receiver.base_url}/ocpi/versions")
    assert reply.status_code == 1000


async def test_request_and_correlation_ids_are_echoed(receiver: Receiver) -> None:
    headers = {"X-Request-ID": "req-1", "X-Correlation-ID": "corr-1"}
    reply = await receiver.client.call("GET", f"{receiver.base_url}/ocpi/2.2.1", headers=headers)
    assert reply.headers["X-Request-ID"] == "req-1"
    assert reply.headers["X-Correlation-ID"] == "corr-1"
