"""The load generator: a concurrent aiohttp client in a process of its own (``python -m bench.loadgen
--child``, spec as JSON on stdin), so the server under test gets its own core.

Phases: PUT the seed Locations (untimed), then send ``requests`` EVSE status PATCHes with ``concurrency``
in flight, round-robin over ``targets``, each with a strictly increasing ``last_updated``; meanwhile, if
``probes`` are given, change each probe EVSE once every ``probe_interval`` seconds and report when each
change was answered (``time.monotonic()``), so the parent can time its way to Hubject.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import Json, child_result, child_spec, ocpi_datetime, percentile

STATUSES = ("CHARGING", "AVAILABLE")


async def _send(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], body: Json
) -> tuple[bool, str]:
    async with session.request(method, url, json=body, headers=headers) as response:
        payload = await response.read()
        if response.status not in (200, 201):
            return False, f"HTTP {response.status}: {payload[:200]!r}"
        if b'"status_code":1000' in payload.replace(b" ", b"") or b"status_code" not in payload:
            return True, ""
        return False, payload[:200].decode(errors="replace")


async def run(spec: Json) -> Json:
    base: str = spec["base"]
    headers = {"Authorization": spec["token"]} if spec.get("token") else {}
    connector = aiohttp.TCPConnector(limit=0)
    errors: list[str] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        # seed (untimed)
        puts: list[tuple[str, Json]] = [(p[0], p[1]) for p in spec.get("puts", [])]
        put_queue = iter(puts)

        async def putter() -> None:
            for location_id, doc in put_queue:
                ok, error = await _send(session, "PUT", f"{base}/{location_id}", headers, doc)
                if not ok:
                    raise RuntimeError(f"seeding PUT {location_id} failed: {error}")

        await asyncio.gather(*(putter() for _ in range(16)))

        targets: list[tuple[str, str]] = [(t[0], t[1]) for t in spec["targets"]]
        total: int = spec["requests"]
        concurrency: int = spec["concurrency"]
        offset: int = spec.get("offset", 0)
        counter = itertools.count()
        latencies: list[float] = []
        probe_answers: list[tuple[str, str, float, float]] = []  # evse_id, status, sent, answered
        done = asyncio.Event()

        stop_file = Path(spec["stop_file"]) if spec.get("stop_file") else None
        sent = 0
        stopped = False

        async def worker() -> None:
            nonlocal sent, stopped
            while not stopped and (i := next(counter)) < total:
                if stop_file is not None and i % 64 == 0 and stop_file.exists():
                    stopped = True
                    break
                sent += 1
                location_id, uid = targets[i % len(targets)]
                status = STATUSES[(i // len(targets)) % 2]
                body = {"status": status, "last_updated": ocpi_datetime(offset + i)}
                started = time.monotonic()
                ok, error = await _send(session, "PATCH", f"{base}/{location_id}/{uid}", headers, body)
                latencies.append(time.monotonic() - started)
                if not ok and len(errors) < 20:
                    errors.append(error)
                elif not ok:
                    errors.append("")

        async def prober(probe: list[Any], index: int, interval: float) -> None:
            location_id, uid, evse_id, n = probe  # n: which of STATUSES comes first
            await asyncio.sleep(interval * index / max(1, len(spec["probes"])))
            while not done.is_set():
                status = STATUSES[n % 2]
                body = {"status": status, "last_updated": ocpi_datetime(offset + total + 10_000_000 + n)}
                sent_at = time.monotonic()
                ok, error = await _send(session, "PATCH", f"{base}/{location_id}/{uid}", headers, body)
                if ok:
                    probe_answers.append((evse_id, status, sent_at, time.monotonic()))
                else:
                    errors.append("probe: " + error)
                n += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), interval)

        interval = float(spec.get("probe_interval", 3.0))
        probers = [asyncio.create_task(prober(p, i, interval)) for i, p in enumerate(spec.get("probes", []))]
        started = time.monotonic()
        if spec.get("started_file"):
            Path(spec["started_file"]).touch()  # noqa: ASYNC240 - one tiny file, before the clock matters
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        done.set()
        await asyncio.gather(*probers)
    return {
        "requests": sent,
        "elapsed_s": elapsed,
        "started_at": started,
        "per_second": sent / elapsed if elapsed else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "errors": len(errors),
        "error_samples": [e for e in errors if e][:5],
        "probe_answers": probe_answers,
    }


def main() -> None:
    child_result(asyncio.run(run(child_spec())))


if __name__ == "__main__":
    main()
