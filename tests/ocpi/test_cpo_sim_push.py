"""End to end with the real receiver: the simulated CPO pushes (and registers), the bridge's store ends up
holding the simulated truth; and the bridge registers with the simulated CPO's credentials endpoint."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bridge.config import SourceConfig
from bridge.observation import OcpiEvseStatus
from bridge.ocpi.auth import Party, TokenStore
from bridge.ocpi.cpo_sim import PushError, SimulatedCpo
from bridge.ocpi.credentials_client import register_with_cpo
from bridge.ocpi.poller import PollError, SenderPoller
from bridge.ocpi.versions import OcpiVersion
from bridge.store.database import Database
from tests.ocpi.conftest import TOKENS, RecordingLocations, observations, start_receiver

COUNTRY, PARTY = "DE", "ALL"  # a party the receiver fixture has a pre-shared token for
TOKEN = TOKENS[(COUNTRY, PARTY)]


async def stored_statuses(db: Database) -> dict[str, OcpiEvseStatus]:
    """What the bridge's OCPI store believes, per EVSE uid."""

    def read(conn: sqlite3.Connection) -> dict[str, OcpiEvseStatus]:
        rows = conn.execute(
            "SELECT evse_uid, status FROM ocpi_evse WHERE country_code=? AND party_id=?", (COUNTRY, PARTY)
        )
        return {row[0]: OcpiEvseStatus(row[1]) for row in rows}

    return await db.read(read)


async def observed_statuses(db: Database) -> dict[str, OcpiEvseStatus]:
    """What reached the hand-off downstream: the latest observation per EVSE uid."""
    return {row["evse_uid"]: OcpiEvseStatus(row["status"]) for row in await observations(db)}


@pytest.fixture
async def receiver_url(store: RecordingLocations) -> AsyncIterator[str]:
    runner, base_url = await start_receiver(store)
    yield f"{base_url}/ocpi/versions"
    await runner.cleanup()


@pytest.mark.parametrize("version", list(OcpiVersion))
async def test_after_push_all_and_changes_the_receiver_holds_the_simulated_truth(
    version: OcpiVersion, receiver_url: str, db: Database
) -> None:
    sim = SimulatedCpo(
        seed=3, locations=25, evses_per_location=3, country_code=COUNTRY, party_id=PARTY, version=version
    )
    try:
        assert await sim.push_all(receiver_url, TOKEN) == 25
        assert await stored_statuses(db) == sim.current_statuses()
        for _ in range(5):
            changes = sim.step(15)
            assert await sim.push_changes(changes) == len(changes)
    finally:
        await sim.aclose()
    truth = sim.current_statuses()
    assert len(truth) == 75
    assert await stored_statuses(db) == truth
    assert await observed_statuses(db) == truth
    assert {row["evse_id"] for row in await observations(db)} == set(sim.statuses_by_evse_id())


async def test_push_with_a_wrong_token_is_refused(receiver_url: str) -> None:
    sim = SimulatedCpo(seed=1, locations=2, country_code=COUNTRY, party_id=PARTY)
    try:
        with pytest.raises(PushError, match="401"):
            await sim.push_all(receiver_url, "not-a-token")
    finally:
        await sim.aclose()


async def test_the_simulated_cpo_registers_with_the_receiver_then_pushes_with_the_new_token(
    receiver_url: str, db: Database
) -> None:
    # The receiver calls back the CPO's versions URL with token B during registration: serve it.
    sim = SimulatedCpo(
        seed=5, locations=4, country_code=COUNTRY, party_id=PARTY, tokens=["token-b-for-bridge"]
    )
    server = TestServer(sim.build_sender_app())
    await server.start_server()
    try:
        token_c = await sim.register(
            receiver_url,
            TOKEN,
            own_versions_url=str(server.make_url("/ocpi/versions")),
            own_token="token-b-for-bridge",
        )
        assert token_c != TOKEN
        assert await sim.push_all(receiver_url, token_c) == 4
    finally:
        await server.close()
        await sim.aclose()
    assert await stored_statuses(db) == sim.current_statuses()


async def test_the_bridge_registers_with_the_simulated_cpo_and_polls_with_token_c(
    db: Database, store: RecordingLocations
) -> None:
    sim = SimulatedCpo(
        seed=9, locations=12, country_code=COUNTRY, party_id=PARTY, registration_tokens=["token-a"]
    )
    server = TestServer(sim.build_sender_app())
    await server.start_server()
    versions_url = str(server.make_url("/ocpi/versions"))
    try:
        async with aiohttp.ClientSession() as session:
            registration = await register_with_cpo(
                versions_url,
                "token-a",
                session=session,
                own_versions_url="http://127.0.0.1:1/ocpi/versions",
                own_party=Party("ZZ", "OIB"),
                token_store=TokenStore(db, []),
            )
            # The CPO kept the bridge's credentials (token B, to call the bridge) and issued token C.
            assert sim.sender.auth.peer_token == registration.inbound_token
            assert registration.outbound_token == sim.sender.auth.issued_token
            assert registration.party == Party(COUNTRY, PARTY)

            source = SourceConfig(versions_url=versions_url, token=SecretStr(registration.outbound_token))
            poller = SenderPoller(source, store, db, session=session)
            result = await poller.poll_once()
            assert result.locations == 12

            used_up = SourceConfig(versions_url=versions_url, token=SecretStr("token-a"))
            with pytest.raises(PollError, match="401"):  # token A works once, for registration only
                await SenderPoller(used_up, store, db, session=session).poll_once()
    finally:
        await server.close()
        await sim.aclose()
    assert await stored_statuses(db) == sim.current_statuses()


async def test_receiver_fetches_a_missing_location_from_the_cpo_sender(
    db: Database, store: RecordingLocations
) -> None:
    """A PATCH for a Location the bridge never saw: the receiver's fetch_missing (the poller) GETs it."""
    sim = SimulatedCpo(seed=2, locations=3, country_code=COUNTRY, party_id=PARTY, tokens=["poll-token"])
    sender = TestServer(sim.build_sender_app())
    await sender.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            source = SourceConfig(
                versions_url=str(sender.make_url("/ocpi/versions")), token=SecretStr("poll-token")
            )
            poller = SenderPoller(source, store, db, session=session)
            runner, base_url = await start_receiver(store, fetch_missing=poller.fetch_location)
            try:
                changes = sim.step(1)
                await sim.push_all(f"{base_url}/ocpi/versions", TOKEN)  # discover only; then forget the PUTs:
                await db.write(lambda conn: conn.execute("DELETE FROM ocpi_location"))
                await db.write(lambda conn: conn.execute("DELETE FROM ocpi_evse"))
                assert await sim.push_changes(changes) == 1
            finally:
                await runner.cleanup()
    finally:
        await sender.close()
        await sim.aclose()
    assert await stored_statuses(db) == {
        uid: status
        for uid, status in sim.current_statuses().items()
        if uid.startswith(changes[0].location_id + "-")
    }
