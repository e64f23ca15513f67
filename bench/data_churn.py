"""Benchmark 7 — EVSE data churn: structural changes of 10 k EVSEs coalesce into few data requests.

A bridge (EVSE data push on) runs in this process with the Hubject simulator (``--require-evse-data``); the
store is filled with 1 000 Locations of 10 EVSEs through the intake and their data and status pushed. Then,
for ``data_churn_seconds``, connector PATCHes (``max_electric_power``: a field of the EvseDataRecord) hit
random EVSEs as fast as the intake takes them. Counted: the eRoamingPushEvseData requests from the first
change until Hubject holds every changed record. Target (issue 14): requests ≤ ceil(duration /
flush_interval) × ceil(changed / max_batch) + 1 — the outbox coalesces per EvseID, so the lane sends at most
one flush per interval, of at most ``max_batch`` records each. The same-run baseline is that bound itself
(``ratio`` = requests / bound); every record must also arrive (Hubject's data equals the last change).
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ADMIN_TOKEN, COUNTRY, CPO_TOKEN, OPERATOR, PARTY, Json, Sizes

EVSES_PER_LOCATION = 10
FLUSH_INTERVAL = 1.0
MAX_BATCH = 1000
HOTLINE = "+49301234567"


def _stamp(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1e6) % 1_000_000:06d}Z"


def _location(number: int, at: float) -> Json:
    evses = [
        {
            "uid": f"U{number}-{k}",
            "evse_id": f"{OPERATOR}*E{number}X{k}",
            "status": "AVAILABLE",
            "connectors": [
                {
                    "id": "1",
                    "standard": "IEC_62196_T2",
                    "format": "SOCKET",
                    "power_type": "AC_3_PHASE",
                    "max_voltage": 400,
                    "max_amperage": 32,
                    "max_electric_power": 22000,
                    "last_updated": _stamp(at),
                }
            ],
            "last_updated": _stamp(at),
        }
        for k in range(EVSES_PER_LOCATION)
    ]
    return {
        "country_code": COUNTRY,
        "party_id": PARTY,
        "id": f"L{number}",
        "publish": True,
        "name": f"Bench {number}",
        "address": "Hauptstraße 12",
        "city": "Berlin",
        "postal_code": "10115",
        "country": "DEU",
        "coordinates": {"latitude": "52.520008", "longitude": "13.404954"},
        "time_zone": "Europe/Berlin",
        "evses": evses,
        "last_updated": _stamp(at),
    }


async def run(sizes: Sizes) -> Json:
    from bridge.app import Bridge
    from bridge.config import BridgeConfig
    from bridge.ocpi.locations import ObjectPath
    from bridge.ocpi.versions import OcpiVersion
    from oicp.simulator import HubjectSimulator, serve_simulator

    locations = max(1, sizes.data_churn_evses // EVSES_PER_LOCATION)
    evses = locations * EVSES_PER_LOCATION
    simulator = HubjectSimulator(require_evse_data=True)
    rng = random.Random(14)
    with tempfile.TemporaryDirectory(prefix="bench-data-churn-") as tmp:
        async with serve_simulator(simulator) as hubject:
            config = BridgeConfig(
                store={"url": f"sqlite:///{Path(tmp) / 'bridge.db'}"},
                hubject={"url": hubject.url, "protocol": "rest", "timeout": 60},
                operators=[
                    {
                        "operator_id": OPERATOR,
                        "operator_name": "OBD Charging",
                        "push_evse_data": True,
                        "hotline_phone_number": HOTLINE,
                    }
                ],
                ocpi={
                    "receiver": {
                        "listen": "127.0.0.1:0",
                        "tokens": [{"token": CPO_TOKEN, "country_code": COUNTRY, "party_id": PARTY}],
                    }
                },
                push={
                    "flush_interval": FLUSH_INTERVAL,
                    "max_batch": MAX_BATCH,
                    "max_calls_per_minute": 100_000,
                },
                resync={"interval": 0, "data_interval": 0},
                admin={"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
            )
            bridge = Bridge.build(config, initial_resync=False)
            async with bridge.running():
                seeded_at = time.time() - 3600
                seeding = time.monotonic()
                for number in range(locations):
                    path = ObjectPath(COUNTRY, PARTY, f"L{number}")
                    await bridge.intake.put(OcpiVersion.V2_2_1, path, _location(number, seeded_at))
                await _until(lambda: simulator.evse_data.count() == evses and _statuses(simulator) == evses)
                seeded_s = time.monotonic() - seeding
                before = _data_requests(simulator)
                changed: dict[str, int] = {}
                started = time.monotonic()
                deadline = started + sizes.data_churn_seconds
                step = 0
                while time.monotonic() < deadline:
                    number, k = rng.randrange(locations), rng.randrange(EVSES_PER_LOCATION)
                    step += 1
                    watts = 1000 * rng.randrange(3, 22)
                    path = ObjectPath(COUNTRY, PARTY, f"L{number}", f"U{number}-{k}", "1")
                    body: dict[str, Any] = {"max_electric_power": watts, "last_updated": _stamp(time.time())}
                    await bridge.intake.patch(OcpiVersion.V2_2_1, path, body)
                    changed[f"{OPERATOR}*E{number}X{k}"] = watts // 1000
                    if step % 50 == 0:
                        await asyncio.sleep(0)  # let the lanes run between bursts, as a real receiver would
                churned_s = time.monotonic() - started
                await _until(lambda: _all_arrived(simulator, changed))
                duration = time.monotonic() - started
                requests = _data_requests(simulator) - before
    bound = math.ceil(duration / FLUSH_INTERVAL) * math.ceil(len(changed) / MAX_BATCH) + 1
    return {
        "benchmark": "data_churn",
        "sizes": {"evses": evses, "seconds": sizes.data_churn_seconds},
        "seed_seconds": round(seeded_s, 2),
        "bridge": {
            "changes": step,
            "changed_evses": len(changed),
            "churn_seconds": round(churned_s, 2),
            "seconds_until_all_arrived": round(duration, 2),
            "data_requests": requests,
            "answered_603": sum(1 for e in simulator.request_log if e.result_code == "603"),
        },
        "baseline": {
            "bound": bound,
            "formula": "ceil(duration / flush_interval) × ceil(changed / max_batch) + 1",
        },
        "ratio": round(requests / bound, 3),
        "target": "data requests ≤ the bound, every changed record at Hubject, no 603",
        "target_met": requests <= bound
        and _all_arrived(simulator, changed)
        and not any(e.result_code == "603" for e in simulator.request_log),
    }


def _data_requests(simulator: Any) -> int:
    return sum(1 for e in simulator.request_log if e.operation == "data-push")


def _statuses(simulator: Any) -> int:
    return len(simulator.statuses(OPERATOR))


def _all_arrived(simulator: Any, changed: dict[str, int]) -> bool:
    held = simulator.evse_data.records(OPERATOR)
    return all(
        (record := held.get(evse_id)) is not None and record["ChargingFacilities"][0]["Power"] == kw
        for evse_id, kw in changed.items()
    )


async def _until(check: Any, within: float = 600.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the bridge did not converge")
        await asyncio.sleep(0.05)


def summary(result: Json) -> str:
    m = result["bridge"]
    return (
        f"data_churn: {m['changes']} structural changes of {m['changed_evses']} EVSEs "
        f"in {m['churn_seconds']} s "
        f"→ {m['data_requests']} data requests (bound {result['baseline']['bound']}: "
        f"{'met' if result['target_met'] else 'NOT met'}), all at Hubject after "
        f"{m['seconds_until_all_arrived']} s, {m['answered_603']} answered 603"
    )


if __name__ == "__main__":
    sys.exit("run it with python -m bench data_churn")
