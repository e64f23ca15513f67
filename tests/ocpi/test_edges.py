"""The receiver's edges as real peers and hostile clients meet them (issue 12): OCPI 2.2.1 ids are
CiString (items 1), header bytes that are not ASCII (item 4), failed authentication logged, counted and
slowed (item 6), the credentials module refusing loopback targets (item 7), the body limit (item 8)."""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import logging
import time
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from bridge.ocpi.receiver import AUTH_FAILURES_FREE, AuthFailures
from tests.ocpi.conftest import TOKENS, Receiver, RecordingLocations, load_example, start_receiver

TOKEN = TOKENS[("BE", "BEC")]
NAME = {"name": "x"}


def moment(step: int) -> str:
    """Later than the examples' last_updated, in order, and never in the future (the store refuses that)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60 + step))


def location(**changes: Any) -> dict[str, Any]:
    doc = load_example("2.2.1", "location_example.json")
    doc.update(changes)
    return dict(doc)


async def root(receiver: Receiver) -> str:
    return await receiver.client.discover_locations("2.2.1")


# --- item 1: CiString ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_ids", "body_ids"),
    [
        (("BE", "BEC", "LOC1"), ("BE", "BEC", "LOC1")),  # upper-case
        (("be", "bec", "loc1"), ("be", "bec", "loc1")),  # lower-case, as extrawest-ocpi sends by default
        (("Be", "bEc", "Loc1"), ("bE", "BeC", "lOC1")),  # mixed, and differently in the URL and the body
    ],
    ids=["upper", "lower", "mixed"],
)
async def test_2_2_1_ids_compare_and_key_case_insensitively(
    receiver: Receiver, url_ids: tuple[str, str, str], body_ids: tuple[str, str, str]
) -> None:
    base = await root(receiver)
    client = receiver.client
    stored = location()  # BE/BEC/LOC1, EVSE 3256 with connectors 1 and 2
    put = await client.call("PUT", f"{base}/BE/BEC/LOC1", stored)
    assert (put.http_status, put.status_code) == (201, 1000), put.body

    cc, pid, lid = url_ids
    body_cc, body_pid, body_lid = body_ids
    # a PUT of the whole Location in another spelling replaces it: no second Location appears
    again = await client.call(
        "PUT",
        f"{base}/{cc}/{pid}/{lid}",
        location(country_code=body_cc, party_id=body_pid, id=body_lid, last_updated=moment(0)),
    )
    assert (again.http_status, again.status_code) == (200, 1000), again.body
    assert await receiver.store.location_count("BE", "BEC") == 1
    # a PATCH of an EVSE and a Connector with lower-case uids in URL and body
    evse = await client.call(
        "PATCH",
        f"{base}/{cc}/{pid}/{lid}/3256",
        {"uid": "3256", "status": "CHARGING", "last_updated": moment(1)},
    )
    assert evse.status_code == 1000, evse.body
    # GET in any spelling answers the stored spelling
    for spelling in (f"{cc}/{pid}/{lid}", "be/bec/loc1", "BE/BEC/LOC1"):
        got = await client.call("GET", f"{base}/{spelling}")
        assert got.status_code == 1000, got.body
        assert got.data["id"] == "LOC1"
        assert got.data["country_code"] == "BE"
        assert got.data["evses"][0]["status"] == "CHARGING"


async def test_2_2_1_evse_and_connector_ids_are_ci_too(receiver: Receiver) -> None:
    base = await root(receiver)
    doc = location()
    doc["evses"][0]["uid"] = "EVSE-A"
    assert (await receiver.client.call("PUT", f"{base}/BE/BEC/LOC1", doc)).status_code == 1000
    patch = {"status": "BLOCKED", "last_updated": moment(0)}
    assert (await receiver.client.call("PATCH", f"{base}/be/bec/loc1/evse-a", patch)).status_code == 1000
    connector = {"id": "1", "max_amperage": 32, "last_updated": moment(1)}
    reply = await receiver.client.call("PATCH", f"{base}/BE/BEC/LOC1/Evse-A/1", connector)
    assert reply.status_code == 1000, reply.body
    got = await receiver.client.call("GET", f"{base}/BE/BEC/LOC1/evse-a")
    assert (got.data["uid"], got.data["status"]) == ("EVSE-A", "BLOCKED")
    # an EVSE PUT in another spelling replaces the stored EVSE, it does not add one
    evse = copy.deepcopy(doc["evses"][0]) | {"uid": "evse-a", "last_updated": moment(2)}
    assert (await receiver.client.call("PUT", f"{base}/BE/BEC/LOC1/evse-a", evse)).status_code == 1000
    whole = await receiver.client.call("GET", f"{base}/BE/BEC/LOC1")
    assert [e["uid"] for e in whole.data["evses"]] == ["EVSE-A", "3257"]


async def test_2_1_1_ids_stay_case_sensitive(receiver: Receiver) -> None:
    doc = load_example("2.1.1", "mod_locations__06.json")
    client = receiver.client.as_token(TOKEN, base64_token=False)
    base = await client.discover_locations("2.1.1")
    assert (await client.call("PUT", f"{base}/BE/BEC/{doc['id']}", doc)).status_code == 1000
    assert (await client.call("GET", f"{base}/be/bec/{doc['id']}")).status_code == 1000  # the party: CiString
    other = doc["id"].lower() if doc["id"] != doc["id"].lower() else doc["id"].upper()
    assert (await client.call("GET", f"{base}/BE/BEC/{other}")).status_code == 2003


# --- item 4: bytes that are not ASCII in Authorization ---------------------------------------------


async def raw_request(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    return answer


@pytest.mark.parametrize(
    "authorization",
    [
        b"Token " + TOKEN.encode() + b"\xff",
        b"Token \xff\xfe\xfd",
        b"Token \xc3\xa9t\xc3\xa9",  # valid UTF-8, not ASCII
        b"\xff\xff",
        b"Token " + b"\x80" * 100,
    ],
)
async def test_a_non_ascii_authorization_is_401_with_an_envelope_and_never_logged(
    store: RecordingLocations, authorization: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    runner, base_url = await start_receiver(store)
    try:
        port = int(base_url.rsplit(":", 1)[1])
        with capture_logs() as events:
            answer = await raw_request(
                port,
                b"GET /ocpi/versions HTTP/1.1\r\nHost: x\r\nAuthorization: "
                + authorization
                + b"\r\nConnection: close\r\n\r\n",
            )
    finally:
        await runner.cleanup()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 401 Unauthorized", answer[:300]
    assert b'"status_code":2000' in rest
    logged = caplog.text + repr(events)
    assert TOKEN not in logged  # neither in a log line nor in an exception repr
    assert "\\xff" not in logged
    assert "Traceback" not in logged
    assert [e["event"] for e in events] == ["ocpi_authentication_failed"]


# --- item 6: failed authentication --------------------------------------------------------------------


def test_a_source_that_keeps_failing_is_slowed_down() -> None:
    failures = AuthFailures()
    delays = [failures.record("203.0.113.9", now=100.0 + i * 0.01)[1] for i in range(AUTH_FAILURES_FREE + 8)]
    assert delays[:AUTH_FAILURES_FREE] == [0.0] * AUTH_FAILURES_FREE
    assert delays[AUTH_FAILURES_FREE:] == sorted(delays[AUTH_FAILURES_FREE:])
    assert delays[-1] == 2.0
    assert failures.record("198.51.100.1", now=101.0) == (1, 0.0)  # another source is not affected
    assert failures.record("203.0.113.9", now=1000.0) == (1, 0.0)  # the window passed


async def test_failed_authentication_is_logged_without_the_token_counted_and_slowed(
    store: RecordingLocations,
) -> None:
    counted: list[int] = []
    from aiohttp import web

    from bridge.config import ReceiverConfig
    from bridge.ocpi.receiver import build_receiver_app
    from tests.ocpi.conftest import free_socket

    sock = free_socket()
    app = build_receiver_app(store, ReceiverConfig(), on_auth_failure=lambda: counted.append(1))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/ocpi/versions"
    guess = "guessed-token-" + "x" * 20
    try:
        with capture_logs() as events:
            async with aiohttp.ClientSession() as session:
                elapsed = []
                for _ in range(AUTH_FAILURES_FREE + 3):
                    started = time.monotonic()
                    async with session.get(url, headers={"Authorization": f"Token {guess}"}) as response:
                        assert response.status == 401
                    elapsed.append(time.monotonic() - started)
    finally:
        await runner.cleanup()
    assert len(counted) == AUTH_FAILURES_FREE + 3
    assert sum(elapsed[AUTH_FAILURES_FREE:]) >= 0.05 + 0.1 + 0.2  # held back: a lower bound, never flaky
    failures = [e for e in events if e["event"] == "ocpi_authentication_failed"]
    assert len(failures) == AUTH_FAILURES_FREE + 3
    assert failures[0]["source"] == "127.0.0.1"
    assert failures[-1]["failures_last_minute"] == AUTH_FAILURES_FREE + 3
    assert failures[-1]["held_back_s"] > 0
    assert guess not in repr(events)


# --- item 7: credentials URLs ---------------------------------------------------------------------------


async def test_credentials_refuse_a_loopback_versions_url_and_answer_generically(
    store: RecordingLocations,
) -> None:
    runner, base_url = await start_receiver(store, allow_local_credentials_urls=False)
    try:
        with capture_logs() as events:
            async with aiohttp.ClientSession() as session:
                from tests.ocpi.conftest import Client

                client = Client(session, base_url, TOKEN)
                answers = []
                for target in (
                    "http://127.0.0.1:8081/status.json",
                    "http://127.0.0.1:1/",
                    "http://169.254.169.254/x",
                ):
                    body = {
                        "token": "token-b",
                        "url": target,
                        "roles": [
                            {
                                "role": "CPO",
                                "party_id": "BEC",
                                "country_code": "BE",
                                "business_details": {"name": "x"},
                            }
                        ],
                    }
                    answers.append(await client.call("POST", f"{base_url}/ocpi/2.2.1/credentials", body))
    finally:
        await runner.cleanup()
    messages = {a.body["status_message"] for a in answers}
    assert {a.status_code for a in answers} == {3001}
    assert len(messages) == 1  # the same words whatever is (or is not) listening there
    assert "127.0.0.1" not in messages.pop()
    details = [e["error"] for e in events if e["event"] == "ocpi_credentials_versions_fetch_failed"]
    assert len(details) == 3
    assert all("loopback or link-local" in detail for detail in details)  # the detail: in the log only


# --- item 8: the body limit ------------------------------------------------------------------------------


async def put_big(session: aiohttp.ClientSession, url: str, document: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Token {base64.b64encode(TOKEN.encode()).decode()}"}
    body = io.BytesIO(json.dumps(document).encode())
    headers["Content-Type"] = "application/json"
    async with session.put(url, data=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_the_body_limit_is_the_configured_one(store: RecordingLocations) -> None:
    runner, base_url = await start_receiver(store, max_body_bytes=2_000_000)
    url = f"{base_url}/ocpi/2.2.1/locations/BE/BEC/LOC1"
    big = location()
    # a big Location without the cost of thousands of EVSEs: long directions texts (about 1.2 MB)
    big["directions"] = [{"language": "en", "text": f"{i:05d} " + "x" * 500} for i in range(2300)]
    assert len(json.dumps(big)) > 1_000_000  # the old constant limit
    try:
        async with aiohttp.ClientSession() as session:
            status, body = await put_big(session, url, big)
            assert (status, body["status_code"]) == (201, 1000), body
            big["directions"] *= 2
            status, body = await put_big(session, url, big)
    finally:
        await runner.cleanup()
    assert status == 413
    assert "max_body_size" in body["status_message"]


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("not gzip at all", b'{"status": "CHARGING"}'),
        ("a gzip header and garbage", b"\x1f\x8b\x08\x00garbagegarbage"),
    ],
)
async def test_a_body_that_does_not_decode_as_its_content_encoding_says_is_400_with_an_envelope(
    store: RecordingLocations, name: str, encoded: bytes
) -> None:
    runner, base_url = await start_receiver(store)
    port = int(base_url.rsplit(":", 1)[1])
    header = b"Token " + base64.b64encode(TOKEN.encode())
    try:
        answer = await raw_request(
            port,
            b"PATCH /ocpi/2.2.1/locations/BE/BEC/LOC1/3256 HTTP/1.1\r\nHost: x\r\nAuthorization: " + header
            + b"\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: "
            + str(len(encoded)).encode() + b"\r\nConnection: close\r\n\r\n" + encoded,
        )  # fmt: skip
    finally:
        await runner.cleanup()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request"), answer[:200]
    assert b'"status_code":2001' in answer
    assert b"Content-Encoding (gzip)" in answer
