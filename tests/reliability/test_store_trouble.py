"""Store trouble: the disk is full, the database file is locked by another process, or it turned
read-only. The receiver must refuse new OCPI input with a retryable error (HTTP 503, OCPI 3000,
``Retry-After``), never answer 1000 for a change it could not commit, and take input again by itself once
the trouble is gone; what it accepted then reaches Hubject with no manual step.

The tests run as root in CI, where file permissions do not stop writes (so a read-only file cannot be
played without root tricks; it fails the same way, as a StoreError), and "disk full" is
played by SQLite itself on the bridge's own writer connection (``PRAGMA max_page_count`` caps the file at
its current size, exactly what SQLite reports when the disk is full: SQLITE_FULL; ``PRAGMA query_only``
makes every write fail as on a read-only file: SQLITE_READONLY). "Locked" is real: a second connection
holds the write lock, as a backup tool or a second bridge on the same file would.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.mapping import DEFAULT_TABLE
from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.cpo_sim.pusher import CpoPusher, authorization
from bridge.ocpi.versions import OcpiVersion
from oicp.models import EvseStatus
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator
from tests.bridge.conftest import wait_for
from tests.test_end_to_end import TOKEN, bridge_config, converge

V = OcpiVersion.V2_2_1


@dataclass
class Answer:
    http_status: int
    status_code: int
    retry_after: str | None


@pytest.fixture
async def hubject() -> AsyncIterator[ServedSimulator]:
    async with serve_simulator(HubjectSimulator()) as served:
        yield served


@pytest.fixture
async def bridge(tmp_path: Path, hubject: ServedSimulator) -> AsyncIterator[Bridge]:
    running = Bridge.build(bridge_config(tmp_path, hubject, "rest"), initial_resync=False)
    async with running.running():
        yield running


async def send(session: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any]) -> Answer:
    headers = {"Authorization": authorization(TOKEN, V)}
    async with session.request(method, url, json=body, headers=headers) as response:
        envelope = await response.json(content_type=None)
        return Answer(response.status, int(envelope["status_code"]), response.headers.get("Retry-After"))


def evse_rows(path: Path) -> dict[str, tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT evse_uid, status, last_updated_us FROM ocpi_evse").fetchall()
    finally:
        conn.close()
    return {uid: (status, lu) for uid, status, lu in rows}


async def writer_pragma(bridge: Bridge, pragma: str) -> None:
    """Run a PRAGMA on the bridge's own writer connection (the one every OCPI write goes through)."""
    await bridge.db.write(lambda conn: conn.execute(pragma).fetchall())


def refused_retryably(answer: Answer) -> None:
    assert (answer.http_status, answer.status_code) == (503, 3000), answer
    assert answer.retry_after is not None
    assert int(answer.retry_after) > 0


Trouble = Callable[[], Awaitable[None]]


async def run_trouble(bridge: Bridge, hubject: ServedSimulator, start: Trouble, end: Trouble) -> None:
    """Seed a fleet, make trouble, check refusals and the unchanged store, end it, check recovery."""
    fleet = CpoFleet(seed=4, locations=3, evses_per_location=2, country_code="DE", party_id="OBD")
    # a fourth Location the bridge has never seen (LOC1004, EvseIDs DE*OBD*E1004*n)
    more = CpoFleet(seed=5, locations=4, evses_per_location=2, country_code="DE", party_id="OBD")
    db_path = bridge.config.store.sqlite_path
    async with aiohttp.ClientSession() as session:
        pusher = CpoPusher(fleet, V, session)
        base = await pusher.discover(f"{bridge.receiver_url}/ocpi/versions", TOKEN)
        await pusher.push_all()
        await converge(hubject, fleet)
        before = evse_rows(db_path)

        await start()
        refused = fleet.step(4)
        answers = await asyncio.gather(  # concurrently: a locked file makes each group wait busy_timeout
            *(
                send(
                    session,
                    "PATCH",
                    f"{base}/DE/OBD/{c.location_id}/{c.evse_uid}",
                    CpoFleet.evse_patch_json(c),
                )
                for c in refused
            )
        )
        for answer in answers:
            refused_retryably(answer)
        # a new Location (new pages in the file: what a full disk refuses first)
        new = list(more.locations())[3]
        body = more.location_json(new, V)
        refused_retryably(await send(session, "PUT", f"{base}/DE/OBD/{new.id}", body))
        assert evse_rows(db_path) == before, "a refused request changed the store"
        status, _ = await _get(session, f"{bridge.admin_url}/health")
        assert status == 200  # the process lives on

        await end()  # the trouble is gone (space freed, lock released...)
        # the CPO sends again what was refused; the bridge takes it by itself
        for change in refused:
            url = f"{base}/DE/OBD/{change.location_id}/{change.evse_uid}"
            answer = await send(session, "PATCH", url, CpoFleet.evse_patch_json(change))
            assert (answer.http_status, answer.status_code) == (200, 1000), answer
        assert evse_rows(db_path) != before
        await converge(hubject, fleet)  # what was refused, then accepted, reached Hubject
        answer = await send(session, "PUT", f"{base}/DE/OBD/{new.id}", body)
        assert (answer.http_status, answer.status_code) == (201, 1000), answer

    async def new_location_pushed() -> bool:
        held = {str(k) for k in hubject.simulator.statuses("DE*OBD")}
        pushed = [e for e in new.evses if isinstance(DEFAULT_TABLE[e.status], EvseStatus)]
        return bool(pushed) and all(evse.evse_id in held for evse in pushed)

    await wait_for(new_location_pushed)


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def test_a_full_disk_refuses_input_retryably_and_recovers(
    bridge: Bridge, hubject: ServedSimulator
) -> None:
    (pages,) = await bridge.db.read(lambda conn: conn.execute("PRAGMA page_count").fetchone())

    async def disk_full() -> None:
        await writer_pragma(bridge, f"PRAGMA max_page_count = {pages}")

    async def space_freed() -> None:
        await writer_pragma(bridge, "PRAGMA max_page_count = 1073741823")

    await run_trouble(bridge, hubject, disk_full, space_freed)


@pytest.mark.slow  # each refused write waits the store's busy_timeout (10 s) before it is refused
async def test_a_locked_database_file_refuses_input_retryably_and_recovers(
    bridge: Bridge, hubject: ServedSimulator
) -> None:
    # Another process holds the write lock (a backup, a second bridge). Like a process of its own, the
    # connection waits for the lock on a thread of its own: run on the event loop, its wait would also
    # stop the bridge from finishing (and unlocking) the transaction it had open at that moment.
    other = sqlite3.connect(bridge.config.store.sqlite_path, isolation_level=None, check_same_thread=False)

    async def lock() -> None:
        await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")

    async def unlock() -> None:
        await asyncio.to_thread(other.execute, "COMMIT")

    try:
        await run_trouble(bridge, hubject, lock, unlock)
    finally:
        other.close()
