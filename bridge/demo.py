"""``oicp-bridge demo``: the whole bridge, embedded, with nothing to set up.

A temporary SQLite store, the built-in Hubject simulator and a simulated CPO on loopback ports. The CPO
registers nothing and uses a pre-shared token: it PUTs its locations to the bridge's OCPI 2.2.1 receiver,
then PATCHes EVSE status changes for a while (one burst runs through a simulated Hubject outage). EVSE data
push is on and the simulator requires EVSE data (a status without data is refused 603, as Hubject does):
the bridge pushes every EVSE's EvseDataRecord before its status. The demo shows progress, then pulls
Hubject's state from the simulator as an EMP would and says whether its status equals the OCPI state
mapped by the table (docs/mapping.md) and its EVSE data the mapped records (docs/evse-data.md). Exit status
0 when both do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.evse_data import RecordSettings, map_evse
from bridge.logs import configure_logging
from bridge.mapping import DEFAULT_TABLE, Withdrawal
from bridge.observation import OcpiEvseStatus
from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.cpo_sim.pusher import CpoPusher
from bridge.ocpi.v221 import models as v221
from bridge.ocpi.versions import OcpiVersion
from oicp import ClientSettings, RestClient
from oicp.evse_data import EvseDataRecord
from oicp.ids import EvseID, OperatorID, ProviderID
from oicp.models import EvseStatus
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator

HELP = "run everything embedded (store, Hubject simulator, simulated CPO) and show that Hubject converges"
TOKEN = "demo-cpo-token"
OPERATOR = OperatorID("DE*OBD")
HOTLINE = "+49 30 1234567"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--locations", type=int, default=20, help="locations of the simulated CPO")
    parser.add_argument("--evses", type=int, default=4, help="EVSEs per location")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of status changes")
    parser.add_argument("--seed", type=int, default=2026, help="RNG seed: the same seed gives the same run")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def demo_config(folder: Path, hubject: ServedSimulator) -> BridgeConfig:
    return BridgeConfig(
        store={"url": f"sqlite:///{folder / 'bridge.db'}"},
        hubject={"url": hubject.url, "timeout": 5},
        operators=[
            {
                "operator_id": str(OPERATOR),
                "operator_name": "OBD Charging (demo)",
                "push_evse_data": True,
                "hotline_phone_number": HOTLINE,
            }
        ],
        ocpi={
            "receiver": {
                "listen": "127.0.0.1:0",
                "tokens": [{"token": TOKEN, "country_code": "DE", "party_id": "OBD"}],
            }
        },
        push={"flush_interval": 0.25, "max_retry_interval": 1.0, "retry_budget": 2.0},
        resync={"interval": 0, "data_interval": 0},
        admin={"listen": "127.0.0.1:0"},
    )


def expected_state(fleet: CpoFleet) -> tuple[dict[EvseID, EvseStatus], set[EvseID]]:
    """Hubject's state per the mapping table, and EVSEs whose status maps to 'skip' (Hubject keeps its)."""
    expected: dict[EvseID, EvseStatus] = {}
    skipped: set[EvseID] = set()
    for evse_id, status in fleet.statuses_by_evse_id().items():
        target = DEFAULT_TABLE[OcpiEvseStatus(status)]
        if isinstance(target, EvseStatus):
            expected[EvseID(evse_id)] = target
        elif target is Withdrawal.SKIP:
            skipped.add(EvseID(evse_id))
    return expected, skipped


async def pull(hubject: ServedSimulator) -> dict[EvseID, EvseStatus]:
    async with RestClient(ClientSettings(url=hubject.url)) as emp:
        return await emp.pull_evse_status(ProviderID("DE-DMO"), operator_ids=[OPERATOR])


async def run_demo(args: argparse.Namespace) -> bool:
    def say(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="oicp-bridge-demo-") as folder:
        async with serve_simulator(HubjectSimulator(require_evse_data=True)) as hubject:
            bridge = Bridge.build(demo_config(Path(folder), hubject), initial_resync=False)
            async with bridge.running():
                say(f"Hubject simulator  {hubject.url}")
                say(
                    f"bridge OCPI        {bridge.receiver_url}/ocpi/versions"
                    f"   admin {bridge.admin_url}/status"
                )
                say(f"store              {folder}/bridge.db")
                fleet = CpoFleet(
                    seed=args.seed, locations=args.locations, evses_per_location=args.evses, party_id="OBD"
                )
                async with aiohttp.ClientSession() as session:
                    pusher = CpoPusher(fleet, OcpiVersion.V2_2_1, session)
                    await pusher.discover(f"{bridge.receiver_url}/ocpi/versions", TOKEN)
                    await pusher.push_all()
                    say(f"CPO: PUT {args.locations} locations with {fleet.evse_count} EVSEs (OCPI 2.2.1)")
                    await _progress(bridge, hubject, say)
                    for round_number in range(1, args.rounds + 1):
                        if round_number == args.rounds // 2:
                            say("Hubject: simulated outage (every request answered 503) ...")
                            hubject.simulator.faults.error_5xx_status = 503
                            hubject.simulator.faults.retry_after = 0.3
                            hubject.simulator.faults.error_5xx_rate = 1.0
                        changes = fleet.step(max(1, fleet.evse_count // 4))
                        await pusher.push_changes(changes)
                        say(f"CPO: PATCHed {len(changes)} status changes (round {round_number})")
                        if hubject.simulator.faults.error_5xx_rate:
                            await asyncio.sleep(1.0)  # let the outage be seen: intake goes on, pushes wait
                            await _progress(bridge, hubject, say)
                            hubject.simulator.faults.error_5xx_rate = 0.0
                            say("Hubject: back")
                        await _progress(bridge, hubject, say)
                expected, skipped = expected_state(fleet)
                records = expected_data(bridge.config, fleet)
                held = await _converge(hubject, expected, skipped, records)
                data = _held_data(hubject, skipped)
            log = hubject.simulator.request_log
            pushes = sum(1 for e in log if e.operation == "push")
            data_pushes = sum(1 for e in log if e.operation == "data-push")
            refused_603 = sum(1 for e in log if e.result_code == "603")
    equal = {k: v for k, v in held.items() if k not in skipped} == expected
    data_equal = data == {k: v for k, v in records.items() if k not in skipped}
    counts: dict[str, int] = {}
    for status in expected.values():
        counts[status.value] = counts.get(status.value, 0) + 1
    print(
        f"Summary: {fleet.evse_count} EVSEs, {pushes} status and {data_pushes} EVSE data push requests "
        f"({refused_603} answered 603) in {time.monotonic() - started:.1f}s; "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f"; Hubject's state {'EQUALS' if equal else 'DIFFERS FROM'} the mapped OCPI state"
        + f"; Hubject's EVSE data {'EQUALS' if data_equal else 'DIFFERS FROM'} the mapped OCPI data.",
        flush=True,
    )
    return equal and data_equal


def expected_data(config: BridgeConfig, fleet: CpoFleet) -> dict[EvseID, dict[str, Any]]:
    """The EvseDataRecord of every pushable EVSE of the fleet (docs/evse-data.md), as wire JSON."""
    op = config.operators[0]
    settings = RecordSettings.of(HOTLINE, config.evse_data, op.evse_data)
    now = datetime.now(UTC)
    records: dict[EvseID, dict[str, Any]] = {}
    for sim_location in fleet.locations():
        location = v221.Location.model_validate(fleet.location_json(sim_location, OcpiVersion.V2_2_1))
        for evse in location.evses or ():
            mapped = map_evse(location, evse, settings, at=now)
            if isinstance(mapped, EvseDataRecord):
                records[mapped.evse_id] = json.loads(mapped.canonical_json())
    return records


def _held_data(hubject: ServedSimulator, skipped: set[EvseID]) -> dict[EvseID, dict[str, Any]]:
    held = hubject.simulator.evse_data.records(OPERATOR)
    return {k: v for k, v in held.items() if k not in skipped}


async def _progress(bridge: Bridge, hubject: ServedSimulator, say: Callable[[str], None]) -> None:
    """Wait (at most 3 s) for the records waiting to be pushed to drain, and show the numbers."""
    deadline = time.monotonic() + 3.0
    waiting = await _waiting(bridge)
    while waiting and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        waiting = await _waiting(bridge)
    held = len(hubject.simulator.statuses(OPERATOR))
    line = f"  bridge: {waiting} records waiting for Hubject; Hubject holds {held} EVSEs"
    retries = sum(1 for e in hubject.simulator.request_log if e.http_status and e.http_status >= 500)
    if retries:
        line += f" ({retries} requests answered 5xx so far, all retried)"
    say(line)


async def _waiting(bridge: Bridge) -> int:
    states = (await bridge.outbox.counts_by_state()).get(str(OPERATOR), {})
    waiting = states.get("pending", 0) + states.get("in_flight", 0)
    data = bridge.dispatcher.data
    if data is not None:
        waiting += (await data.store.lane_status(OPERATOR)).pending
    return waiting


async def _converge(
    hubject: ServedSimulator,
    expected: dict[EvseID, EvseStatus],
    skipped: set[EvseID],
    records: dict[EvseID, dict[str, Any]],
    within: float = 30.0,
) -> dict[EvseID, EvseStatus]:
    deadline = time.monotonic() + within
    wanted = {k: v for k, v in records.items() if k not in skipped}

    def done(held: dict[EvseID, EvseStatus]) -> bool:
        statuses = {k: v for k, v in held.items() if k not in skipped} == expected
        return statuses and _held_data(hubject, skipped) == wanted

    held = await pull(hubject)
    while not done(held) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        held = await pull(hubject)
    return held


def run(args: argparse.Namespace) -> int:
    configure_logging(json=False, level="WARNING")
    return 0 if asyncio.run(run_demo(args)) else 1
