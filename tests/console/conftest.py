"""Fixtures for the console tests: a whole bridge in-process (real sockets, real SQLite, the Hubject
simulator), a polled CPO sender, and a scrape parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.cpo_sim.pusher import CpoPusher
from bridge.ocpi.versions import OcpiVersion
from oicp.simulator import ServedSimulator
from oicp.simulator.faults import FaultKind

CPO_TOKEN = "console-cpo-token-4e7a"
ADMIN_TOKEN = "console-admin-token-81f2"
OPERATOR = "DE*OBD"


def config(tmp_path: Path, served: ServedSimulator, **sections: Any) -> BridgeConfig:
    values: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
        "hubject": {"url": served.url, "timeout": 2},
        "operators": [{"operator_id": OPERATOR, "operator_name": "OBD Charging"}],
        "ocpi": {
            "receiver": {
                "listen": "127.0.0.1:0",
                "tokens": [{"token": CPO_TOKEN, "country_code": "DE", "party_id": "OBD"}],
            }
        },
        "push": {"flush_interval": 0.05, "max_retry_interval": 0.5, "retry_budget": 1.0},
        "resync": {"interval": 0},
        "admin": {"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
    }
    values.update(sections)
    return BridgeConfig(**values)


@asynccontextmanager
async def running(cfg: BridgeConfig, *, sample_interval: float | None = None) -> AsyncIterator[Bridge]:
    bridge = Bridge.build(cfg, initial_resync=False)
    if sample_interval is not None:
        bridge.admin.history.interval = sample_interval
    async with bridge.running():
        yield bridge


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[tuple[str, web.AppRunner]]:
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", runner
    finally:
        await runner.cleanup()


async def push_fleet(bridge: Bridge, fleet: CpoFleet) -> None:
    async with aiohttp.ClientSession() as session:
        pusher = CpoPusher(fleet, OcpiVersion.V2_2_1, session)
        await pusher.discover(f"{bridge.receiver_url}/ocpi/versions", CPO_TOKEN)
        await pusher.push_all()


def small_fleet(locations: int = 1, evses: int = 3) -> CpoFleet:
    return CpoFleet(seed=3, locations=locations, evses_per_location=evses, country_code="DE", party_id="OBD")


def one_dead_letter_next(served: ServedSimulator, code: str = "604") -> None:
    """The next batch of three is refused with ``code`` naming nobody; bisected, its first record is refused
    again alone while the other two are accepted: that record is dead (bridge.dispatcher, set-aside)."""
    served.simulator.faults.reject_code = code
    served.simulator.faults.queue.extend([FaultKind.REJECT, FaultKind.REJECT])


async def scrape(bridge: Bridge) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One real scrape of ``/metrics``: {(sample name, sorted labels): value}."""
    async with aiohttp.ClientSession() as session, session.get(f"{bridge.admin_url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def status_json(bridge: Bridge) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{bridge.admin_url}/status.json") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body
