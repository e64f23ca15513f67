"""``oicp-bridge status``: pending records, last push and errors per operator, dead letters, counts.

It asks the running daemon (``GET /status.json`` on the admin listener), so ``ready`` and ``problems``
are the daemon's own; when no daemon answers it reads the store file directly (read-only) and reports
the bridge as not ready. The exit status makes it a Nagios-style check: 0 ready and no dead letters,
1 dead letters or parked records (or a configuration problem), 2 not ready or not running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

from bridge.commands import CommandExit, add_config_argument, admin_url, load_config_or_exit
from bridge.config import BridgeConfig
from bridge.errors import StoreError
from bridge.leadership import operator_lease, source_lease
from bridge.status import leader_json, read_status
from bridge.store.database import read_file
from bridge.store.dialect import POSTGRESQL, SQLITE
from bridge.store.port import Tx

HELP = (
    "show pending records, last push and errors per operator, dead letters and counts per status; "
    "exit 0 ready, 1 dead letters, 2 not ready or not running"
)
OK, DEAD_LETTERS, NOT_READY = 0, 1, 2
ASK_TIMEOUT = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--json", action="store_true", help="machine-readable output (the same object as /status.json)"
    )


def render(status: dict[str, Any]) -> str:
    lines = ["ready" if status.get("ready") else "NOT READY: " + "; ".join(status.get("problems", []))]
    if status.get("warnings"):
        lines.append("needs a look: " + "; ".join(status["warnings"]))
    columns = ("pending", "in_flight", "delivered", "dead", "parked")
    lines.append(f"{'operator':<12}" + "".join(f"{c:>11}" for c in columns) + "  last success / last error")
    for operator_id, info in status["operators"].items():
        counts = "".join(f"{info.get(c, 0) or 0:>11}" for c in columns)
        last = info.get("last_success") or "never"
        error = info.get("last_error")
        lines.append(f"{operator_id:<12}{counts}  {last}" + (f" / {error}" if error else ""))
    for operator_id, info in status["operators"].items():
        data = info.get("evse_data")
        if data:
            dead = ", ".join(f"{code}: {n}" for code, n in data["dead_by_code"].items()) or "none"
            pending = (data.get("pending") or 0) + (data.get("in_flight") or 0)
            lines.append(
                f"{operator_id} EVSE data: {pending} pending, "
                f"{data['held_statuses']} statuses held for data, dead {dead}"
            )
            lines += [f"  {line}" for line in data["not_pushable"]]
    if status["records_by_oicp_status"]:
        lines.append("")
        lines.append(
            "by Hubject status: " + ", ".join(f"{k} {v}" for k, v in status["records_by_oicp_status"].items())
        )
    if status["not_pushed"]:
        lines.append("not pushed: " + ", ".join(f"{k}: {v}" for k, v in status["not_pushed"].items()))
    if status.get("feeds"):
        lines.append("")
        lines.append("OCPI feeds:")
        for feed in status["feeds"]:
            state = "STALE" if feed["stale"] else "failing" if feed["failing"] else "alive"
            alive = feed["last_success"] or "never"
            line = f"  {feed['name']} ({feed['kind']}): {state}, last sign of life {alive}"
            if feed["last_error"]:
                line += f"; last error {feed['last_error_at']}: {feed['last_error']}"
            lines.append(line)
    if status["dead_letters"]:
        lines.append("")
        lines.append("dead letters and parked records:")
        for dead in status["dead_letters"]:
            lines.append(
                f"  {dead['operator_id']} {dead['evse_id']} {dead['state']} {dead['code']}: {dead['reason']}"
            )
    return "\n".join(lines)


async def ask_daemon(url: str) -> dict[str, Any] | None:
    """The running daemon's /status.json, or None if nothing answers there as the bridge does."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT)) as session,
            session.get(url) as response,
        ):
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return body if isinstance(body, dict) and "operators" in body and "ready" in body else None


def read_store(config: BridgeConfig, url: str) -> dict[str, Any]:
    """The store's figures, read without the daemon (read-only: no lock, no migration)."""
    operator_ids = [str(op.operator_id) for op in config.operators]

    def read(tx: Tx) -> dict[str, Any]:
        dialect = POSTGRESQL if config.store.is_postgres else SQLITE
        return read_status(
            tx, operator_ids, time.time(), stale_after=config.ocpi.stale_after, dialect=dialect
        )

    shown = config.store.display_url
    try:
        if config.store.is_postgres:
            from bridge.store.pg_leases import leaders  # the postgres extra, only when configured
            from bridge.store.postgres import read_once

            names = [operator_lease(op.operator_id) for op in config.operators]
            names += [source_lease(source.versions_url) for source in config.ocpi.sources]

            def read_with_leaders(tx: Tx) -> dict[str, Any]:
                body = read(tx)
                body["leaders"] = [leader_json(leader) for leader in leaders(tx, names)]
                return body

            status = read_once(config.store.url, read_with_leaders)
        else:
            store = config.store.sqlite_path
            shown = str(store)
            if not store.exists():
                print(
                    f"no store at {store}: the bridge has not run with this configuration yet",
                    file=sys.stderr,
                )
                raise CommandExit(NOT_READY)
            status = read_file(store, read)
    except StoreError as exc:
        print(f"cannot read the store at {shown}: {exc}", file=sys.stderr)
        raise CommandExit(NOT_READY) from None
    status["ready"] = False
    status["problems"] = [f"the bridge is not running (no answer at {url}); figures read from {shown}"]
    return status


def exit_status(status: dict[str, Any]) -> int:
    if not status.get("ready"):
        return NOT_READY
    dead = any((info.get("dead") or 0) + (info.get("parked") or 0) for info in status["operators"].values())
    return DEAD_LETTERS if dead or status.get("dead_letters") else OK


def run(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args).config
    url = f"{admin_url(config)}/status.json"
    status = asyncio.run(ask_daemon(url)) or read_store(config, url)
    print(json.dumps(status, indent=2) if args.json else render(status))
    return exit_status(status)
