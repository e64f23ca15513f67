"""Benchmark 1 — intake: OCPI 2.2.1 EVSE status PATCHes per second through the whole receiver path.

The bridge runs as in production (``Bridge.running()``: token auth, validation, the durable SQLite
commit with the outbox row in the same transaction, the dispatcher pushing to the in-process Hubject
simulator). The baseline, measured in the same run with the same client and the same requests, is a bare
aiohttp handler that parses the JSON body and answers 200. The client runs in a process of its own.
Target: bridge ≥ 0.5 × baseline requests/s.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from bench.common import CPO_TOKEN, CpuClock, Json, Sizes, bridge_config, ratio, run_child
from bench.hubject import hubject_process
from bridge.app import Bridge
from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.cpo_sim.pusher import authorization
from bridge.ocpi.versions import OcpiVersion

EVSES_PER_LOCATION = 4
PATH = "/ocpi/2.2.1/locations/{cc}/{pid}/{location_id}/{evse_uid}"


def fleet(locations: int) -> CpoFleet:
    return CpoFleet(seed=1, locations=locations, evses_per_location=EVSES_PER_LOCATION)


def targets(cpo: CpoFleet) -> list[list[str]]:
    return [[location.id, evse.uid] for location in cpo.locations() for evse in location.evses]


@asynccontextmanager
async def bare_server() -> AsyncIterator[str]:
    """The baseline: parse the same JSON, answer 200."""

    async def handler(request: web.Request) -> web.Response:
        await request.json()
        return web.json_response({"status_code": 1000})

    app = web.Application()
    app.router.add_patch(PATH, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def run(sizes: Sizes) -> Json:
    """Alternate baseline and bridge rounds (other load on the machine hits both alike); report the
    median round of each and the median of the per-round ratios."""
    cpo = fleet(sizes.intake_locations)
    load: Json = {
        "targets": targets(cpo),
        "requests": sizes.intake_requests,
        "concurrency": sizes.intake_concurrency,
    }
    rounds: list[tuple[Json, Json]] = []
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        async with hubject_process() as (hubject_url, _), bare_server() as bare_url:
            bridge = Bridge.build(bridge_config(Path(tmp) / "bridge.db", hubject_url), initial_resync=False)
            async with bridge.running():
                puts = [[loc.id, cpo.location_json(loc, OcpiVersion.V2_2_1)] for loc in cpo.locations()]
                for number in range(sizes.intake_rounds):
                    before = CpuClock()
                    baseline = await run_child(
                        "bench.loadgen",
                        {**load, "base": f"{bare_url}/ocpi/2.2.1/locations/DE/OBD", "token": None},
                    )
                    between = CpuClock()
                    measured = await run_child(
                        "bench.loadgen",
                        {
                            **load,
                            "base": f"{bridge.receiver_url}/ocpi/2.2.1/locations/DE/OBD",
                            "token": authorization(CPO_TOKEN, OcpiVersion.V2_2_1),
                            "puts": puts if number == 0 else [],
                            "offset": number * sizes.intake_requests,
                        },
                    )
                    after = CpuClock()
                    baseline["cpu_ms_per_request"] = between.since(before, sizes.intake_requests)
                    measured["cpu_ms_per_request"] = after.since(between, sizes.intake_requests)
                    for side in (baseline, measured):
                        side.pop("probe_answers", None)
                        side.pop("started_at", None)
                    rounds.append((baseline, measured))
                commits, writes = bridge.db.commits, bridge.db.writes
    ratios = [ratio(m["per_second"], b["per_second"]) for b, m in rounds]
    value = _median(ratios)
    pick = sorted(range(len(rounds)), key=lambda i: ratios[i])[len(rounds) // 2]
    baseline, measured = rounds[pick]
    errors = sum(m["errors"] for _, m in rounds)
    return {
        "benchmark": "intake",
        "sizes": {
            "requests_per_round": sizes.intake_requests,
            "rounds": sizes.intake_rounds,
            "concurrency": sizes.intake_concurrency,
            "evses": len(load["targets"]),
        },
        "bridge": measured,
        "baseline": baseline,
        "ratio": value,
        "round_ratios": ratios,
        "errors": errors,
        "group_commit": {"commits": commits, "writes": writes},
        "target": "bridge ≥ 0.5 × baseline requests/s",
        "target_met": value >= 0.5 and errors == 0,
    }


def summary(result: Json) -> str:
    b, m = result["baseline"], result["bridge"]
    return (
        f"intake: bridge {m['per_second']:.0f} req/s (p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms, "
        f"errors {result['errors']}) vs bare aiohttp {b['per_second']:.0f} req/s (p50 {b['p50_ms']:.1f} ms, "
        f"p99 {b['p99_ms']:.1f} ms): median ratio of {len(result['round_ratios'])} rounds "
        f"{result['ratio']:.2f} (target ≥ 0.5: "
        f"{'met' if result['target_met'] else 'NOT met'})"
    )
