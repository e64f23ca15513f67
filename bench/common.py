"""What every benchmark shares: sizes, the machine, timing helpers, seeding a store, child processes.

Nothing here is measured itself; the measuring is in the benchmark modules. Timestamps that cross
process boundaries use ``time.monotonic()`` (CLOCK_MONOTONIC is system-wide on Linux).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.config import BridgeConfig
from bridge.intake import Decider, Intake
from bridge.mapping import StatusMapper
from bridge.observation import EvseObservation, OcpiEvseStatus
from bridge.ocpi.store import OcpiStore
from bridge.ownership import PartyBinding
from bridge.store.database import Database
from bridge.store.outbox import FullLoadSnapshot, OutboxStore
from bridge.store.schema import MIGRATIONS
from oicp.ids import OperatorID

OPERATOR = "DE*OBD"
COUNTRY, PARTY = "DE", "OBD"
CPO_TOKEN = "bench-cpo-token"
ADMIN_TOKEN = "bench-admin-token"
REPO_ROOT = Path(__file__).resolve().parent.parent
Json = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark runs. ``full`` is what docs/benchmarks.md reports."""

    name: str
    intake_requests: int
    intake_concurrency: int
    intake_rounds: int
    intake_locations: int
    storm_changes: int
    storm_evses: int
    storm_probes: int
    resync_evses: int
    coldstart_evses: int
    data_fullload_evses: int = 100_000  # bench.data_fullload
    data_churn_evses: int = 10_000  # bench.data_churn
    data_churn_seconds: float = 10.0


FULL = Sizes("full", 10_000, 64, 5, 2_500, 1_000_000, 10_000, 200, 100_000, 100_000)
QUICK = Sizes("quick", 3_000, 64, 3, 500, 100_000, 10_000, 100, 20_000, 20_000, 20_000, 2_000, 5.0)
TINY = Sizes("tiny", 200, 16, 1, 20, 2_000, 200, 10, 500, 500, 300, 100, 1.0)
SIZES = {s.name: s for s in (FULL, QUICK, TINY)}


def machine() -> Json:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rss_now_mb() -> float:
    """Resident set size of this process now (VmRSS), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MB: VmHWM, the high-water mark of this address space.
    (``ru_maxrss`` would do, but Linux carries it over ``exec``: a child forked from a 150 MB parent
    would report at least 150 MB.) ``ru_maxrss`` (KiB) where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class CpuClock:
    """CPU seconds used so far by each thread of this process (by thread name) and by finished children.

    Linux only (``/proc/self/task``); elsewhere the threads are left out. Two readings subtract into
    where one stretch of work spent its CPU: the benchmarks' "why", next to their wall-clock "what".
    """

    def __init__(self) -> None:
        self.threads = _thread_cpu()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children = usage.ru_utime + usage.ru_stime

    def since(self, earlier: CpuClock, per: int) -> Json:
        """Milliseconds of CPU per unit of work (``per`` units) between ``earlier`` and this reading."""
        threads = {
            name: round(1000 * (used - earlier.threads.get(name, 0.0)) / per, 4)
            for name, used in self.threads.items()
            if used - earlier.threads.get(name, 0.0) > 0
        }
        return {"threads": threads, "children": round(1000 * (self.children - earlier.children) / per, 4)}


def _thread_cpu() -> dict[str, float]:
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return used
    for task in tasks:
        try:
            fields = Path(f"/proc/self/task/{task}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        name = names.get(int(task), "other")
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else float("inf")


def bridge_config(store: Path, hubject_url: str, **push: Any) -> BridgeConfig:
    return BridgeConfig(
        store={"url": f"sqlite:///{store}"},
        hubject={"url": hubject_url, "protocol": "rest", "timeout": 60},
        operators=[{"operator_id": OPERATOR, "operator_name": "OBD Charging"}],
        ocpi={
            "receiver": {
                "listen": "127.0.0.1:0",
                "tokens": [{"token": CPO_TOKEN, "country_code": COUNTRY, "party_id": PARTY}],
            }
        },
        push={"flush_interval": 1.0, "max_batch": 1000, "max_calls_per_minute": 100_000, **push},
        resync={"interval": 86400},
        admin={"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
    )


def evse_id(number: int) -> str:
    return f"{OPERATOR}*E{number}"


def observation(number: int, status: OcpiEvseStatus, at: datetime) -> EvseObservation:
    """An observation for EVSE ``number`` (Location ``L{number // 10}``, uid ``U{number}``)."""
    return EvseObservation(
        COUNTRY, PARTY, f"L{number // 10}", f"U{number}", evse_id(number), status, at, True
    )


BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)


def intake_on(db: Database) -> Intake:
    """The bridge's intake on ``db`` for the benchmark's one operator (its own party publishes)."""
    operator = OperatorID(OPERATOR)
    decider = Decider(StatusMapper([operator], {}), PartyBinding({operator: None}))
    return Intake(db, OcpiStore(db), OutboxStore(db), decider)


async def seed_outbox(path: Path, evses: int, *, delivered: bool, chunk: int = 5_000) -> None:
    """Fill the store at ``path`` with ``evses`` EVSEs and their outbox rows through the intake; with
    ``delivered``, mark them as held by Hubject after a fullLoad (a steady-state store)."""
    config = bridge_config(path, "http://127.0.0.1:9")
    db = Database(path, MIGRATIONS)
    intake = intake_on(db)
    outbox = intake.outbox
    await db.open()
    try:
        statuses = (OcpiEvseStatus.AVAILABLE, OcpiEvseStatus.CHARGING, OcpiEvseStatus.OUTOFORDER)
        for start in range(0, evses, chunk):
            batch = [
                observation(n, statuses[n % 3], BASE_TIME) for n in range(start, min(evses, start + chunk))
            ]
            await intake.apply_observations(batch)
        # as the daemon's first start on this store would: the decisions' fingerprint is stored, so a
        # start measures a restart (a store never started re-decides every EvseID once: Intake.reconcile)
        await intake.reconcile()
        if delivered:
            operator_id = config.operators[0].operator_id

            def watermark(conn: Any) -> int:
                return int(
                    conn.execute("SELECT value FROM sequence WHERE name = 'outbox_version'").fetchone()[0]
                )

            mark = await db.read(watermark)
            count = await outbox.fullload_count(operator_id)
            snapshot = FullLoadSnapshot(mark, count)
            await outbox.fullload_finished(operator_id, snapshot, frozenset(), time.time())
    finally:
        await db.close()


async def run_child(module: str, spec: Json, *, within: float = 900.0) -> Json:
    """Run ``python -m <module> --child`` with ``spec`` on stdin; its last stdout line is its JSON result."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        "--child",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(json.dumps(spec).encode()), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{module} child failed ({process.returncode}): {err.decode()[-3000:]}")
    lines = out.decode().strip().splitlines()
    result: Json = json.loads(lines[-1])
    return result


def child_spec() -> Json:
    spec: Json = json.loads(sys.stdin.read())
    return spec


def child_result(result: Json) -> None:
    print(json.dumps(result), flush=True)


# Changes are dated from a little after this process started, so they are newer than the seeded
# Locations (dated when they were built), and increase by a microsecond per change number.
CHANGES_FROM = datetime.now(UTC) + timedelta(seconds=10)


def ocpi_datetime(offset_us: int) -> str:
    """A strictly increasing OCPI DateTime for change number ``offset_us`` (microsecond steps)."""
    moment = CHANGES_FROM + timedelta(microseconds=offset_us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_result(out_dir: Path, name: str, result: Json) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
