"""``oicp-bridge resync``: a full status resync (fullLoad) through the running daemon's admin API."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiohttp

from bridge.commands import add_config_argument, admin_url, load_config_or_exit

HELP = (
    "send a full status resync (OICP fullLoad; --data: of EVSE data first) through the running bridge; "
    "waits for the outcome"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--operator", metavar="ID", help="only this operator (default: all)")
    parser.add_argument("--force", action="store_true", help="send even an empty or sharply shrunken set")
    parser.add_argument(
        "--data",
        action="store_true",
        help="a fullLoad of EVSE data first (operators with push_evse_data = true), then of status",
    )
    parser.add_argument(
        "--refetch",
        action="store_true",
        help="first fetch every location again from the configured OCPI senders",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, metavar="SECONDS", help="seconds to wait for the outcome"
    )


async def request(url: str, token: str, params: dict[str, str], wait: float) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait)) as session,
        session.post(url, params=params, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def run(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args).config
    if config.admin.token is None:
        print("admin.token is not set: the bridge refuses resync requests without it", file=sys.stderr)
        return 1
    params = {"force": "true"} if args.force else {}
    if args.refetch:
        params["refetch"] = "true"
    if args.operator:
        params["operator"] = args.operator
    if args.data:
        params["data"] = "1"
    url = f"{admin_url(config)}/resync"
    try:
        status, body = asyncio.run(request(url, config.admin.token.get_secret_value(), params, args.timeout))
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"cannot reach the bridge's admin API at {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    except ValueError:  # something answers there, but not the bridge (its answers are JSON)
        print(f"the answer from {url} is not JSON: is the bridge's admin listener there?", file=sys.stderr)
        return 1
    if not isinstance(body, dict) or "outcomes" not in body:
        error = body.get("error", body) if isinstance(body, dict) else body
        print(f"the bridge refused: HTTP {status}: {error}", file=sys.stderr)
        return 1
    for outcome in body.get("data_outcomes", []):
        line = f"{outcome['operator_id']}: EVSE data {outcome['result']}"
        line += (
            f" ({outcome['records']} records)" if outcome["result"] == "done" else f": {outcome['message']}"
        )
        print(line)
    for outcome in body["outcomes"]:
        detail = f"{outcome['records']} records" + (
            f", {outcome['parked']} parked" if outcome["parked"] else ""
        )
        line = f"{outcome['operator_id']}: {outcome['result']}"
        line += f" ({detail})" if outcome["result"] == "done" else f": {outcome['message']}"
        print(line)
    return 0 if status == 200 else 1
