"""asyncpg vs psycopg 3 on the operations the store needs (docs/postgres.md, "Driver").

``python -m bench.pg_driver [URL]`` (default: ``OICP_BRIDGE_TEST_PG_URL``, else a throwaway server from
Debian's packages via ``tests.pg_server``). A one-off measurement behind the driver choice, not one of the
per-change benchmarks of ``python -m bench``: it needs a PostgreSQL server and compares two libraries.

Each round, for each driver, in turns (A B A B ..., so a load change on the machine hits both alike):
- ``group``: group commit as ``bridge.store.postgres`` does it: ``BEGIN``, then per write ``SAVEPOINT``, an
  upsert of one small row, ``RELEASE``, then one ``COMMIT`` (``synchronous_commit = on``), ``GROUP`` writes
  a group;
- ``single``: the same with one write per transaction (an idle bridge: latency per acknowledged write);
- ``read``: a primary key ``SELECT`` returning one row.
Reported: operations per second (wall clock) and CPU microseconds of this process per operation (on two
shared cores, CPU per request is what bounds throughput). Both drivers run their natural way: psycopg's
synchronous connection on one thread (as the store's writer thread runs it), asyncpg on an event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import psycopg

GROUP = 50
GROUPS = 20
SINGLES = 200
READS = 1000
ROUNDS = 5

SETUP = (
    "DROP TABLE IF EXISTS bench_kv",
    "CREATE TABLE bench_kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL, doc TEXT NOT NULL)",
)
UPDATE_SET = " ON CONFLICT (k) DO UPDATE SET v = excluded.v, doc = excluded.doc"
UPSERT_PSYCOPG = "INSERT INTO bench_kv (k, v, doc) VALUES (%s, %s, %s)" + UPDATE_SET
UPSERT_ASYNCPG = "INSERT INTO bench_kv (k, v, doc) VALUES ($1, $2, $3)" + UPDATE_SET
DOC = '{"status": "AVAILABLE", "last_updated": "2026-12-01T12:00:00Z"}'


def measure(fn: Callable[[], int]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    operations = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"per_s": operations / wall, "cpu_us": cpu / operations * 1e6}


def psycopg_round(url: str, round_no: int) -> dict[str, dict[str, float]]:
    with psycopg.connect(url, autocommit=True, options="-c synchronous_commit=on") as conn:

        def group() -> int:
            for g in range(GROUPS):
                conn.execute("BEGIN")
                for i in range(GROUP):
                    conn.execute("SAVEPOINT job")
                    conn.execute(UPSERT_PSYCOPG, (f"k{(g * GROUP + i) % 2000}", round_no, DOC))
                    conn.execute("RELEASE SAVEPOINT job")
                conn.execute("COMMIT")
            return GROUPS * GROUP

        def single() -> int:
            for i in range(SINGLES):
                conn.execute("BEGIN")
                conn.execute("SAVEPOINT job")
                conn.execute(UPSERT_PSYCOPG, (f"k{i}", round_no, DOC))
                conn.execute("RELEASE SAVEPOINT job")
                conn.execute("COMMIT")
            return SINGLES

        def read() -> int:
            for i in range(READS):
                row = conn.execute("SELECT v, doc FROM bench_kv WHERE k = %s", (f"k{i % 1000}",)).fetchone()
                assert row is not None
            return READS

        return {"group": measure(group), "single": measure(single), "read": measure(read)}


async def asyncpg_round(url: str, round_no: int) -> dict[str, dict[str, float]]:
    conn = await asyncpg.connect(url, server_settings={"synchronous_commit": "on"})
    try:

        async def group() -> int:
            for g in range(GROUPS):
                await conn.execute("BEGIN")
                for i in range(GROUP):
                    await conn.execute("SAVEPOINT job")
                    await conn.execute(UPSERT_ASYNCPG, f"k{(g * GROUP + i) % 2000}", round_no, DOC)
                    await conn.execute("RELEASE SAVEPOINT job")
                await conn.execute("COMMIT")
            return GROUPS * GROUP

        async def single() -> int:
            for i in range(SINGLES):
                await conn.execute("BEGIN")
                await conn.execute("SAVEPOINT job")
                await conn.execute(UPSERT_ASYNCPG, f"k{i}", round_no, DOC)
                await conn.execute("RELEASE SAVEPOINT job")
                await conn.execute("COMMIT")
            return SINGLES

        async def read() -> int:
            for i in range(READS):
                row = await conn.fetchrow("SELECT v, doc FROM bench_kv WHERE k = $1", f"k{i % 1000}")
                assert row is not None
            return READS

        results = {}
        for name, fn in (("group", group), ("single", single), ("read", read)):
            wall, cpu = time.perf_counter(), time.process_time()
            operations = await fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            results[name] = {"per_s": operations / wall, "cpu_us": cpu / operations * 1e6}
        return results
    finally:
        await conn.close()


def run(url: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SETUP:
            conn.execute(statement.encode())
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {"psycopg": [], "asyncpg": []}
    for round_no in range(ROUNDS):
        rounds["psycopg"].append(psycopg_round(url, round_no))
        rounds["asyncpg"].append(asyncio.run(asyncpg_round(url, round_no)))
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for driver, results in rounds.items():
        medians[driver] = {
            op: {m: round(statistics.median(r[op][m] for r in results), 1) for m in ("per_s", "cpu_us")}
            for op in ("group", "single", "read")
        }
    return {
        "versions": {"psycopg": psycopg.__version__, "asyncpg": asyncpg.__version__},
        "server": psycopg.connect(url).info.server_version,
        "rounds": ROUNDS,
        "group_size": GROUP,
        "median": medians,
    }


def main(argv: list[str]) -> int:
    url = argv[0] if argv else os.environ.get("OICP_BRIDGE_TEST_PG_URL", "")
    server = None
    if not url:
        from tests.pg_server import temporary_server

        server = temporary_server()
        url = server.url
    try:
        print(json.dumps(run(url), indent=2))
    finally:
        if server is not None:
            server.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
