"""Benchmark — the bridge on PostgreSQL (issue 15): intake with one and with three replicas, and the
coalescing storm, each as a ratio against the SQLite engine measured in the same run.

Intake is ``bench/wrk.py``'s: wrk PATCHes EVSE statuses (every one a real change) at 32 connections, the
bridge in a process of its own (``bench/serve.py``), rounds alternating the sides so load from elsewhere hits
each alike. Sides: ``sqlite`` (the embedded engine, the baseline), ``pg1`` (one replica on PostgreSQL),
``pg3`` (three replicas on one database, three wrk processes of 11 connections each, every one on a third of
the EVSEs; the figure is their sum). Targets (issue 15): pg1 ≥ 0.5 × sqlite; pg3 ≥ 0.9 × pg1 — on two cores
the replicas share the CPU, so this shows that coordination costs little. CPU per request is reported for
the bridge processes and for the PostgreSQL server (all its backends), so scaling on more cores can be
estimated.

The storm is ``bench/storm.py`` run twice, on SQLite and on PostgreSQL; reported: each run's figures and
the ratios of changes per second, Hubject requests and p99 delay.

PostgreSQL: ``OICP_BRIDGE_TEST_PG_URL`` if set (the server's CPU is then not measured), else a throwaway
server from Debian's packages (``tests.pg_server``). ``python -m bench.pg_intake [--quick|--tiny]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import storm
from bench.common import CPO_TOKEN, FULL, QUICK, REPO_ROOT, SIZES, TINY, Json, Sizes, machine, ratio
from bench.wrk import BASE, CONNECTIONS, ROUNDS, Server, fleet, process_cpu_s, seed, server, wrk_round
from bridge.ocpi.cpo_sim.pusher import authorization
from bridge.ocpi.versions import OcpiVersion

REPLICAS = 3


@asynccontextmanager
async def postgres() -> AsyncIterator[tuple[str, int | None]]:
    """(admin URL, the postmaster's pid or None when the server is not ours to measure)."""
    url = os.environ.get("OICP_BRIDGE_TEST_PG_URL")
    if url:
        yield url, None
        return
    sys.path.insert(0, str(REPO_ROOT))
    from tests.pg_server import temporary_server  # the tests' throwaway server (Debian's binaries)

    server = temporary_server()
    try:
        pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        yield server.url, pid
    finally:
        server.destroy()


def new_database(admin_url: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


async def together(targets: Sequence[Server], files: Sequence[Path], connections: int, seconds: int,
                   base_s: int, offset: int, postmaster: int | None) -> Json:  # fmt: skip
    """wrk against each target at once (one file of paths each); the sum, and CPU per request of the
    bridge processes and of the PostgreSQL server."""
    pg_before = process_cpu_s(postmaster) if postmaster else 0.0
    runs = await asyncio.gather(
        *(
            wrk_round(target, paths, seconds, base_s, offset, connections=connections)
            for target, paths in zip(targets, files, strict=True)
        )
    )
    pg_after = process_cpu_s(postmaster) if postmaster else 0.0
    requests = sum(r["requests"] for r in runs)
    answered = max(1, requests)
    return {
        "side": targets[0].name,
        "requests": requests,
        "sent": max(r["sent"] for r in runs),
        "per_second": sum(r["per_second"] for r in runs),
        "p50_ms": max(r["p50_ms"] for r in runs),
        "p99_ms": max(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "cpu_ms_per_request": {
            "bridge": round(
                sum(r["cpu_ms_per_request"]["server"] * r["requests"] for r in runs) / answered, 4
            ),
            "postgres": round(1000 * (pg_after - pg_before) / answered, 4) if postmaster else None,
            "wrk": round(sum(r["cpu_ms_per_request"]["wrk"] * r["requests"] for r in runs) / answered, 4),
        },
    }


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def intake(sizes: Sizes, admin_url: str, postmaster: int | None) -> Json:
    seconds, count = ROUNDS.get(sizes.name, ROUNDS["full"])
    cpo = fleet()
    paths = [f"{BASE}/{loc.id}/{evse.uid}" for loc in cpo.locations() for evse in loc.evses]
    token = authorization(CPO_TOKEN, OcpiVersion.V2_2_1)
    base_s = int(time.time()) + 1
    rounds: list[dict[str, Json]] = []
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        work = Path(tmp)
        every = work / "paths.txt"
        every.write_text("\n".join(paths) + "\n")
        thirds = []
        for index in range(REPLICAS):
            third = work / f"paths-{index}.txt"
            third.write_text("\n".join(paths[index::REPLICAS]) + "\n")
            thirds.append(third)
        async with AsyncExitStack() as stack:
            sides: dict[str, list[Server]] = {}
            url, pid = await stack.enter_async_context(server("bridge", REPO_ROOT, work, tag="-sqlite"))
            sides["sqlite"] = [Server("sqlite", url, pid, token)]
            one = new_database(admin_url)
            url, pid = await stack.enter_async_context(
                server("bridge", REPO_ROOT, work, env={"BENCH_STORE_URL": one}, tag="-pg1")
            )
            sides["pg1"] = [Server("pg1", url, pid, token)]
            three = new_database(admin_url)
            sides["pg3"] = []
            for index in range(REPLICAS):
                url, pid = await stack.enter_async_context(
                    server("bridge", REPO_ROOT, work, env={"BENCH_STORE_URL": three}, tag=f"-pg3-{index}")
                )
                sides["pg3"].append(Server("pg3", url, pid, token))
            for targets in sides.values():
                await seed(targets[0].url, token, cpo)  # one replica's PUTs serve them all (one store)
            offset = 0
            for _ in range(count):
                this_round = {}
                for name, targets in sides.items():
                    if name == "pg3":
                        figures = await together(
                            targets, thirds, CONNECTIONS // REPLICAS, seconds, base_s, offset, postmaster
                        )
                    else:
                        figures = await together(
                            targets,
                            [every],
                            CONNECTIONS,
                            seconds,
                            base_s,
                            offset,
                            postmaster if name != "sqlite" else None,
                        )
                    this_round[name] = figures
                offset += max(r["sent"] for r in this_round.values()) + 1
                rounds.append(this_round)
    per_side: Json = {}
    for name in ("sqlite", "pg1", "pg3"):
        runs = [r[name] for r in rounds]
        per_side[name] = {
            "per_second": _median([r["per_second"] for r in runs]),
            "p50_ms": _median([r["p50_ms"] for r in runs]),
            "p99_ms": _median([r["p99_ms"] for r in runs]),
            "errors": sum(r["errors"] for r in runs),
            "cpu_ms_per_request": {
                key: (
                    None
                    if runs[0]["cpu_ms_per_request"][key] is None
                    else _median([r["cpu_ms_per_request"][key] for r in runs])
                )
                for key in runs[0]["cpu_ms_per_request"]
            },
        }
    one_ratio = _median([ratio(r["pg1"]["per_second"], r["sqlite"]["per_second"]) for r in rounds])
    three_ratio = _median([ratio(r["pg3"]["per_second"], r["pg1"]["per_second"]) for r in rounds])
    errors = sum(side["errors"] for side in per_side.values())
    return {
        "sides": per_side,
        "rounds": rounds,
        "pg1_vs_sqlite": one_ratio,
        "pg3_vs_pg1": three_ratio,
        "errors": errors,
        "sizes": {
            "seconds_per_round": seconds,
            "rounds": count,
            "connections": CONNECTIONS,
            "evses": len(paths),
        },
    }


async def storm_both(sizes: Sizes, admin_url: str) -> Json:
    on_sqlite = await storm.run(sizes)
    on_postgres = await storm.run(sizes, store_url=new_database(admin_url))
    return {
        "sqlite": on_sqlite,
        "postgresql": on_postgres,
        "changes_per_second_ratio": ratio(on_postgres["changes_per_second"], on_sqlite["changes_per_second"]),
        "hubject_requests_ratio": ratio(on_postgres["hubject_requests"], on_sqlite["hubject_requests"]),
        "delay_p99_ratio": ratio(on_postgres["delay_p99_s"], max(on_sqlite["delay_p99_s"], 1e-6)),
    }


async def run(sizes: Sizes) -> Json:
    async with postgres() as (admin_url, postmaster):
        measured = await intake(sizes, admin_url, postmaster)
        storms = await storm_both(sizes, admin_url)
    errors = measured["errors"] + storms["postgresql"]["changes"]["http_errors"]
    met = (
        measured["pg1_vs_sqlite"] >= 0.5
        and measured["pg3_vs_pg1"] >= 0.9
        and errors == 0
        and bool(storms["postgresql"]["target_met"])
    )
    return {
        "benchmark": "pg_intake",
        "sizes": measured["sizes"],
        "bridge": measured["sides"]["pg1"],
        "baseline": measured["sides"]["sqlite"],
        "three_replicas": measured["sides"]["pg3"],
        "ratio": measured["pg1_vs_sqlite"],
        "three_vs_one": measured["pg3_vs_pg1"],
        "intake_rounds": measured["rounds"],
        "storm": storms,
        "errors": errors,
        "load_average": os.getloadavg(),
        "target": "pg1 ≥ 0.5 × sqlite intake, pg3 ≥ 0.9 × pg1, the storm's own target on PostgreSQL",
        "target_met": met,
    }


def summary(result: Json) -> str:
    one, base, three = result["bridge"], result["baseline"], result["three_replicas"]

    def cpu(side: Json) -> str:
        c: dict[str, Any] = side["cpu_ms_per_request"]
        pg = "n/a" if c["postgres"] is None else f"{c['postgres']:.3f}"
        return f"bridge {c['bridge']:.3f} + postgres {pg} ms CPU/req"

    storms = result["storm"]
    return "\n".join(
        [
            f"pg_intake: SQLite {base['per_second']:.0f} req/s ({cpu(base)}); PostgreSQL one replica "
            f"{one['per_second']:.0f} req/s ({cpu(one)}), ratio {result['ratio']:.2f}; three replicas "
            f"{three['per_second']:.0f} req/s ({cpu(three)}), {result['three_vs_one']:.2f} × one; "
            f"errors {result['errors']}",
            f"  storm on PostgreSQL: {storms['postgresql']['changes_per_second']} changes/s "
            f"(× {storms['changes_per_second_ratio']:.2f} SQLite's), "
            f"{storms['postgresql']['hubject_requests']} Hubject requests "
            f"(× {storms['hubject_requests_ratio']:.2f}), p99 delay "
            f"{storms['postgresql']['delay_p99_s']} s (× {storms['delay_p99_ratio']:.2f})",
            f"  target: {'met' if result['target_met'] else 'NOT met'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_intake", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="size", const=QUICK.name)
    size.add_argument("--tiny", action="store_const", dest="size", const=TINY.name)
    parser.add_argument("--out", type=Path, default=Path("bench/results/pg_intake.json"))
    args = parser.parse_args(argv)
    result = asyncio.run(run(SIZES[args.size or FULL.name]))
    result["machine"] = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
