"""``oicp-bridge resync``: a full status resync (fullLoad) through the running daemon's admin API."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiohttp

from bridge.commands import add_config_argument
from bridge.config import config_path, load_config
from bridge.errors import ConfigError

HELP = "send a full status resync (OICP fullLoad) through the running bridge; waits for the outcome"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--operator", metavar="ID", help="only this operator (default: all)")
    parser.add_argument("--force", action="store_true", help="send even an empty or sharply shrunken set")
    parser.add_argument(
        "--refetch",
        action="store_true",
        help="first fetch every location again from the configured OCPI senders",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the outcome")


async def request(url: str, token: str, params: dict[str, str], wait: float) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait)) as session,
        session.post(url, params=params, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def run(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return 1
    if config.admin.token is None:
        print("admin.token is not set: the bridge refuses resync requests without it", file=sys.stderr)
        return 1
    params = {"force": "true"} if args.force else {}
    if args.refetch:
        params["refetch"] = "true"
    if args.operator:
        params["operator"] = args.operator
    url = f"http://{config.admin.listen}/resync"
    try:
        status, body = asyncio.run(request(url, config.admin.token.get_secret_value(), params, args.timeout))
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"cannot reach the bridge's admin API at {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    if "outcomes" not in body:
        print(f"the bridge refused: HTTP {status}: {body.get('error', body)}", file=sys.stderr)
        return 1
    for outcome in body["outcomes"]:
        detail = f"{outcome['records']} records" + (
            f", {outcome['parked']} parked" if outcome["parked"] else ""
        )
        line = f"{outcome['operator_id']}: {outcome['result']}"
        line += f" ({detail})" if outcome["result"] == "done" else f": {outcome['message']}"
        print(line)
    return 0 if status == 200 else 1
