"""Credentials registration, the bridge as receiver (end to end) and as client."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.ocpi.auth import Party, TokenStore
from bridge.ocpi.credentials_client import register_with_cpo
from bridge.ocpi.envelope import envelope
from tests.engines import dump as dump_tables
from tests.ocpi.conftest import TOKENS, Receiver, free_socket

TOKEN_B = "cpo-token-b-for-the-bridge"


@dataclass
class FakeCpo:
    """A minimal CPO: versions, version details and a credentials receiver, checking the tokens it gets."""

    base_url: str = ""
    seen_tokens: list[str] = field(default_factory=list)
    registered: dict[str, Any] | None = None

    def app(self) -> web.Application:
        async def versions(request: web.Request) -> web.Response:
            self.seen_tokens.append(request.headers.get("Authorization", ""))
            return web.json_response(envelope([{"version": "2.2.1", "url": f"{self.base_url}/ocpi/2.2.1"}]))

        async def details(request: web.Request) -> web.Response:
            self.seen_tokens.append(request.headers.get("Authorization", ""))
            endpoint = {
                "identifier": "credentials",
                "role": "RECEIVER",
                "url": f"{self.base_url}/ocpi/2.2.1/cred",
            }
            return web.json_response(envelope({"version": "2.2.1", "endpoints": [endpoint]}))

        async def credentials(request: web.Request) -> web.Response:
            self.registered = await request.json()
            role = {
                "role": "CPO",
                "business_details": {"name": "Fake"},
                "party_id": "TNM",
                "country_code": "NL",
            }
            return web.json_response(
                envelope({"token": "token-c-for-bridge", "url": self.base_url, "roles": [role]})
            )

        app = web.Application()
        app.router.add_get("/ocpi/versions", versions)
        app.router.add_get("/ocpi/2.2.1", details)
        app.router.add_post("/ocpi/2.2.1/cred", credentials)
        return app


@pytest.fixture
async def cpo() -> AsyncIterator[FakeCpo]:
    fake = FakeCpo()
    sock = free_socket()
    fake.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    runner = web.AppRunner(fake.app())
    await runner.setup()
    await web.SockSite(runner, sock).start()
    yield fake
    await runner.cleanup()


def credentials_body(cpo: FakeCpo) -> dict[str, Any]:
    role = {"role": "CPO", "business_details": {"name": "Fake CPO"}, "party_id": "TNM", "country_code": "NL"}
    return {"token": TOKEN_B, "url": f"{cpo.base_url}/ocpi/versions", "roles": [role]}


async def test_cpo_registers_with_token_a_and_then_uses_token_c(receiver: Receiver, cpo: FakeCpo) -> None:
    client = receiver.client.as_token(TOKENS[("NL", "TNM")])
    url = f"{receiver.base_url}/ocpi/2.2.1/credentials"
    reply = await client.call("POST", url, credentials_body(cpo))
    assert reply.status_code == 1000, reply.body
    token_c = reply.data["token"]
    assert reply.data["url"] == f"{receiver.base_url}/ocpi/versions"
    # the bridge fetched the CPO's versions and details with token B, base64-encoded for 2.2.1
    assert cpo.seen_tokens[:2] == [f"Token {base64.b64encode(TOKEN_B.encode()).decode()}"] * 2
    # token C works for the Locations module, for the CPO's own party
    with_c = receiver.client.as_token(token_c)
    assert (
        await with_c.call("GET", f"{receiver.base_url}/ocpi/2.2.1/locations/NL/TNM/X")
    ).status_code == 2003
    # a second POST is refused: registered parties update with PUT
    again = await client.call("POST", url, credentials_body(cpo))
    assert again.http_status == 405
    # PUT rotates token C: the old one stops working
    rotated = await with_c.call("PUT", url, credentials_body(cpo))
    assert rotated.status_code == 1000
    assert rotated.data["token"] != token_c
    assert (await with_c.call("GET", f"{receiver.base_url}/ocpi/versions")).http_status == 401
    # DELETE unregisters: the rotated token stops working
    with_new = receiver.client.as_token(rotated.data["token"])
    assert (await with_new.call("DELETE", url)).status_code == 1000
    assert (await with_new.call("GET", f"{receiver.base_url}/ocpi/versions")).http_status == 401


async def test_token_c_is_stored_only_as_a_hash(receiver: Receiver, cpo: FakeCpo) -> None:
    client = receiver.client.as_token(TOKENS[("NL", "TNM")])
    reply = await client.call("POST", f"{receiver.base_url}/ocpi/2.2.1/credentials", credentials_body(cpo))
    token_c = reply.data["token"]
    db = receiver.store.db
    dump = repr(await db.read(lambda tx: dump_tables(tx, db)))
    assert token_c not in dump
    assert TOKEN_B in dump  # the token the bridge must send is kept


async def test_registration_with_a_party_other_than_the_token_is_refused(
    receiver: Receiver, cpo: FakeCpo
) -> None:
    client = receiver.client.as_token(TOKENS[("BE", "BEC")])
    reply = await client.call("POST", f"{receiver.base_url}/ocpi/2.2.1/credentials", credentials_body(cpo))
    assert (reply.http_status, reply.status_code) == (403, 2001)
    assert cpo.seen_tokens == []


async def test_unreachable_cpo_versions_answer_3001(receiver: Receiver) -> None:
    body = credentials_body(FakeCpo(base_url="http://127.0.0.1:9"))
    client = receiver.client.as_token(TOKENS[("NL", "TNM")])
    reply = await client.call("POST", f"{receiver.base_url}/ocpi/2.2.1/credentials", body)
    assert reply.status_code == 3001
    assert "versions" in reply.body["status_message"]


async def test_bridge_registers_itself_with_a_cpo(receiver: Receiver, cpo: FakeCpo) -> None:
    tokens = TokenStore(receiver.store.db, [])
    async with aiohttp.ClientSession() as session:
        registration = await register_with_cpo(
            f"{cpo.base_url}/ocpi/versions",
            "token-a-from-cpo",
            session=session,
            own_versions_url=f"{receiver.base_url}/ocpi/versions",
            own_party=Party("DE", "OIB"),
            token_store=tokens,
        )
    assert registration.party == Party("NL", "TNM")
    assert registration.outbound_token == "token-c-for-bridge"
    assert cpo.registered is not None
    # the token B we gave the CPO now authenticates it at our receiver
    caller = await tokens.authenticate(f"Token {cpo.registered['token']}")
    assert caller.party == Party("NL", "TNM")
    assert caller.registered
