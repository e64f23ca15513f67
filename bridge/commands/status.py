"""``oicp-bridge status``: pending records, last push and errors per operator, dead letters, counts.

Reads the store file directly (read-only), so it works whether or not the daemon is running.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from typing import Any

from bridge.commands import add_config_argument
from bridge.config import config_path, load_config
from bridge.errors import ConfigError
from bridge.status import read_status

HELP = "show pending records, last push and errors per operator, dead letters and counts per status"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def render(status: dict[str, Any]) -> str:
    lines = [f"{status['state'].upper().replace('_', ' ')}: {status['reason']}", ""]
    columns = ("pending", "in_flight", "delivered", "dead", "parked")
    lines.append(f"{'operator':<12}" + "".join(f"{c:>11}" for c in columns) + "  last success / last error")
    for operator_id, info in status["operators"].items():
        counts = "".join(f"{info.get(c, 0) or 0:>11}" for c in columns)
        last = info.get("last_success") or "never"
        error = info.get("last_error")
        lines.append(f"{operator_id:<12}{counts}  {last}" + (f" / {error}" if error else ""))
    if status["records_by_oicp_status"]:
        lines.append("")
        lines.append(
            "by Hubject status: " + ", ".join(f"{k} {v}" for k, v in status["records_by_oicp_status"].items())
        )
    if status["not_pushed"]:
        lines.append("not pushed: " + ", ".join(f"{k}: {v}" for k, v in status["not_pushed"].items()))
    if status["feeds"]:
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


def run(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return 1
    store = config.store.sqlite_path
    if not store.exists():
        print(f"no store at {store}: the bridge has not run with this configuration yet", file=sys.stderr)
        return 1
    try:
        conn = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            status = read_status(
                conn,
                [str(op.operator_id) for op in config.operators],
                time.time(),
                stale_after=config.ocpi.stale_after,
            )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        print(f"cannot read the store at {store}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else render(status))
    return 0
