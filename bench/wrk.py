"""Benchmark — intake driven by wrk: OCPI 2.2.1 EVSE status PATCHes per second at 32 connections.

wrk (Debian's ``wrk``, one thread, 32 connections, ``bench/intake.lua``) sends EVSE status PATCHes
round-robin over 100 EVSEs (25 Locations of 4), every one a real change (the status alternates per pass,
``last_updated`` grows by a microsecond per request). Each server runs in a process of its own
(``bench/serve.py``): the bare aiohttp handler (parses the JSON body, answers the envelope) and the whole
bridge (token auth, validation, durable group commit before the answer, the dispatcher pushing to the
Hubject simulator in a third process). Rounds alternate baseline and bridge (and, with ``--tree``, the
bridge of other commits), so load from elsewhere on the machine hits every side alike; the figures are
the median round of each side and the median of the per-round ratios.

Why wrk: the aiohttp load client of ``bench/intake.py`` spends more CPU per request than the bare server it
measures (issue 13), so on two cores it, not the server, set the baseline. Each round reports the CPU per
request of wrk itself (``getrusage`` of the finished child) next to that of each server (``/proc/<pid>``),
so the result shows that the generator is the cheapest party.

``python -m bench.wrk [--tree DIR ...] [--quick|--tiny]`` compares this tree's bridge with the bridge of
each DIR (e.g. ``git worktree add /tmp/old <commit>``) in the same interleaved rounds. ``--durable`` (always
on in ``python -m bench``) adds the bare handler with a durable group commit of each request through the
bridge's own store engine: what durability alone costs, the ceiling for any bridge on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.common import CPO_TOKEN, FULL, QUICK, REPO_ROOT, SIZES, TINY, Json, Sizes, machine, ratio
from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.cpo_sim.pusher import authorization
from bridge.ocpi.versions import OcpiVersion

LOCATIONS, EVSES_PER_LOCATION = 25, 4
CONNECTIONS = 32
SCRIPT = Path(__file__).with_name("intake.lua")
SERVER = Path(__file__).with_name("serve.py")
BASE = "/ocpi/2.2.1/locations/DE/OBD"
# seconds per round and rounds, by size name
ROUNDS = {"full": (10, 5), "quick": (5, 3), "tiny": (1, 1)}
TICK = os.sysconf("SC_CLK_TCK")


def wrk_path() -> str | None:
    return shutil.which("wrk")


@dataclass
class Server:
    """One server process: what it is (``bare`` or ``bridge@<tree>``), where it listens, its pid."""

    name: str
    url: str
    pid: int
    token: str


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) of process ``pid`` and of its live children."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(process_cpu_s(int(child)) for child in children)


def own_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


@asynccontextmanager
async def server(
    kind: str, tree: Path, workdir: Path, *, env: dict[str, str] | None = None, tag: str = ""
) -> AsyncIterator[tuple[str, int]]:
    """``bench/serve.py kind`` with the code of ``tree``; yields (url, pid) until the block ends. Its log
    goes to a file in ``workdir`` (as a daemon's would), shown if it fails to start. ``env``: more of the
    server's environment (``BENCH_STORE_URL``: the bridge's store); ``tag`` tells servers of a kind apart."""
    ready = workdir / f"{kind}-{abs(hash(tree))}{tag}.ready"
    log_path = ready.with_suffix(".log")
    ready.unlink(missing_ok=True)  # an earlier server's
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVER),
            kind,
            str(ready),
            stdin=asyncio.subprocess.PIPE,
            stdout=log,
            stderr=log,
            cwd=tree,
            env={**os.environ, **(env or {}), "PYTHONPATH": str(tree)},
        )
    assert process.stdin is not None
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the {kind} server of {tree} did not start: {log_path.read_text()[-3000:]}"
                )
            await asyncio.sleep(0.05)
        where: Json = json.loads(ready.read_text())
        yield where["url"], where["pid"]
    finally:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


def fleet() -> CpoFleet:
    return CpoFleet(seed=1, locations=LOCATIONS, evses_per_location=EVSES_PER_LOCATION)


async def seed(url: str, token: str, cpo: CpoFleet) -> None:
    """PUT the Locations (untimed) so the PATCHes find their EVSEs."""
    async with aiohttp.ClientSession(headers={"Authorization": token}) as session:
        for location in cpo.locations():
            body = cpo.location_json(location, OcpiVersion.V2_2_1)
            async with session.put(f"{url}{BASE}/{location.id}", json=body) as response:
                text = await response.text()
                if response.status not in (200, 201) or '"status_code":1000' not in text.replace(" ", ""):
                    raise RuntimeError(f"seeding PUT {location.id} failed: {response.status} {text[:200]}")


async def wrk_round(
    target: Server,
    paths_file: Path,
    seconds: int,
    base_s: int,
    offset: int,
    *,
    connections: int = CONNECTIONS,
) -> Json:
    """One wrk run against ``target``; its figures, wrk's own CPU and the server's, per request."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before, own_before = process_cpu_s(target.pid), own_cpu_s(target.pid)
    process = await asyncio.create_subprocess_exec(
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        target.url,
        "--",
        str(base_s),
        str(offset),
        target.token,
        str(paths_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    server_after, own_after = process_cpu_s(target.pid), own_cpu_s(target.pid)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r"^RESULT (.*)$", out.decode(), re.MULTILINE)
    if process.returncode != 0 or match is None:
        raise RuntimeError(
            f"wrk failed ({process.returncode}): {out.decode()[-2000:]} {err.decode()[-2000:]}"
        )
    result: Json = json.loads(match.group(1))
    answered = max(1, result["requests"])
    wrk_cpu = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    return {
        "side": target.name,
        "requests": result["requests"],
        "sent": result["sent"],
        "elapsed_s": result["duration_us"] / 1e6,
        "per_second": result["requests"] / (result["duration_us"] / 1e6),
        "p50_ms": result["p50_us"] / 1000,
        "p90_ms": result["p90_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "p999_ms": result["p999_us"] / 1000,
        "max_ms": result["max_us"] / 1000,
        "errors": result["bad_answers"] + result["socket_errors"],
        "error_sample": result["error_sample"],
        "cpu_ms_per_request": {
            "server": round(1000 * (own_after - own_before) / answered, 4),
            # the Hubject simulator (a child of the bridge's server process): not the bridge's cost
            "server_children": round(
                1000 * ((server_after - own_after) - (server_before - own_before)) / answered, 4
            ),
            "wrk": round(1000 * wrk_cpu / answered, 4),
        },
    }


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def measure(sizes: Sizes, trees: Sequence[Path] = (REPO_ROOT,), *, durable: bool = False) -> Json:
    seconds, count = ROUNDS.get(sizes.name, ROUNDS["full"])
    cpo = fleet()
    paths = [f"{BASE}/{loc.id}/{evse.uid}" for loc in cpo.locations() for evse in loc.evses]
    token = authorization(CPO_TOKEN, OcpiVersion.V2_2_1)
    # changes dated from a second after the seeding (the Locations carry the time they were built)
    base_s = int(time.time()) + 1
    rounds: list[list[Json]] = []
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        paths_file = Path(tmp) / "paths.txt"
        paths_file.write_text("\n".join(paths) + "\n")
        async with AsyncExitStack() as stack:
            url, pid = await stack.enter_async_context(server("bare", REPO_ROOT, Path(tmp)))
            sides = [Server("bare", url, pid, "")]
            if durable:
                url, pid = await stack.enter_async_context(server("durable", REPO_ROOT, Path(tmp)))
                sides.append(Server("durable", url, pid, ""))
            for tree in trees:
                url, pid = await stack.enter_async_context(server("bridge", tree, Path(tmp)))
                await seed(url, token, cpo)
                name = "bridge" if tree == REPO_ROOT else f"bridge@{tree}"
                sides.append(Server(name, url, pid, token))
            offset = 0
            for _ in range(count):
                this_round = []
                for side in sides:
                    figures = await wrk_round(side, paths_file, seconds, base_s, offset)
                    this_round.append(figures)
                # each side's requests stay newer than every earlier round's
                offset += max(r["sent"] for r in this_round) + 1
                rounds.append(this_round)
    names = [r["side"] for r in rounds[0]]
    per_side: Json = {}
    for index, name in enumerate(names):
        runs = [r[index] for r in rounds]
        per_side[name] = {
            "per_second": _median([r["per_second"] for r in runs]),
            "p50_ms": _median([r["p50_ms"] for r in runs]),
            "p99_ms": _median([r["p99_ms"] for r in runs]),
            "max_ms": max(r["max_ms"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "cpu_ms_per_request": {
                key: _median([r["cpu_ms_per_request"][key] for r in runs])
                for key in runs[0]["cpu_ms_per_request"]
            },
        }
        if index:
            per_side[name]["round_ratios"] = [
                ratio(r[index]["per_second"], r[0]["per_second"]) for r in rounds
            ]
            per_side[name]["ratio"] = _median(per_side[name]["round_ratios"])
            per_side[name]["p99_ratio"] = _median([ratio(r[index]["p99_ms"], r[0]["p99_ms"]) for r in rounds])
    bridge, baseline = per_side["bridge"], per_side["bare"]
    errors = sum(side["errors"] for side in per_side.values())
    return {
        "benchmark": "wrk",
        "sizes": {
            "seconds_per_round": seconds,
            "rounds": count,
            "connections": CONNECTIONS,
            "evses": len(paths),
        },
        "bridge": bridge,
        "baseline": baseline,
        "sides": per_side,
        "rounds": rounds,
        "ratio": bridge["ratio"],
        "errors": errors,
        "load_average": os.getloadavg(),
        "target": "bridge ≥ 0.5 × bare handler req/s, p99 ≤ 3 × bare p99",
        "target_met": bridge["ratio"] >= 0.5 and bridge["p99_ratio"] <= 3 and errors == 0,
    }


async def run(sizes: Sizes) -> Json:
    return await measure(sizes, durable=True)


def summary(result: Json) -> str:
    b, m = result["baseline"], result["bridge"]
    lines = [
        f"wrk: bridge {m['per_second']:.0f} req/s (p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms, "
        f"{m['cpu_ms_per_request']['server']:.3f} ms CPU/req) vs bare aiohttp {b['per_second']:.0f} req/s "
        f"(p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms, {b['cpu_ms_per_request']['server']:.3f} ms "
        f"CPU/req; wrk {b['cpu_ms_per_request']['wrk']:.3f} ms CPU/req): median ratio "
        f"{result['ratio']:.2f} of {len(result['rounds'])} rounds, p99 ratio {m['p99_ratio']:.2f}, "
        f"errors {result['errors']} (target: {'met' if result['target_met'] else 'NOT met'})"
    ]
    for name, side in result["sides"].items():
        if name not in ("bare", "bridge"):  # another tree's bridge, or the durable bare handler
            lines.append(
                f"  {name}: {side['per_second']:.0f} req/s, p50 {side['p50_ms']:.1f} ms, p99 "
                f"{side['p99_ms']:.1f} ms, ratio {side['ratio']:.2f}, "
                f"{side['cpu_ms_per_request']['server']:.3f} ms CPU/req"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wrk", description=__doc__)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another tree's bridge too")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="size", const=QUICK.name)
    size.add_argument("--tiny", action="store_const", dest="size", const=TINY.name)
    parser.add_argument("--out", type=Path, default=Path("bench/results/wrk.json"))
    parser.add_argument(
        "--durable",
        action="store_true",
        help="also the bare handler with a durable commit of each request (what durability alone costs)",
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        help="the bridges' [push] flush_interval (default 1 s; e.g. 3600: intake alone, no push in a round)",
    )
    args = parser.parse_args(argv)
    if args.flush_interval is not None:
        os.environ["BENCH_FLUSH_INTERVAL"] = str(args.flush_interval)  # read by bench/serve.py
    sizes = SIZES[args.size or FULL.name]
    result = asyncio.run(measure(sizes, [REPO_ROOT, *[t.resolve() for t in args.tree]], durable=args.durable))
    result["machine"] = machine()
    result["flush_interval"] = args.flush_interval or 1.0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
