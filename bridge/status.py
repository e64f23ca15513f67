"""What the status page, ``/status.json`` and ``oicp-bridge status`` show, read from the store.

``read_status`` is a plain function over a SQLite connection, so the CLI can read a stopped bridge's
file and the admin app the running one's.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

DEAD_LETTERS_SHOWN = 50


def _when(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def read_status(conn: sqlite3.Connection, operator_ids: list[str], now: float) -> dict[str, Any]:
    operators: dict[str, dict[str, Any]] = {}
    for operator_id in operator_ids:
        operators[operator_id] = {
            "pending": 0,
            "in_flight": 0,
            "delivered": 0,
            "dead": 0,
            "parked": 0,
            "oldest_pending_age_s": None,
            "last_success": None,
            "last_error": None,
            "last_error_at": None,
            "failing_since": None,
            "last_fullload": None,
            "last_fullload_count": None,
        }
    for operator_id, state, count, oldest in conn.execute(
        "SELECT operator_id, state, COUNT(*), MIN(pending_since) FROM outbox GROUP BY operator_id, state"
    ):
        entry = operators.setdefault(operator_id, {"pending": 0})
        entry[state] = count
        if state == "pending" and oldest is not None:
            entry["oldest_pending_age_s"] = round(max(0.0, now - oldest), 3)
    for row in conn.execute("SELECT * FROM operator_state"):
        entry = operators.setdefault(row["operator_id"], {})
        entry.update(
            last_success=_when(row["last_success_at"]),
            last_error=row["last_error"],
            last_error_at=_when(row["last_error_at"]),
            failing_since=_when(row["failing_since"]),
            last_fullload=_when(row["last_fullload_at"]),
            last_fullload_count=row["last_fullload_count"],
        )
    by_status = {
        status: count
        for status, count in conn.execute(
            "SELECT oicp_status, COUNT(*) FROM outbox "
            "WHERE action = 'update' AND state NOT IN ('dead', 'parked') GROUP BY oicp_status ORDER BY 1"
        )
    }
    by_ocpi_status = dict(
        conn.execute("SELECT ocpi_status, COUNT(*) FROM outbox GROUP BY ocpi_status ORDER BY 1")
    )
    dead_letters = [
        {
            "operator_id": row["operator_id"],
            "evse_id": row["evse_id"],
            "state": row["state"],
            "code": row["dead_code"],
            "reason": row["dead_reason"],
            "source": row["source"],
        }
        for row in conn.execute(
            "SELECT operator_id, evse_id, state, dead_code, dead_reason, source FROM outbox "
            "WHERE state IN ('dead', 'parked') ORDER BY operator_id, evse_id LIMIT ?",
            (DEAD_LETTERS_SHOWN,),
        )
    ]
    not_pushed = dict(conn.execute("SELECT reason, COUNT(*) FROM not_pushed GROUP BY reason ORDER BY 1"))
    return {
        "generated_at": _when(now),
        "operators": operators,
        "records_by_oicp_status": by_status,
        "records_by_ocpi_status": by_ocpi_status,
        "dead_letters": dead_letters,
        "not_pushed": not_pushed,
    }
