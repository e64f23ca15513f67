"""Hubject misbehaves (the simulator's fault injection): the bridge keeps answering OCPI input with 1000,
``/ready`` goes 503 during an outage, pending depth and oldest-pending age grow in ``/metrics``, and once
Hubject behaves again the state converges with no manual step. Permanent refusals set aside only the
records Hubject names."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.cpo_sim.pusher import CpoPusher
from bridge.ocpi.versions import OcpiVersion
from oicp.ids import OperatorID
from oicp.simulator import FaultKind, Faults, HubjectSimulator, ServedSimulator, serve_simulator
from tests.bridge.conftest import wait_for
from tests.test_end_to_end import TOKEN, bridge_config, converge, mapped


def rate(**values: float | str) -> Callable[[Faults], None]:
    def apply(faults: Faults) -> None:
        for name, value in values.items():
            setattr(faults, name, value)

    return apply


def queued(kind: FaultKind, count: int, **values: float) -> Callable[[Faults], None]:
    def apply(faults: Faults) -> None:
        rate(**values)(faults)
        faults.queue.extend([kind] * count)

    return apply


def calm(faults: Faults) -> None:
    """Every fault off (the simulator's decider keeps this same object)."""
    for setting in dataclasses.fields(Faults):
        if setting.name not in ("seed", "queue"):
            setattr(faults, setting.name, setting.default)
    faults.queue.clear()


PROFILES = {
    "30% 5xx": rate(error_5xx_rate=0.3, error_5xx_status=503, retry_after=0.05),
    "429 bursts with Retry-After": queued(FaultKind.RATE_LIMIT, 4, retry_after=0.2),
    "hangs past the timeout": queued(FaultKind.HANG, 2),
    "connection resets": rate(drop_rate=0.3),
    "Result=false with a retryable code": rate(reject_rate=0.3, reject_code="001"),
}


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


def gauge(metrics: str, name: str) -> float:
    match = re.search(rf'^{name}{{operator_id="DE\*OBD"}} ([0-9.e+-]+)$', metrics, re.M)
    return float(match[1]) if match else 0.0


@pytest.fixture
async def hubject() -> AsyncIterator[ServedSimulator]:
    async with serve_simulator(HubjectSimulator(faults=Faults(seed=3))) as served:
        yield served


@pytest.fixture
async def bridge(tmp_path: Path, hubject: ServedSimulator) -> AsyncIterator[Bridge]:
    base = bridge_config(tmp_path, hubject, "rest").model_dump(mode="python")
    base["ocpi"]["receiver"]["tokens"] = [{"token": TOKEN, "country_code": "DE", "party_id": "OBD"}]
    base["admin"]["token"] = "admin"
    base["hubject"] |= {"timeout": 0.5, "connect_timeout": 0.5}
    base["push"] |= {"flush_interval": 0.05, "max_retry_interval": 0.2, "retry_budget": 0.5}
    config = BridgeConfig(**base)
    running = Bridge.build(config, initial_resync=False)
    async with running.running():
        yield running


@pytest.mark.parametrize("profile", list(PROFILES), ids=list(PROFILES))
async def test_fault_profile_keeps_intake_and_converges(
    bridge: Bridge, hubject: ServedSimulator, profile: str
) -> None:
    fleet = CpoFleet(seed=8, locations=5, evses_per_location=3, country_code="DE", party_id="OBD")
    PROFILES[profile](hubject.simulator.faults)
    async with aiohttp.ClientSession() as session:
        pusher = CpoPusher(fleet, OcpiVersion.V2_2_1, session)
        await pusher.discover(f"{bridge.receiver_url}/ocpi/versions", TOKEN)
        assert await pusher.push_all() == 5  # every request answered 1000 although Hubject misbehaves
        for _ in range(6):
            changes = fleet.step(5)
            assert await pusher.push_changes(changes) == len(changes)
    log = hubject.simulator.request_log

    async def pushes_met_faults_and_went_through() -> bool:
        pushes = [e for e in log if e.operation == "push"]
        return any(e.fault is not None for e in pushes) and any(e.result_code == "000" for e in pushes)

    await wait_for(pushes_met_faults_and_went_through, within=30)
    # The faults also hit the pull the test reads Hubject with: end them, then the state converges by itself
    calm(hubject.simulator.faults)
    await converge(hubject, fleet, within=30)


async def test_outage_then_recovery_without_a_manual_step(bridge: Bridge, hubject: ServedSimulator) -> None:
    fleet = CpoFleet(seed=9, locations=4, evses_per_location=3, country_code="DE", party_id="OBD")
    faults = hubject.simulator.faults
    async with aiohttp.ClientSession() as session:
        admin = bridge.admin_url
        assert (await get(session, f"{admin}/ready"))[0] == 200
        faults.error_5xx_rate, faults.error_5xx_status, faults.retry_after = 1.0, 503, 0.05  # Hubject down
        pusher = CpoPusher(fleet, OcpiVersion.V2_2_1, session)
        await pusher.discover(f"{bridge.receiver_url}/ocpi/versions", TOKEN)
        assert await pusher.push_all() == 4

        async def not_ready() -> bool:
            return (await get(session, f"{admin}/ready"))[0] == 503

        await wait_for(not_ready, within=15)
        _, first = await get(session, f"{admin}/metrics")
        changes = fleet.step(6)
        assert await pusher.push_changes(changes) == len(changes)  # intake goes on during the outage

        async def older() -> bool:
            _, now = await get(session, f"{admin}/metrics")
            return gauge(now, "oicp_bridge_oldest_pending_age_seconds") > gauge(
                first, "oicp_bridge_oldest_pending_age_seconds"
            )

        await wait_for(older, within=15)
        _, during = await get(session, f"{admin}/metrics")
        waiting = (await bridge.outbox.lane_status(OperatorID("DE*OBD"))).unacknowledged
        assert 0 < gauge(during, "oicp_bridge_pending_records") <= waiting
        assert gauge(during, "oicp_bridge_oldest_pending_age_seconds") > 0

        faults.error_5xx_rate = 0.0  # Hubject is back: nobody touches the bridge
        await converge(hubject, fleet, within=30)

        async def ready() -> bool:
            return (await get(session, f"{admin}/ready"))[0] == 200

        await wait_for(ready, within=15)
        _, after = await get(session, f"{admin}/metrics")
        assert gauge(after, "oicp_bridge_pending_records") == 0


async def test_permanent_refusals_set_aside_only_the_named_records(tmp_path: Path) -> None:
    fleet = CpoFleet(seed=10, locations=4, evses_per_location=3, country_code="DE", party_id="OBD")
    statuses = fleet.statuses_by_evse_id()
    bad = sorted(statuses)[:2]  # Hubject has no EVSE data for these two: it answers 603 naming them
    simulator = HubjectSimulator(known_evse_ids=[e for e in statuses if e not in bad])
    async with serve_simulator(simulator) as hubject:
        config = bridge_config(tmp_path, hubject, "rest")
        running = Bridge.build(config, initial_resync=False)
        async with running.running(), aiohttp.ClientSession() as session:
            pusher = CpoPusher(fleet, OcpiVersion.V2_2_1, session)
            await pusher.discover(f"{running.receiver_url}/ocpi/versions", TOKEN)
            await pusher.push_all()

            async def set_aside() -> bool:
                status = await running.admin.status()
                return {d["evse_id"] for d in status["dead_letters"]} == set(bad)

            await wait_for(set_aside, within=20)
        held = {str(k) for k in simulator.statuses("DE*OBD")}
        assert not held & set(bad)
        expected, _ = mapped(fleet)
        assert {str(k) for k in expected} - set(bad) <= held
