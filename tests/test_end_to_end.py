"""The whole chain over real HTTP: simulated CPO -> bridge (receiver or poller, store, dispatcher) ->
Hubject simulator, for OCPI 2.1.1 and 2.2.1 push intake, for polling, over REST and SOAP. After the run,
what Hubject holds (read through the OICP pull) equals the mapped OCPI state for every EVSE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.mapping import DEFAULT_TABLE
from bridge.observation import OcpiEvseStatus
from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.cpo_sim.pusher import CpoPusher
from bridge.ocpi.cpo_sim.sender import CpoSender
from bridge.ocpi.versions import OcpiVersion
from oicp import ClientSettings, RestClient
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import EvseStatus
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator

TOKEN = "e2e-cpo-token"


def bridge_config(tmp_path: Path, hubject: ServedSimulator, protocol: str, **extra: Any) -> BridgeConfig:
    values: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
        "hubject": {"url": hubject.url, "protocol": protocol, "timeout": 5},
        "operators": [{"operator_id": "DE*OBD", "operator_name": "OBD Charging"}],
        "ocpi": {
            "receiver": {
                "listen": "127.0.0.1:0",
                "tokens": [{"token": TOKEN, "country_code": "DE", "party_id": "OBD"}],
            }
        },
        "push": {"flush_interval": 0.05, "max_retry_interval": 0.5},
        "resync": {"interval": 0},
        "admin": {"listen": "127.0.0.1:0", "token": "admin"},
    }
    values.update(extra)
    return BridgeConfig(**values)


def mapped(fleet: CpoFleet) -> tuple[dict[EvseID, EvseStatus], set[EvseID]]:
    """What Hubject must hold per the mapping table, and the EVSEs whose final status is 'skip' (PLANNED:
    nothing is pushed, so Hubject keeps whatever it had)."""
    expected: dict[EvseID, EvseStatus] = {}
    unsettled: set[EvseID] = set()
    for evse_id, status in fleet.statuses_by_evse_id().items():
        target = DEFAULT_TABLE[OcpiEvseStatus(status)]
        if isinstance(target, EvseStatus):
            expected[EvseID(evse_id)] = target
        elif target.value == "skip":
            unsettled.add(EvseID(evse_id))
    return expected, unsettled


async def hubject_holds(hubject: ServedSimulator) -> dict[EvseID, EvseStatus]:
    async with RestClient(ClientSettings(url=hubject.url)) as emp:
        return await emp.pull_evse_status(ProviderID("DE-EMP"), operator_ids=[OperatorID("DE*OBD")])


async def converge(hubject: ServedSimulator, fleet: CpoFleet, within: float = 20.0) -> None:
    expected, unsettled = mapped(fleet)
    held: dict[EvseID, EvseStatus] = {}
    try:
        async with asyncio.timeout(within):
            while True:
                held = await hubject_holds(hubject)
                if {k: v for k, v in held.items() if k not in unsettled} == expected:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        missing = {k: (v, held.get(k)) for k, v in expected.items() if held.get(k) != v}
        pytest.fail(f"Hubject never matched the OCPI state; differences (expected, held): {missing}")


@asynccontextmanager
async def running_bridge(config: BridgeConfig) -> AsyncIterator[Bridge]:
    bridge = Bridge.build(config, initial_resync=False)
    async with bridge.running():
        yield bridge


@pytest.mark.parametrize("protocol", ["rest", "soap"])
@pytest.mark.parametrize("version", [OcpiVersion.V2_1_1, OcpiVersion.V2_2_1])
async def test_cpo_pushing_ocpi_reaches_hubject(tmp_path: Path, version: OcpiVersion, protocol: str) -> None:
    async with serve_simulator(HubjectSimulator()) as hubject:
        async with running_bridge(bridge_config(tmp_path, hubject, protocol)) as bridge:
            fleet = CpoFleet(seed=7, locations=6, evses_per_location=4, country_code="DE", party_id="OBD")
            async with aiohttp.ClientSession() as session:
                pusher = CpoPusher(fleet, version, session)
                await pusher.discover(f"{bridge.receiver_url}/ocpi/versions", TOKEN)
                await pusher.push_all()
                for _ in range(5):
                    await pusher.push_changes(fleet.step(8))
            await converge(hubject, fleet)
        pushes = [e for e in hubject.simulator.request_log if e.operation == "push"]
        assert pushes, "nothing reached Hubject"
        assert hubject.simulator.max_in_flight_overall == 1  # OICP: pushes are sequential


async def test_polled_cpo_reaches_hubject_and_later_changes_follow(tmp_path: Path) -> None:
    fleet = CpoFleet(seed=3, locations=12, evses_per_location=3, country_code="DE", party_id="OBD")
    sender = CpoSender(fleet, versions=(OcpiVersion.V2_2_1,), tokens=[TOKEN], max_limit=5)
    async with serve_simulator(HubjectSimulator()) as hubject, _serve_app(sender.app()) as sender_url:
        sender.base_url = sender_url
        source = {
            "versions_url": f"{sender_url}/ocpi/versions",
            "token": TOKEN,
            "poll_interval": 0.2,
            "country_code": "DE",
            "party_id": "OBD",
        }
        config = bridge_config(
            tmp_path, hubject, "rest", ocpi={"receiver": {"listen": "127.0.0.1:0"}, "sources": [source]}
        )
        async with running_bridge(config) as bridge:
            await converge(hubject, fleet)
            fleet.step(15)  # the CPO changes; the next incremental poll brings it
            await converge(hubject, fleet)
            # a resync after a full OCPI re-fetch, as `oicp-bridge resync --refetch` asks for it
            requests_before = len(sender.stats.list_requests)
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{bridge.admin_url}/resync",
                    params={"refetch": "true"},
                    headers={"Authorization": "Bearer admin"},
                ) as response,
            ):
                body = await response.json()
            assert response.status == 200, body
            assert body["outcomes"][0]["result"] == "done"
            assert body["outcomes"][0]["records"] == len(hubject.simulator.statuses("DE*OBD"))
            refetch = sender.stats.list_requests[requests_before:]
            assert any(r[:2] == (0, None) for r in refetch)  # a full fetch: no date_from, from the first page
        assert any(e.action_type == "fullLoad" for e in hubject.simulator.request_log)


@asynccontextmanager
async def _serve_app(app: aiohttp.web.Application) -> AsyncIterator[str]:
    runner = aiohttp.web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
