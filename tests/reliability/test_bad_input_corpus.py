"""The bad-input corpus: malformed and hostile OCPI requests against the real receiver (real store, real
outbox). Each gets its HTTP status and OCPI status code and changes nothing in the store; the few odd but
valid ones (SQL-ish text, emoji, a lenient header) are stored and read back literally.

Extends ``tests/ocpi/test_bad_input.py`` (field-level validation of the Location example) with transport,
encoding, id, authorization and parser attacks. Every answer is also checked against
``docs/openapi-bridge.yaml``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.ocpi_target import (
    LOCATION_211,
    LOCATION_221,
    OTHER_PARTY_TOKEN,
    ROOT_211,
    ROOT_221,
    TOKEN,
    Target,
    serve_target,
    token_header,
)
from tests.reliability.openapi_bridge import assert_conforms

L1 = f"{ROOT_221}/LOC1"
EVSE = f"{L1}/3256"
CONNECTOR = f"{EVSE}/1"
LIMIT = 64_000  # the corpus receiver's body limit
LATER = "2026-01-01T00:00:00Z"
DELETE = object()


def changed(document: Any, path: list[Any], value: Any) -> Any:
    new = copy.deepcopy(document)
    target = new
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return new


def loc(path: list[Any], value: Any) -> Any:
    return changed(LOCATION_221, path, value)


def evse(path: list[Any], value: Any) -> Any:
    return changed(LOCATION_221["evses"][0], path, value)


def connector(path: list[Any], value: Any) -> Any:
    return changed(LOCATION_221["evses"][0]["connectors"][0], path, value)


def raw_location(tail: str) -> bytes:
    """The Location example as JSON text with ``tail`` spliced in before the closing brace."""
    return (json.dumps(LOCATION_221)[:-1] + tail + "}").encode()


def nested(depth: int) -> bytes:
    return b'{"id": ' + b"[" * depth + b"]" * depth + b"}"


Check = Callable[[Target], Awaitable[None]]


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: Any = None
    raw: bytes | None = None
    http: int = 200
    code: int | None = 2001  # None: the answer is aiohttp's own (404/405/400), not an OCPI envelope
    message: str = ""
    token: str | None = TOKEN
    authorization: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    # for the odd but valid requests: what must be read back (the store is expected to change)
    read_back: Check | None = None


async def _get(target: Target, path: str) -> Any:
    answer = await target.call("GET", path)
    assert answer.status_code == 1000, answer.text
    assert answer.envelope is not None
    return answer.envelope["data"]


def reads_back(path: str, key: str, expected: Any) -> Check:
    async def check(target: Target) -> None:
        data = await _get(target, path)
        assert data[key] == expected
        assert set(await target.tables()) >= {"ocpi_location", "ocpi_evse", "outbox"}  # nothing dropped

    return check


SQLISH = "x'); DROP TABLE ocpi_location; --"
UNICODE_TEXT = "Gent \u202eZuid\u202c 🚗⚡ Ünïcødé"

CASES = [
    # --- paths and ids ---------------------------------------------------------------------------
    # sent unnormalised, ".." is just an id: here a Connector PUT with a Location for a body
    Case("path traversal, plain", "PUT", f"{ROOT_221}/../../versions", LOCATION_221,
         message="invalid Connector"),
    Case("path traversal, URL-encoded", "PUT", f"{ROOT_221}/..%2F..%2Fversions", LOCATION_221,
         message="differs"),
    Case("URL-encoded NUL in the location id", "PUT", f"{ROOT_221}/LOC%00", loc(["id"], "LOC\x00"),
         message="id: String should match pattern"),
    Case("emoji in the location id", "PUT", f"{ROOT_221}/L%F0%9F%9A%97", loc(["id"], "L🚗"),
         message="id: String should match pattern"),
    Case("RTL override in the location id", "PUT", f"{ROOT_221}/L%E2%80%AE1", loc(["id"], "L\u202e1"),
         message="id: String should match pattern"),
    Case("invalid UTF-8 (encoded surrogate) in the location id", "PUT", f"{ROOT_221}/L%ED%A0%80",
         loc(["id"], "L\ud800"), message="id"),
    Case("control character in an EVSE uid in the body", "PUT", L1,
         loc(["evses", 0, "uid"], "3256\n"), message="evses.0.uid"),
    Case("EVSE uid longer than 36 in the URL", "PUT", f"{L1}/{'U' * 37}", evse(["uid"], "U" * 37),
         message="evse_uid in the URL is longer than 36"),
    Case("connector id longer than 36 in the URL", "PUT", f"{EVSE}/{'C' * 37}",
         connector(["id"], "C" * 37), message="connector_id in the URL is longer than 36"),
    Case("2.1.1 location id longer than 39 in the URL", "PUT", f"{ROOT_211}/{'L' * 40}",
         changed(LOCATION_211, ["id"], "L" * 40), message="longer than 39"),
    Case("EVSE PUT whose uid differs from the URL", "PUT", EVSE, evse(["uid"], "3257"),
         message="uid '3257' in the body differs"),
    Case("connector PUT whose id differs from the URL", "PUT", CONNECTOR, connector(["id"], "2"),
         message="differs"),
    Case("country_code in the body differs from the URL", "PUT", L1, loc(["country_code"], "NL"),
         message="country_code"),
    Case("URL party is not the token's (PATCH)", "PATCH", "/ocpi/2.2.1/locations/NL/TNM/LOC1/3256",
         {"status": "CHARGING", "last_updated": LATER}, http=403, message="belongs to BE/BEC"),
    Case("token of another party on this party's URL", "GET", L1, token=OTHER_PARTY_TOKEN, http=403,
         message="belongs to NL/TNM"),
    Case("unsupported OCPI version", "PUT", "/ocpi/3.0/locations/BE/BEC/LOC1", LOCATION_221, http=404,
         code=None),
    Case("locations without a location id", "PUT", ROOT_221, LOCATION_221, http=404, code=None),
    # --- methods ---------------------------------------------------------------------------------
    Case("DELETE a location", "DELETE", L1, http=405, code=None),
    Case("POST a location", "POST", L1, LOCATION_221, http=405, code=None),
    Case("POST to an EVSE", "POST", EVSE, LOCATION_221["evses"][0], http=405, code=None),
    # --- PATCH rules -----------------------------------------------------------------------------
    Case("location PATCH without last_updated (2.2.1)", "PATCH", L1, {"name": "x"},
         message="last_updated"),
    Case("connector PATCH without last_updated (2.2.1)", "PATCH", CONNECTOR, {"max_voltage": 230},
         message="last_updated"),
    Case("PATCH changing the location id", "PATCH", L1, {"id": "LOC2", "last_updated": LATER},
         message="differs"),
    Case("PATCH changing the EVSE uid", "PATCH", EVSE, {"uid": "OTHER", "last_updated": LATER},
         message="differs"),
    Case("PATCH changing the connector id", "PATCH", CONNECTOR, {"id": "9", "last_updated": LATER},
         message="differs"),
    Case("PATCH changing the party_id", "PATCH", L1, {"party_id": "XYZ", "last_updated": LATER},
         message="party_id"),
    Case("PATCH with evses that is not a list", "PATCH", L1, {"evses": "x", "last_updated": LATER},
         message="evses"),
    Case("EVSE PATCH dated ten years ahead", "PATCH", EVSE,
         {"status": "CHARGING", "last_updated": "2036-06-01T00:00:00Z"}, message="in the future"),
    Case("Location PUT with an EVSE dated ahead", "PUT", L1,
         loc(["evses", 0, "last_updated"], "2036-06-01T00:00:00Z"), message="in the future"),
    Case("Location PUT listing one EVSE uid twice", "PUT", L1,
         loc(["evses"], [LOCATION_221["evses"][0], LOCATION_221["evses"][0]]), message="listed twice"),
    Case("Location PUT with one evse_id on two EVSEs", "PUT", L1,
         loc(["evses", 1, "evse_id"], LOCATION_221["evses"][0]["evse_id"]), message="evse_id"),
    Case("PATCH with junk connectors", "PATCH", EVSE,
         {"connectors": [1, None, {"id": 5}], "last_updated": LATER}, message="connectors"),
    Case("GET of an unknown connector", "GET", f"{EVSE}/99", http=404, code=2003, message="Connector"),
    Case("connector PUT under an unknown EVSE", "PUT", f"{L1}/9999/1", connector(["id"], "1"), http=404,
         code=2003, message="9999"),
    # --- bodies that are not a Location -----------------------------------------------------------
    Case("empty body", "PUT", L1, raw=b"", http=400, message="not valid JSON"),
    Case("body is JSON null", "PUT", L1, raw=b"null", http=400, message="JSON object"),
    Case("body is a JSON number", "PUT", L1, raw=b"42", http=400, message="JSON object"),
    Case("body is a JSON string", "PATCH", EVSE, raw=b'"AVAILABLE"', http=400, message="JSON object"),
    Case("body is not UTF-8", "PUT", L1, raw=b'{"id": "LOC1\xff"}', http=400, message="not valid JSON"),
    Case("form-encoded body", "PUT", L1, raw=b"id=LOC1&publish=true", http=400, message="not valid JSON",
         headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Case("10000 levels of nesting", "PUT", L1, raw=nested(10_000), http=400, message="nested too deeply"),
    Case("duplicate key: the later id differs from the URL", "PUT", L1, raw=raw_location(', "id": "LOC2"'),
         message="differs"),
    Case("duplicate key: the later publish is not a boolean", "PUT", L1,
         raw=raw_location(', "publish": "yes"'), message="publish"),
    Case("NaN literal", "PUT", L1, raw=raw_location(', "x": NaN'), http=400, message="NaN"),
    Case("Infinity literal", "PATCH", EVSE, raw=b'{"x": -Infinity, "last_updated": "2026-01-01T00:00:00Z"}',
         http=400, message="Infinity"),
    Case("number too large for a double", "PUT", L1, raw=raw_location(', "x": 1e999'), http=400,
         message="out of range"),
    Case("integer with 5000 digits", "PUT", L1, raw=raw_location(', "x": ' + "9" * 5000), http=400,
         message="not valid JSON"),
    Case("oversize body sent chunked (no Content-Length)", "PUT", L1,
         loc(["name"], "x" * (LIMIT + 1)), http=413, chunked=True, message="limit"),
    Case("oversize body with Content-Length", "PATCH", EVSE,
         {"x": "y" * (LIMIT + 1), "last_updated": LATER}, http=413, message="limit"),
    # --- values ----------------------------------------------------------------------------------
    Case("lone surrogate escape in a string", "PUT", L1, loc(["name"], "Gent \ud800"), message="name"),
    Case("number given as a string", "PUT", L1, loc(["publish"], "true"), message="publish"),
    Case("coordinates given as numbers", "PUT", L1, loc(["coordinates", "latitude"], 51.04),
         message="coordinates.latitude"),
    Case("latitude out of range", "PUT", L1, loc(["coordinates", "latitude"], "-91.000000"),
         message="latitude must be within"),
    Case("longitude out of range", "PATCH", L1,
         {"coordinates": {"latitude": "51.047599", "longitude": "181.000000"}, "last_updated": LATER},
         message="longitude"),
    Case("datetime in year 0", "PATCH", EVSE, {"status": "CHARGING", "last_updated": "0000-01-01T00:00:00Z"},
         message="last_updated"),
    Case("datetime at 24:61", "PATCH", EVSE, {"status": "CHARGING", "last_updated": "2020-01-01T24:61:00Z"},
         message="last_updated"),
    Case("datetime before year 1 once in UTC", "PATCH", EVSE,
         {"status": "CHARGING", "last_updated": "0001-01-01T00:00:00+14:00"}, message="out of range"),
    Case("datetime after year 9999 once in UTC", "PUT", L1,
         loc(["last_updated"], "9999-12-31T23:59:59-14:00"), message="out of range"),
    Case("datetime that is a number", "PATCH", EVSE, {"status": "CHARGING", "last_updated": 1700000000},
         message="last_updated"),
    Case("unknown capability", "PUT", L1, loc(["evses", 0, "capabilities"], ["TELEPORT"]),
         message="TELEPORT"),
    Case("2.2.1-only capability sent as 2.1.1", "PUT", f"{ROOT_211}/LOC211",
         changed(LOCATION_211, ["evses", 0, "capabilities"], ["PED_TERMINAL"]), message="PED_TERMINAL"),
    Case("unknown connector standard", "PUT", CONNECTOR, connector(["standard"], "IEC_99"),
         message="IEC_99"),
    Case("unknown power type in a PATCH", "PATCH", CONNECTOR, {"power_type": "DC_9", "last_updated": LATER},
         message="DC_9"),
    Case("address longer than 45", "PUT", L1, loc(["address"], "a" * 46), message="longer than 45"),
    Case("time_zone longer than 255", "PUT", L1, loc(["time_zone"], "Z" * 256), message="longer than 255"),
    Case("physical_reference longer than 16", "PATCH", EVSE,
         {"physical_reference": "p" * 17, "last_updated": LATER}, message="longer than 16"),
    # --- authorization ---------------------------------------------------------------------------
    Case("Bearer scheme", "GET", L1, authorization=f"Bearer {TOKEN}", http=401, code=2000,
         message="Authorization"),
    Case("scheme only", "GET", L1, authorization="Token", http=401, code=2000, message="Authorization"),
    Case("base64 of the empty string", "GET", L1, authorization="Token " + base64.b64encode(b"").decode(),
         http=401, code=2000, message="Authorization"),
    Case("token with spaces inside", "GET", L1, authorization=f"Token {TOKEN[:5]} {TOKEN[5:]}", http=401,
         code=2000, message="unknown token"),
    Case("very long token", "PUT", L1, LOCATION_221, authorization="Token " + "A" * 8000, http=401,
         code=2000, message="unknown token"),
    Case("token longer than a header may be", "GET", L1, authorization="Token " + "A" * 20_000, http=400,
         code=None),
    Case("token in a query string instead of the header", "GET", f"{L1}?token={TOKEN}", token=None,
         http=401, code=2000, message="Authorization"),
    Case("header injection in X-Request-ID is not echoed as a header", "GET", L1,
         headers={"X-Request-ID": "abc%0d%0aSet-Cookie: evil=1"}, code=1000,
         read_back=reads_back(L1, "id", "LOC1")),
    # --- odd but valid: stored and read back literally -------------------------------------------
    Case("SQL-ish text is stored literally", "PATCH", L1, {"name": SQLISH, "last_updated": LATER},
         code=1000, read_back=reads_back(L1, "name", SQLISH)),
    Case("braces in an id (printable ASCII) are addressable", "PUT", f"{ROOT_221}/%7BL%7D",
         loc(["id"], "{L}"), http=201, code=1000, read_back=reads_back(f"{ROOT_221}/%7BL%7D", "id", "{L}")),
    Case("RTL marks and emoji in free text are stored literally", "PUT", L1,
         loc(["name"], UNICODE_TEXT), code=1000, read_back=reads_back(L1, "name", UNICODE_TEXT)),
    Case("a lowercase token scheme is accepted", "PATCH", EVSE,
         {"status": "CHARGING", "last_updated": LATER}, authorization="token " + token_header(TOKEN)[6:],
         code=1000, read_back=reads_back(EVSE, "status", "CHARGING")),
    Case("a text/plain Content-Type with a JSON body is accepted", "PATCH", EVSE,
         {"status": "BLOCKED", "last_updated": LATER}, headers={"Content-Type": "text/plain"}, code=1000,
         read_back=reads_back(EVSE, "status", "BLOCKED")),
]  # fmt: skip


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    async with serve_target(tmp_path, max_body_bytes=LIMIT) as served:
        yield served


def test_the_corpus_has_at_least_40_distinct_refusals() -> None:
    refusals = [c for c in CASES if c.read_back is None]
    assert len(refusals) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input_gets_the_right_answer_and_changes_nothing(target: Target, case: Case) -> None:
    before = await target.tables()
    answer = await target.call(
        case.method,
        case.path,
        raw=case.raw
        if case.raw is not None
        else (None if case.body is None else json.dumps(case.body).encode()),
        token=case.token,
        authorization=case.authorization,
        headers=case.headers,
        chunked=case.chunked,
    )
    assert (answer.http_status, answer.status_code) == (case.http, case.code), answer.text
    envelope = answer.envelope
    if case.code is not None:
        assert envelope is not None
        assert case.message in envelope["status_message"], envelope
        assert "Set-Cookie" not in answer.headers
    if case.read_back is None or case.method == "GET":
        assert await target.tables() == before, "a refused request changed the store"
    if case.read_back is not None:
        await case.read_back(target)
    for exchange in target.exchanges:
        assert_conforms(exchange)


async def test_a_bare_cr_in_a_header_is_refused_by_the_parser_and_nothing_is_injected(target: Target) -> None:
    host, port = target.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = (
        f"GET {L1} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token_header(TOKEN)}\r\n"
        "X-Request-ID: abc\rSet-Cookie: evil=1\r\nConnection: close\r\n\r\n"
    ).encode()
    before = await target.tables()
    writer.write(request)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    await writer.wait_closed()
    head = response.split(b"\r\n\r\n", 1)[0]
    assert head.split(b" ")[1] == b"400", head
    assert b"set-cookie" not in head.lower()
    assert await target.tables() == before


async def test_the_x_request_id_header_is_echoed_verbatim_not_interpreted(target: Target) -> None:
    answer = await target.call("GET", L1, headers={"X-Request-ID": "abc%0d%0aSet-Cookie: evil=1"})
    assert answer.headers["X-Request-ID"] == "abc%0d%0aSet-Cookie: evil=1"
    assert "Set-Cookie" not in answer.headers
