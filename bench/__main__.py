"""``python -m bench [intake|storm|resync|coldstart ...] [--quick|--tiny] [--out DIR]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from bench import BENCHMARKS, load
from bench.common import FULL, QUICK, SIZES, TINY, machine, write_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_const",
        dest="size",
        const=QUICK.name,
        help="smaller sizes (about a minute in all)",
    )
    size.add_argument(
        "--tiny",
        action="store_const",
        dest="size",
        const=TINY.name,
        help="smallest sizes: checks the benchmarks run, measures nothing useful",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where JSON results go")
    args = parser.parse_args(argv)
    sizes = SIZES[args.size or FULL.name]
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB, Python {info['python']}")
    print(f"sizes: {sizes.name}")
    results = {}
    for name in names:
        module = load(name)
        started = time.monotonic()
        result = asyncio.run(module.run(sizes))
        result["machine"] = info
        result["size"] = sizes.name
        result["wall_s"] = round(time.monotonic() - started, 1)
        path = write_result(args.out, name, result)
        results[name] = result
        print(module.summary(result), f"[{result['wall_s']} s; {path}]", flush=True)
    write_result(args.out, "all" if len(names) > 1 else f"last-{names[0]}", {"results": results})
    if any(not r["target_met"] for r in results.values()):
        print("some targets not met:", json.dumps({n: r["target_met"] for n, r in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
