"""The rig of the core regression tests (issue 11): a bridge between an OCPI party and the Hubject stand-in,
driven only through its user-facing surfaces — the OCPI receiver (PUT/PATCH/GET with a pre-shared token),
the admin API (``/status.json``, ``/ready``, ``/metrics``, ``POST /resync``) and its configuration.

Nothing here imports the dispatcher, the store or the outbox: those are what the tests judge.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config import BridgeConfig
from tests.reliability.hubject_standin import HubjectStandIn

OPERATOR = "DE*OBD"
TOKEN = "core-rig-token-obd-4f1a"
OTHER_TOKEN = "core-rig-token-xyz-8b2c"
ADMIN_TOKEN = "core-rig-admin-6d0e"
OCPI_VERSION = "2.2.1"

# The OCPI status each OICP status is pushed from by default (docs/mapping.md, "Default table").
OICP_OF = {
    "AVAILABLE": "Available",
    "CHARGING": "Occupied",
    "BLOCKED": "Occupied",
    "OUTOFORDER": "OutOfService",
    "INOPERATIVE": "OutOfService",
    "RESERVED": "Reserved",
    "UNKNOWN": "Unknown",
}


# --- configuration --------------------------------------------------------------------------------------


def config_values(tmp_path: Path, standin: HubjectStandIn) -> dict[str, Any]:
    """A bridge on loopback ports for the stand-in: short flushes, timeouts and retries, no schedule."""
    return {
        "store": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
        "hubject": {"url": standin.url, "protocol": "rest", "timeout": 1.0, "connect_timeout": 1.0},
        "operators": [{"operator_id": OPERATOR, "operator_name": "OBD Charging"}],
        "ocpi": {
            "receiver": {
                "listen": "127.0.0.1:0",
                "tokens": [
                    {"token": TOKEN, "country_code": "DE", "party_id": "OBD"},
                    {"token": OTHER_TOKEN, "country_code": "DE", "party_id": "XYZ"},
                ],
            }
        },
        "push": {
            "flush_interval": 0.05,
            "max_retry_interval": 0.2,
            "retry_budget": 1.0,
            "shutdown_timeout": 2,
        },
        "resync": {"interval": 0},
        "admin": {"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
    }


def merged(values: dict[str, Any], **sections: dict[str, Any] | list[Any]) -> dict[str, Any]:
    """``values`` with each given section's keys laid over it (lists replace)."""
    out = dict(values)
    for name, section in sections.items():
        current = out.get(name)
        out[name] = (
            {**current, **section} if isinstance(current, dict) and isinstance(section, dict) else section
        )
    return out


@asynccontextmanager
async def running_bridge(values: dict[str, Any], **build: Any) -> AsyncIterator[Bridge]:
    """``Bridge.build`` from ``values`` (as a TOML file would give them), started; stopped on exit."""
    bridge = Bridge.build(BridgeConfig(**values), **build)
    async with bridge.running():
        yield bridge


# --- OCPI: one party pushing Locations (mod_locations receiver interface, OCPI 2.2.1) ---------------------


def ocpi_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Stamps:
    """Strictly increasing OCPI ``last_updated`` values near the real clock (``offset`` shifts them)."""

    def __init__(self, offset: timedelta = timedelta()) -> None:
        self.offset = offset
        self._last = datetime.min.replace(tzinfo=UTC)

    def next(self) -> datetime:
        now = datetime.now(UTC) + self.offset
        self._last = max(now, self._last + timedelta(milliseconds=1))
        return self._last


def evse(uid: str, evse_id: str | None, status: str, last_updated: datetime) -> dict[str, Any]:
    body: dict[str, Any] = {"uid": uid, "status": status}
    if evse_id is not None:
        body["evse_id"] = evse_id
    body["connectors"] = [
        {
            "id": "1",
            "standard": "IEC_62196_T2",
            "format": "SOCKET",
            "power_type": "AC_3_PHASE",
            "max_voltage": 400,
            "max_amperage": 32,
            "last_updated": ocpi_time(last_updated),
        }
    ]
    body["last_updated"] = ocpi_time(last_updated)
    return body


@dataclass(frozen=True)
class Reply:
    http_status: int
    status_code: int | None
    message: str | None
    data: Any

    @property
    def accepted(self) -> bool:
        return self.http_status < 300 and self.status_code is not None and 1000 <= self.status_code < 2000


class Party:
    """An OCPI CPO party with a pre-shared token, writing to the bridge's Locations receiver."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        receiver_url: str,
        token: str = TOKEN,
        country_code: str = "DE",
        party_id: str = "OBD",
    ) -> None:
        self.session = session
        self.country_code, self.party_id = country_code, party_id
        self.base = f"{receiver_url}/ocpi/{OCPI_VERSION}/locations/{country_code}/{party_id}"
        # OCPI 2.2.1 transport_and_format, Authorization: the token base64-encoded
        self.headers = {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Reply:
        async with self.session.request(
            method, self.base + path, json=body, headers=self.headers
        ) as response:
            try:
                envelope = await response.json(content_type=None)
            except ValueError:
                envelope = None
            if not isinstance(envelope, dict):
                return Reply(response.status, None, await response.text(), None)
            return Reply(
                response.status,
                envelope.get("status_code"),
                envelope.get("status_message"),
                envelope.get("data"),
            )

    def location(
        self, location_id: str, evses: list[dict[str, Any]], last_updated: datetime
    ) -> dict[str, Any]:
        return {
            "country_code": self.country_code,
            "party_id": self.party_id,
            "id": location_id,
            "publish": True,
            "name": f"Location {location_id}",
            "address": "Hauptstraße 1",
            "city": "Berlin",
            "postal_code": "10115",
            "country": "DEU",
            "coordinates": {"latitude": "52.520008", "longitude": "13.404954"},
            "parking_type": "ON_STREET",
            "evses": evses,
            "time_zone": "Europe/Berlin",
            "last_updated": ocpi_time(last_updated),
        }

    async def put_location(
        self, location_id: str, evses: list[dict[str, Any]], last_updated: datetime
    ) -> Reply:
        return await self._call("PUT", f"/{location_id}", self.location(location_id, evses, last_updated))

    async def put_evse(self, location_id: str, body: dict[str, Any]) -> Reply:
        return await self._call("PUT", f"/{location_id}/{body['uid']}", body)

    async def patch_evse(self, location_id: str, uid: str, status: str, last_updated: datetime) -> Reply:
        body = {"status": status, "last_updated": ocpi_time(last_updated)}
        return await self._call("PATCH", f"/{location_id}/{uid}", body)

    async def get(self, location_id: str, uid: str | None = None) -> Reply:
        return await self._call("GET", f"/{location_id}" + (f"/{uid}" if uid else ""))


async def accepted(reply: Awaitable[Reply]) -> Reply:
    """Await an OCPI write and require OCPI success (1xxx)."""
    result = await reply
    assert result.accepted, f"the bridge refused a valid OCPI request: {result}"
    return result


# --- admin -------------------------------------------------------------------------------------------------


class Admin:
    def __init__(self, session: aiohttp.ClientSession, admin_url: str, token: str = ADMIN_TOKEN) -> None:
        self.session, self.url, self.token = session, admin_url, token

    async def status(self) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/status.json") as response:
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    async def ready(self) -> int:
        async with self.session.get(f"{self.url}/ready") as response:
            return response.status

    async def metrics(self) -> str:
        async with self.session.get(f"{self.url}/metrics") as response:
            return await response.text()

    async def resync(self, *, force: bool = False) -> tuple[int, dict[str, Any]]:
        params = {"force": "1"} if force else {}
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.post(f"{self.url}/resync", params=params, headers=headers) as response:
            return response.status, await response.json()

    async def dead(self) -> set[str]:
        """EvseIDs the status page lists as set aside (dead letters or parked)."""
        return {entry["evse_id"] for entry in (await self.status())["dead_letters"]}

    async def dead_has(self, evse_id: str) -> bool:
        return evse_id in await self.dead()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus sample over every series whose labels include ``labels``."""
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(?:{{(?P<labels>[^}}]*)}})? (?P<value>\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match["value"])
    return total


# --- waiting on the real system ------------------------------------------------------------------------


async def wait_until(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    within: float,
    what: str,
    seen: Callable[[], object] | None = None,
) -> None:
    """Poll ``condition`` until it holds; after ``within`` seconds fail saying ``what`` never happened and
    what was ``seen`` instead."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            detail = f"; instead: {seen()}" if seen is not None else ""
            pytest.fail(f"within {within:g} s, never: {what}{detail}")
        await asyncio.sleep(0.02)


async def hold_for(
    seconds: float,
    invariant: Callable[[], Awaitable[str | None]] | Callable[[], str | None],
) -> None:
    """For ``seconds`` (the scenario's observation window), check ``invariant`` repeatedly: it returns None
    while the rule holds, else a message, and the test fails at once with it."""
    deadline = time.monotonic() + seconds
    while True:
        problem = invariant()
        if problem is not None and not isinstance(problem, str):
            problem = await problem
        if problem is not None:
            pytest.fail(problem)
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.05)


class Sentinel:
    """An EVSE of the operator on a Location of its own. ``barrier()`` changes its status twice, each time
    waiting until Hubject holds it: the lane is sequential per operator, so after the second one every
    change that was pending before the barrier has been pushed (or settled otherwise)."""

    LOCATION, UID = "SENTINEL", "SENTINEL-1"
    EVSE_ID = "DE*OBD*ESENTINEL"
    CYCLE = ("AVAILABLE", "CHARGING")

    def __init__(self, party: Party, standin: HubjectStandIn, stamps: Stamps) -> None:
        self.party, self.standin, self.stamps = party, standin, stamps
        self.turn = 0
        self.placed = False

    async def barrier(self, within: float = 10.0) -> None:
        for _ in range(2):
            status = self.CYCLE[self.turn % 2]
            self.turn += 1
            moment = self.stamps.next()
            if not self.placed:
                await accepted(
                    self.party.put_location(
                        self.LOCATION, [evse(self.UID, self.EVSE_ID, status, moment)], moment
                    )
                )
                self.placed = True
            else:
                await accepted(self.party.patch_evse(self.LOCATION, self.UID, status, moment))
            expected = OICP_OF[status]
            await wait_until(
                lambda expected=expected: self.standin.held(OPERATOR).get(self.EVSE_ID) == expected,
                within=within,
                what=f"the sentinel reached Hubject as {expected}",
                seen=lambda: self.standin.held(OPERATOR).get(self.EVSE_ID),
            )
