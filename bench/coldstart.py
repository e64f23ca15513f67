"""Benchmark 4 — cold start to ready, and memory at idle, with 100 k EVSEs stored.

A child process starts the whole bridge (``Bridge.build`` + ``Bridge.running()``) on a store holding
100 k EVSEs in steady state (all delivered, a fullLoad done), polls the admin ``/ready`` until it answers
200, then idles for ``IDLE_SECONDS`` and reports its RSS. Times: from the parent spawning the process
(interpreter and imports included) and from ``Bridge.build`` to ready. The baseline, in the same run, is
the same start on an empty store. No fixed targets in the issue; the ratios show what the stored EVSEs
cost.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    ADMIN_TOKEN,
    Json,
    Sizes,
    bridge_config,
    child_result,
    child_spec,
    peak_rss_mb,
    ratio,
    rss_now_mb,
    run_child,
    seed_outbox,
)
from bench.hubject import hubject_process

IDLE_SECONDS = 2.0


async def child(spec: Json) -> Json:
    import aiohttp

    from bridge.app import Bridge

    started = time.monotonic()
    bridge = Bridge.build(bridge_config(Path(spec["store"]), spec["hubject_url"]))
    async with bridge.running(), aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with asyncio.timeout(60):
            while True:
                async with session.get(f"{bridge.admin_url}/ready", headers=headers) as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.005)
        ready_at = time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)  # idle: nothing pending, no resync due
        idle_rss = rss_now_mb()
    return {
        "build_to_ready_s": ready_at - started,
        "ready_at": ready_at,
        "idle_rss_mb": round(idle_rss, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


async def start(store: Path, hubject_url: str) -> Json:
    spawned = time.monotonic()
    result = await run_child("bench.coldstart", {"store": str(store), "hubject_url": hubject_url})
    result["spawn_to_ready_s"] = result.pop("ready_at") - spawned
    return result


async def run(sizes: Sizes) -> Json:
    evses = sizes.coldstart_evses
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp:
        full, empty = Path(tmp) / "full.db", Path(tmp) / "empty.db"
        await seed_outbox(full, evses, delivered=True)
        await seed_outbox(empty, 0, delivered=False)
        async with hubject_process() as (hubject_url, _):
            baseline = await start(empty, hubject_url)
            measured = await start(full, hubject_url)
    return {
        "benchmark": "coldstart",
        "sizes": {"evses": evses},
        "bridge": measured,
        "baseline": baseline,
        "ratio": ratio(measured["spawn_to_ready_s"], baseline["spawn_to_ready_s"]),
        "rss_ratio": ratio(measured["idle_rss_mb"], baseline["idle_rss_mb"]),
        "target": "none fixed by the issue; reported against an empty store",
        "target_met": True,
    }


def summary(result: Json) -> str:
    m, b = result["bridge"], result["baseline"]
    return (
        f"coldstart: {result['sizes']['evses']} EVSEs stored: ready {m['spawn_to_ready_s']:.2f} s "
        f"after spawn "
        f"({m['build_to_ready_s']:.3f} s after build), idle RSS {m['idle_rss_mb']} MB vs empty store "
        f"{b['spawn_to_ready_s']:.2f} s ({b['build_to_ready_s']:.3f} s), {b['idle_rss_mb']} MB: "
        f"ratios {result['ratio']:.2f} (time), {result['rss_ratio']:.2f} (RSS)"
    )


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_result(asyncio.run(child(child_spec())))
