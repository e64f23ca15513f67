"""``oicp-bridge health``: exit 0 if the running daemon's admin listener answers ``GET /health``.

The Docker ``HEALTHCHECK`` runs it: it reads the admin address from the same configuration as ``run``
(file and environment), so the check follows ``[admin] listen`` wherever it is set. Liveness only:
readiness (Hubject reachable) is ``/ready`` and ``oicp-bridge status``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp

from bridge.commands import add_config_argument, admin_url, load_config_or_exit

HELP = "exit 0 if the running bridge answers on its admin listener's /health (for container health checks)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--timeout", type=float, default=4.0, metavar="SECONDS", help="how long to wait for the answer"
    )


async def healthy(url: str, within: float) -> tuple[bool, str]:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as session,
            session.get(url) as response,
        ):
            return response.status == 200, f"HTTP {response.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return False, str(exc) or type(exc).__name__


def run(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args).config
    url = f"{admin_url(config)}/health"
    ok, detail = asyncio.run(healthy(url, args.timeout))
    if not ok:
        print(f"not healthy: {url}: {detail}", file=sys.stderr)
        return 1
    return 0
