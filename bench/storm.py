"""Benchmark 2 — coalescing storm: many status changes over 10 k EVSEs; how many Hubject requests, and
how long from the OCPI answer to Hubject's acknowledgement.

The bridge runs whole (``Bridge.running()``, flush_interval 1 s, max_batch 1000) against the Hubject
simulator in a process of its own. The 10 k EVSEs are PUT over OCPI first and pushed; then, at once:

- the load client (its own process) PATCHes one share of the EVSEs over HTTP as fast as the receiver
  answers, and changes each *probe* EVSE once every ``PROBE_INTERVAL`` s, noting when each change was
  answered;
- the bulk of the changes (the HTTP path cannot carry 1 M changes in a few minutes on two cores) goes
  straight into ``OutboxStore.accept`` through ``Database.write`` — the same transaction and outbox code
  that intake runs after validation — for the other share of the EVSEs, in chunks, two in flight.

When the bulk is in, the client is told to stop; the bridge drains. Reported: Hubject requests made
during the storm and drain against ``duration / flush_interval × ceil(evses / max_batch) + 1``, and, per
probe change, the delay from its OCPI answer to the acknowledgement of the first push carrying it (p50,
p99; target ≤ flush_interval + 200 ms). The baseline is the Hubject request count without coalescing
(one per change) and the flush interval itself for the delay.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    CPO_TOKEN,
    Json,
    Sizes,
    bridge_config,
    ocpi_datetime,
    percentile,
    ratio,
    run_child,
)
from bench.hubject import hubject_process
from bench.intake import fleet
from bridge.app import Bridge
from bridge.mapping import DEFAULT_TABLE
from bridge.observation import EvseObservation, OcpiEvseStatus
from bridge.ocpi.cpo_sim.pusher import authorization
from bridge.ocpi.store import parse_last_updated
from bridge.ocpi.versions import OcpiVersion
from oicp.models import EvseStatus

FLUSH_INTERVAL = 1.0
MAX_BATCH = 1000
PROBE_INTERVAL = 2.5
CHUNK = 500
STATUSES = (OcpiEvseStatus.CHARGING, OcpiEvseStatus.AVAILABLE)


async def wait_drained(bridge: Bridge, within: float) -> None:
    async with asyncio.timeout(within):
        while True:
            lane = next(iter(bridge.dispatcher.lanes.values()))
            status = await bridge.outbox.lane_status(lane.operator_id)
            if status.pending == 0 and not lane.busy:
                return
            await asyncio.sleep(0.05)


async def feed_bulk(bridge: Bridge, evses: list[tuple[str, str, str]], changes: int) -> float:
    """Put ``changes`` observations into the outbox, round-robin over ``evses``; returns the seconds."""
    intake = bridge.intake
    started = time.monotonic()
    semaphore = asyncio.Semaphore(2)
    tasks: list[asyncio.Task[None]] = []

    async def write(batch: list[EvseObservation]) -> None:
        try:
            await intake.apply_observations(batch)
        finally:
            semaphore.release()

    for start in range(0, changes, CHUNK):
        batch = []
        for i in range(start, min(changes, start + CHUNK)):
            location_id, uid, evse_id = evses[i % len(evses)]
            status = STATUSES[(i // len(evses)) % 2]
            at = parse_last_updated(ocpi_datetime(i), "bench")
            batch.append(EvseObservation("DE", "OBD", location_id, uid, evse_id, status, at, True))
        await semaphore.acquire()
        tasks.append(asyncio.create_task(write(batch)))
    await asyncio.gather(*tasks)
    return time.monotonic() - started


def delays(probe_answers: list[list[Any]], pushes: list[Json]) -> tuple[list[float], int]:
    """Per probe change: seconds from its OCPI answer to the ack of the first push carrying its status.

    A push acknowledged after the PATCH was sent counts, even if before the client read the answer: on a
    busy machine the load client can read its answer after Hubject's ack (delay 0 then). Matching only
    acks after the answer counted such a change as never pushed, or matched it to the push of the change
    after next (same status, 2 x probe_interval later). Each probe alternates two statuses, so a push
    acked after this PATCH was sent that carries its status is this change's (or a later one's).
    """
    by_evse: dict[str, list[tuple[float, str]]] = {}
    for push in sorted(pushes, key=lambda p: p["acked_at"]):
        if push["result"]:
            for evse_id, status in push["statuses"].items():
                by_evse.setdefault(evse_id, []).append((push["acked_at"], status))
    found, missing = [], 0
    for evse_id, ocpi_status, sent_at, answered_at in probe_answers:
        target = DEFAULT_TABLE[OcpiEvseStatus(ocpi_status)]
        wanted = target.value if isinstance(target, EvseStatus) else None
        match = next(
            (at for at, status in by_evse.get(evse_id, []) if at >= sent_at and status == wanted), None
        )
        if match is None:
            missing += 1
        else:
            found.append(max(0.0, match - answered_at))
    return found, missing


async def run(sizes: Sizes, store_url: str | None = None) -> Json:
    """``store_url``: the bridge's ``[store] url`` (default: a SQLite file; bench/pg_intake.py runs the
    storm on PostgreSQL too)."""
    cpo = fleet(max(1, sizes.storm_evses // 4))
    everything = [
        (location.id, evse.uid, evse.evse_id) for location in cpo.locations() for evse in location.evses
    ]
    seeded = {e: DEFAULT_TABLE[OcpiEvseStatus(s)] for e, s in cpo.statuses_by_evse_id().items()}
    # each probe's first change must change what Hubject holds: start with the status that differs
    probes = [
        [loc, uid, evse_id, int(seeded[evse_id] == DEFAULT_TABLE[STATUSES[0]])]
        for loc, uid, evse_id in everything[: sizes.storm_probes]
    ]
    rest = everything[sizes.storm_probes :]
    http_share, bulk_share = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        stop_file, started_file = Path(tmp) / "stop", Path(tmp) / "started"
        async with hubject_process() as (hubject_url, hubject_base), aiohttp.ClientSession() as session:
            config = bridge_config(
                Path(tmp) / "bridge.db", hubject_url, flush_interval=FLUSH_INTERVAL, max_batch=MAX_BATCH
            )
            if store_url is not None:
                config = config.model_copy(
                    update={"store": config.store.model_copy(update={"url": store_url})}
                )
            bridge = Bridge.build(config, initial_resync=False)
            async with bridge.running():
                base = f"{bridge.receiver_url}/ocpi/2.2.1/locations/DE/OBD"
                token = authorization(CPO_TOKEN, OcpiVersion.V2_2_1)
                puts = [[loc.id, cpo.location_json(loc, OcpiVersion.V2_2_1)] for loc in cpo.locations()]
                await run_child(
                    "bench.loadgen",
                    {"base": base, "token": token, "puts": puts, "targets": [], "requests": 0,
                     "concurrency": 1},
                )  # fmt: skip
                await wait_drained(bridge, 120)
                async with session.post(f"{hubject_base}/_bench/clear") as response:
                    response.raise_for_status()
                storm_start = time.monotonic()
                load = asyncio.create_task(  # noqa: RUF006 - awaited below
                    run_child(
                        "bench.loadgen",
                        {
                            "base": base,
                            "token": token,
                            "targets": [[loc, uid] for loc, uid, _ in http_share],
                            "requests": sizes.storm_changes,
                            "concurrency": 32,
                            "probes": probes,
                            "started_file": str(started_file),
                            "probe_interval": PROBE_INTERVAL,
                            "stop_file": str(stop_file),
                            "offset": 0,
                        },
                    )
                )
                bulk_changes = max(0, sizes.storm_changes - sizes.storm_changes // 50)
                async with asyncio.timeout(60):  # the bulk starts once the HTTP load is under way
                    while not started_file.exists() and not load.done():  # noqa: ASYNC110 - a file
                        await asyncio.sleep(0.02)
                bulk_seconds = await feed_bulk(bridge, bulk_share, bulk_changes)
                stop_file.touch()
                client = await load
                storm_end = time.monotonic()
                await wait_drained(bridge, 120)
                drained = time.monotonic()
            async with session.get(f"{hubject_base}/_bench/pushes") as response:
                pushes: list[Json] = await response.json()
    changes = bulk_changes + client["requests"] + len(client["probe_answers"])
    duration = storm_end - storm_start
    evses = len(everything)
    bound = math.floor(duration / FLUSH_INTERVAL * math.ceil(evses / MAX_BATCH) + 1)
    requests = len(pushes)
    found, missing = delays(client["probe_answers"], pushes)
    p99 = percentile(found, 99)
    delay_target = FLUSH_INTERVAL + 0.2
    return {
        "benchmark": "storm",
        "sizes": {"changes": changes, "evses": evses, "probes": len(probes)},
        "changes": {
            "total": changes,
            "bulk_into_outbox": bulk_changes,
            "http_patches": client["requests"],
            "http_probe_patches": len(client["probe_answers"]),
            "http_errors": client["errors"],
            "http_error_samples": client["error_samples"],
        },
        "duration_s": round(duration, 2),
        "drain_s": round(drained - storm_end, 2),
        "changes_per_second": round(changes / duration),
        "bulk_per_second": round(bulk_changes / bulk_seconds) if bulk_seconds else None,
        "http_per_second": round(client["per_second"]),
        "hubject_requests": requests,
        "records_pushed": sum(p["count"] for p in pushes),
        "hubject_request_bound": bound,
        "baseline_requests_without_coalescing": changes,
        "ratio": ratio(requests, bound),
        "coalescing_factor": round(changes / max(1, requests), 1),
        "delay_p50_s": round(percentile(found, 50), 3),
        "delay_p99_s": round(p99, 3),
        "delay_max_s": round(max(found, default=0.0), 3),
        "delay_samples": len(found),
        "probe_changes_never_seen_at_hubject": missing,
        "delay_ratio_to_flush_interval": ratio(p99, FLUSH_INTERVAL),
        "flush_interval_s": FLUSH_INTERVAL,
        "max_batch": MAX_BATCH,
        "target": f"requests ≤ bound; p99 delay ≤ {delay_target:.1f} s",
        "target_met": requests <= bound and p99 <= delay_target and missing == 0 and client["errors"] == 0,
    }


def summary(result: Json) -> str:
    return (
        f"storm: {result['changes']['total']} changes over {result['sizes']['evses']} EVSEs in "
        f"{result['duration_s']} s ({result['changes_per_second']}/s; {result['changes']['http_patches']} "
        f"over HTTP, {result['changes']['bulk_into_outbox']} straight into the outbox): "
        f"{result['hubject_requests']} Hubject requests vs bound {result['hubject_request_bound']} "
        f"(ratio {result['ratio']:.2f}; coalescing ×{result['coalescing_factor']}); delay OCPI answer → "
        f"Hubject ack p50 {result['delay_p50_s']} s, p99 {result['delay_p99_s']} s "
        f"({result['delay_samples']} probes, {result['probe_changes_never_seen_at_hubject']} unseen; "
        f"target ≤ {result['flush_interval_s'] + 0.2:.1f} s): {'met' if result['target_met'] else 'NOT met'}"
    )
