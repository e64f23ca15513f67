"""Benchmark 6 — EVSE data fullLoad: 100 k EvseDataRecords pushed as one streamed eRoamingPushEvseData.

The store is filled with 100 k EVSE data outbox rows first (through the outbox's own row step,
``DataOutboxStore.observe``). The measured side is a child process holding only what a data fullLoad needs
(store, REST client, the data lane) and running ``DataLanes.resync`` — the request body streamed from one
snapshot, page by page, the records never parsed — against the simulator in a process of its own; the child
reports the seconds and its peak RSS (``ru_maxrss``). The baseline, in the same run: plain aiohttp POSTing
the same fullLoad, serialised beforehand, to the same simulator (both include the simulator's OpenAPI
validation and apply). Targets (issue 14): < 15 s and < 500 MB peak RSS. Not measured: the re-mapping of
every stored EVSE the daemon does before each data fullLoad (``DataLanes.remap``; it needs OCPI Locations,
which this store does not have).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    OPERATOR,
    Json,
    Sizes,
    bridge_config,
    child_result,
    child_spec,
    evse_id,
    peak_rss_mb,
    ratio,
    rss_now_mb,
    run_child,
)
from bench.hubject import hubject_process

TARGET_SECONDS = 15.0
TARGET_RSS_MB = 500.0
HOTLINE = "+49301234567"
PLACEHOLDER = "DE*OBD*E0000000"


def template() -> str:
    """A typical mapped record (the mandatory fields and a few optional ones) as canonical JSON."""
    from oicp.evse_data import EvseDataRecord

    record = EvseDataRecord.model_validate(
        {
            "EvseID": PLACEHOLDER,
            "ChargingPoolID": "DE*OBD*P1",
            "ChargingStationNames": [{"lang": "en", "value": "Bench station, Berlin"}],
            "Address": {
                "Country": "DEU",
                "City": "Berlin",
                "Street": "Hauptstraße",
                "PostalCode": "10115",
                "HouseNum": "12",
                "TimeZone": "UTC+01:00",
            },
            "GeoCoordinates": {"DecimalDegree": {"Latitude": "52.520008", "Longitude": "13.404954"}},
            "Plugs": ["Type 2 Outlet"],
            "ChargingFacilities": [{"PowerType": "AC_3_PHASE", "Power": 22, "Voltage": 400, "Amperage": 32}],
            "RenewableEnergy": False,
            "CalibrationLawDataAvailability": "Not Available",
            "AuthenticationModes": ["NFC RFID Classic", "REMOTE"],
            "PaymentOptions": ["Contract"],
            "ValueAddedServices": ["None"],
            "Accessibility": "Free publicly accessible",
            "AccessibilityLocation": "OnStreet",
            "HotlinePhoneNumber": HOTLINE,
            "IsOpen24Hours": True,
            "IsHubjectCompatible": True,
            "DynamicInfoAvailable": "true",
        }
    )
    return record.canonical_json()


def data_evse_id(number: int) -> str:
    return evse_id(number)


async def seed(path: Path, evses: int, chunk: int = 5_000) -> None:
    """``evses`` EVSE data rows, pending (as after the first mapping of a fresh store)."""
    from bridge.evse_data.decide import DataDesired
    from bridge.mapping import Action
    from bridge.store.database import Database
    from bridge.store.evse_data import DataOutboxStore
    from bridge.store.schema import MIGRATIONS

    text = template()
    db = Database(path, MIGRATIONS)
    store = DataOutboxStore(db)
    await db.open()
    try:
        for start in range(0, evses, chunk):

            def write(tx: Any, start: int = start) -> None:
                now = time.time()
                for n in range(start, min(evses, start + chunk)):
                    record = text.replace(PLACEHOLDER, data_evse_id(n))
                    digest = hashlib.sha256(record.encode()).hexdigest()
                    desired = DataDesired(Action.UPDATE, record, digest, f"DE/OBD/L{n // 10}/U{n}")
                    store.observe(tx, OPERATOR, data_evse_id(n), desired, now)

            await db.write(write)
    finally:
        await db.close()


async def child(spec: Json) -> Json:
    """In the child: a store, a client and the data lane; one timed data fullLoad."""
    from bridge.config import OperatorConfig
    from bridge.data_lane import DataLanes
    from bridge.dispatcher import Dispatcher
    from bridge.lanes import ResyncReason
    from bridge.store.database import Database
    from bridge.store.evse_data import DataOutboxStore
    from bridge.store.outbox import OutboxStore
    from bridge.store.schema import MIGRATIONS
    from oicp import OperatorID, RestClient

    config = bridge_config(Path(spec["store"]), spec["hubject_url"])
    operator = OperatorConfig(
        operator_id=OperatorID(OPERATOR),
        operator_name="OBD Charging",
        push_evse_data=True,
        hotline_phone_number=HOTLINE,
    )
    db = Database(config.store.sqlite_path, MIGRATIONS)
    await db.open()
    try:
        async with RestClient(config.client_settings()) as client:
            dispatcher = Dispatcher(OutboxStore(db), client, [operator], config.push, config.resync)
            lanes = DataLanes(DataOutboxStore(db), client, [operator], config.push, config.resync, dispatcher)
            rss_before = rss_now_mb()
            started = time.monotonic()
            outcome = await lanes.resync(
                lanes.lane(OPERATOR), force=True, reason=ResyncReason.REQUESTED, then_status=False
            )
            seconds = time.monotonic() - started
    finally:
        await db.close()
    return {
        "seconds": seconds,
        "result": outcome.result.value,
        "records": outcome.records,
        "ok": outcome.result.value == "done",
        "message": outcome.message,
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


async def baseline(hubject_url: str, evses: int) -> Json:
    """Plain aiohttp posting the same fullLoad, serialised before the clock starts."""
    text = template()
    records = ",".join(text.replace(PLACEHOLDER, data_evse_id(n)) for n in range(evses))
    head = {
        "ActionType": "fullLoad",
        "OperatorEvseData": {"OperatorID": OPERATOR, "OperatorName": "OBD Charging", "EvseDataRecord": []},
    }
    prefix, suffix = json.dumps(head).split("[]")
    body = (prefix + "[" + records + "]" + suffix).encode()
    url = f"{hubject_url}/evsepush/v23/operators/{OPERATOR.replace('*', '%2A')}/data-records"
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            answer = await response.json()
        seconds = time.monotonic() - started
    return {"seconds": seconds, "ok": bool(answer.get("Result")), "bytes": len(body)}


async def run(sizes: Sizes) -> Json:
    evses = sizes.data_fullload_evses
    with tempfile.TemporaryDirectory(prefix="bench-data-fullload-") as tmp:
        store = Path(tmp) / "bridge.db"
        seeding = time.monotonic()
        await seed(store, evses)
        seeded_s = time.monotonic() - seeding
        async with hubject_process() as (hubject_url, _):
            base = await baseline(hubject_url, evses)
            measured = await run_child(
                "bench.data_fullload", {"store": str(store), "hubject_url": hubject_url}
            )
            base_again = await baseline(hubject_url, evses)
    best_base = min(base["seconds"], base_again["seconds"])
    return {
        "benchmark": "data_fullload",
        "sizes": {"evses": evses},
        "seed_seconds": round(seeded_s, 2),
        "bridge": measured,
        "baseline": {"seconds": best_base, "runs": [base, base_again]},
        "ratio": ratio(measured["seconds"], best_base),
        "target": f"< {TARGET_SECONDS} s and < {TARGET_RSS_MB:.0f} MB peak RSS",
        "target_met": measured["ok"]
        and measured["records"] == evses
        and measured["seconds"] < TARGET_SECONDS
        and measured["peak_rss_mb"] < TARGET_RSS_MB,
    }


def summary(result: Json) -> str:
    m = result["bridge"]
    return (
        f"data_fullload: EVSE data fullLoad of {result['sizes']['evses']} records in {m['seconds']:.2f} s, "
        f"peak RSS {m['peak_rss_mb']} MB (before: {m['rss_before_mb']} MB) vs pre-serialised plain aiohttp "
        f"POST {result['baseline']['seconds']:.2f} s: ratio {result['ratio']:.2f} (target < 15 s, < 500 MB: "
        f"{'met' if result['target_met'] else 'NOT met'})"
    )


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_result(asyncio.run(child(child_spec())))
