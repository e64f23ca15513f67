"""EVSE data end to end over real HTTP (issue 14): an OCPI CPO pushes to the bridge's receiver, the bridge
pushes EVSE data and status to a Hubject simulator that requires EVSE data (``--require-evse-data``: 603
for a status without data). After PUTs, status churn, a rename, a connector change, REMOVED and
``publish = false``, Hubject's data and status equal the mapped OCPI state for every EVSE, and the
simulator answered 603 zero times."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.evse_data import RecordSettings, map_evse
from bridge.mapping import DEFAULT_TABLE
from bridge.observation import OcpiEvseStatus
from bridge.ocpi.cpo_sim.pusher import authorization
from bridge.ocpi.v221 import models as v221
from bridge.ocpi.versions import OcpiVersion
from oicp.evse_data import EvseDataRecord
from oicp.models import EvseStatus
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator

TOKEN = "e2e-data-token"
OPERATOR = "DE*OBD"
HOTLINE = "+49301234567"


def data_config(tmp_path: Path, hubject: ServedSimulator, **extra: Any) -> BridgeConfig:
    values: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
        "hubject": {"url": hubject.url, "protocol": "rest", "timeout": 5},
        "operators": [
            {
                "operator_id": OPERATOR,
                "operator_name": "OBD Charging",
                "push_evse_data": True,
                "hotline_phone_number": HOTLINE,
            }
        ],
        "ocpi": {
            "receiver": {
                "listen": "127.0.0.1:0",
                "tokens": [{"token": TOKEN, "country_code": "DE", "party_id": "OBD"}],
            }
        },
        "push": {"flush_interval": 0.05, "max_retry_interval": 0.5},
        "resync": {"interval": 0, "data_interval": 0},
        "admin": {"listen": "127.0.0.1:0", "token": "admin"},
    }
    values.update(extra)
    return BridgeConfig(**values)


class Cpo:
    """A CPO's pushes to the bridge's OCPI 2.2.1 Locations receiver, with a moving clock."""

    def __init__(self, session: aiohttp.ClientSession, receiver_url: str, token: str = TOKEN) -> None:
        self.session = session
        self.token = token
        self.base = f"{receiver_url}/ocpi/2.2.1/locations/DE/OBD"
        self.moment = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def stamp(self) -> str:
        self.moment += timedelta(seconds=1)
        return self.moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    async def call(self, method: str, path: str, body: dict[str, Any]) -> None:
        headers = {"Authorization": authorization(self.token, OcpiVersion.V2_2_1)}
        async with self.session.request(method, self.base + path, json=body, headers=headers) as answer:
            envelope = await answer.json(content_type=None)
        assert answer.status < 300, envelope
        assert envelope["status_code"] == 1000, envelope

    def evse(self, uid: str, evse_id: str, status: str = "AVAILABLE", standard: str = "IEC_62196_T2") -> Any:
        return {
            "uid": uid,
            "evse_id": evse_id,
            "status": status,
            "capabilities": ["RFID_READER", "REMOTE_START_STOP_CAPABLE"],
            "connectors": [
                {
                    "id": "1",
                    "standard": standard,
                    "format": "SOCKET",
                    "power_type": "AC_3_PHASE",
                    "max_voltage": 400,
                    "max_amperage": 32,
                    "max_electric_power": 22000,
                    "last_updated": self.stamp(),
                }
            ],
            "last_updated": self.stamp(),
        }

    def location(self, location_id: str, evses: list[Any], *, name: str = "Station") -> Any:
        return {
            "country_code": "DE",
            "party_id": "OBD",
            "id": location_id,
            "publish": True,
            "name": name,
            "address": "Hauptstraße 12",
            "city": "Berlin",
            "postal_code": "10115",
            "country": "DEU",
            "coordinates": {"latitude": "52.520008", "longitude": "13.404954"},
            "time_zone": "Europe/Berlin",
            "parking_type": "ON_STREET",
            "evses": evses,
            "last_updated": self.stamp(),
        }


def expected_state(bridge: Bridge, documents: list[Any]) -> tuple[dict[str, Any], dict[str, EvseStatus]]:
    """What Hubject must hold: the mapped record and the mapped status of every pushable EVSE."""
    op = bridge.config.operators[0]
    settings = RecordSettings.of(HOTLINE, bridge.config.evse_data, op.evse_data)
    data: dict[str, Any] = {}
    statuses: dict[str, EvseStatus] = {}
    for document in documents:
        location = v221.Location.model_validate(document)
        for evse in location.evses or ():
            mapped = map_evse(location, evse, settings, at=datetime.now(UTC))
            if isinstance(mapped, EvseDataRecord):
                data[str(mapped.evse_id)] = json.loads(mapped.canonical_json())
                target = DEFAULT_TABLE[OcpiEvseStatus(evse.status)]
                assert isinstance(target, EvseStatus)
                statuses[str(mapped.evse_id)] = target
    return data, statuses


async def eventually(check: Callable[[], bool], what: Callable[[], str], within: float = 20.0) -> None:
    try:
        async with asyncio.timeout(within):
            while not check():  # noqa: ASYNC110 - polls a real system's observable state
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"never converged: {what()}")


@asynccontextmanager
async def running(config: BridgeConfig) -> AsyncIterator[Bridge]:
    bridge = Bridge.build(config, initial_resync=False)
    async with bridge.running():
        yield bridge


async def test_data_and_status_reach_hubject_without_a_single_603(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with serve_simulator(simulator) as hubject:
        async with running(data_config(tmp_path, hubject)) as bridge, aiohttp.ClientSession() as session:
            assert bridge.receiver_url is not None
            cpo = Cpo(session, bridge.receiver_url)
            # PUTs: two Locations, four EVSEs
            await cpo.call(
                "PUT",
                "/L1",
                cpo.location("L1", [cpo.evse("e1", "DE*OBD*E1"), cpo.evse("e2", "DE*OBD*E2")]),
            )
            await cpo.call(
                "PUT",
                "/L2",
                cpo.location("L2", [cpo.evse("e3", "DE*OBD*E3"), cpo.evse("e4", "DE*OBD*E4")]),
            )
            # status churn right away (the statuses wait for their data, never a 603)
            for status in ("CHARGING", "AVAILABLE", "BLOCKED", "CHARGING"):
                for uid in ("e1", "e2", "e4"):
                    location = "L1" if uid in ("e1", "e2") else "L2"
                    await cpo.call(
                        "PATCH", f"/{location}/{uid}", {"status": status, "last_updated": cpo.stamp()}
                    )
            await eventually(
                lambda: (
                    set(simulator.statuses(OPERATOR)) == {"DE*OBD*E1", "DE*OBD*E2", "DE*OBD*E3", "DE*OBD*E4"}
                ),
                lambda: f"statuses {simulator.statuses(OPERATOR)}",
            )
            # a rename: the old EvseID is withdrawn (status, then data), the new one inserted
            await cpo.call("PUT", "/L2/e3", cpo.evse("e3", "DE*OBD*E3B"))
            # a connector change: an update of the record
            await cpo.call("PATCH", "/L1/e1/1", {"max_electric_power": 11000, "last_updated": cpo.stamp()})
            # REMOVED through the status fast path
            await cpo.call("PATCH", "/L1/e2", {"status": "REMOVED", "last_updated": cpo.stamp()})
            # an unpublished Location: both its EVSEs withdrawn
            await cpo.call("PATCH", "/L2", {"publish": False, "last_updated": cpo.stamp()})

            documents: list[Any] = []
            for location_id in ("L1", "L2"):
                found = await bridge.ocpi_store.get_location("DE", "OBD", location_id)
                assert found is not None
                documents.append(found)
            data, statuses = expected_state(bridge, documents)
            assert set(data) == {"DE*OBD*E1"}

            def held_data() -> dict[str, Any]:
                return {str(k): v for k, v in simulator.evse_data.records(OPERATOR).items()}

            def converged() -> bool:
                held_status = {str(k): v for k, v in simulator.statuses(OPERATOR).items()}
                return held_data() == data and held_status == statuses

            await eventually(
                converged,
                lambda: (
                    f"data {sorted(held_data())} vs {sorted(data)}; "
                    f"status {simulator.statuses(OPERATOR)} vs {statuses}"
                ),
            )
        answered_603 = [e for e in simulator.request_log if e.result_code == "603"]
        assert answered_603 == []
        actions = [e.action_type for e in simulator.request_log if e.operation == "data-push"]
        assert "insert" in actions
        assert "update" in actions  # the connector change
        assert "delete" in actions  # rename, REMOVED, publish = false
