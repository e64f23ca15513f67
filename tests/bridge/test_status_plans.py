"""The status read (every /ready, /status and metrics scrape) finds the waiting rows on the outbox indexes.

With EVSE data rows in the store, the backlog's age and the held statuses need columns the
``(operator_id, state, …)`` indexes lack; SQLite without ANALYZE statistics then planned a range scan of the
operator's whole primary key (every row of the operator, 100 000 at a large CPO: 0.18 s per read). This test
asks SQLite for the plan of every statement the status read runs and refuses any that walks an operator's
rows by primary key or scans a table, but for the per-state counts, which read the covering index.
Plans do not depend on the number of rows (no statistics), so a small store shows them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bridge import status
from bridge.store.database import Database
from bridge.store.dialect import SQLITE
from bridge.store.schema import MIGRATIONS

OPERATOR = "DE*OBD"


class PlanningTx:
    """A transaction that also notes the query plan of every statement it runs."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.plans: list[tuple[str, list[str]]] = []

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> sqlite3.Cursor:
        plan = [row[3] for row in self.conn.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]
        self.plans.append((sql, plan))
        return self.conn.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> sqlite3.Cursor:
        return self.conn.executemany(sql, parameters)


async def _store_with_data_rows(path: Path) -> sqlite3.Connection:
    db = Database(path, MIGRATIONS)
    await db.open()
    await db.close()
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    conn.executemany(
        "INSERT INTO outbox (operator_id, evse_id, action, oicp_status, ocpi_status, last_updated_us, "
        "source, version, state, pending_since) "
        "VALUES (?, ?, 'update', 'Available', 'AVAILABLE', 1, ?, ?, ?, ?)",
        [
            (OPERATOR, f"DE*OBD*E{i}", f"DE/OBD/L/{i}", i, state, 10.0 + i if state == "pending" else None)
            for i, state in enumerate(["pending", "delivered", "in_flight", "parked", "dead", "delivered"])
        ],
    )
    conn.executemany(
        "INSERT INTO evse_data_outbox (operator_id, evse_id, action, record, source, version, state, held, "
        "dead_code) VALUES (?, ?, 'update', '{}', 's', ?, ?, ?, ?)",
        [
            (OPERATOR, f"DE*OBD*E{i}", i, state, held, "018" if state == "dead" else None)
            for i, (state, held) in enumerate(
                [("pending", 0), ("delivered", 1), ("dead", 0), ("delivered", 1), ("delivered", 1)]
            )
        ],
    )
    conn.commit()
    return conn


async def test_the_status_read_walks_no_operator_s_rows_by_primary_key(tmp_path: Path) -> None:
    conn = await _store_with_data_rows(tmp_path / "store.db")
    try:
        tx = PlanningTx(conn)
        view = status._read_store(tx, [OPERATOR], False, SQLITE)
    finally:
        conn.close()
    # what it read is right: E0's pending status waits for its data (not held yet), so it is counted as
    # held and does not age the backlog; E3 is parked, its data held; E2's data record is dead
    assert view.operators[OPERATOR].oldest_pending_since is None
    assert view.operators[OPERATOR].oldest_unacknowledged_since is None  # E2 in flight, never pending
    assert view.evse_data[OPERATOR].held_statuses == 1
    assert view.evse_data[OPERATOR].dead_by_code == {"018": 1}
    walks = [
        (sql, step)
        for sql, plan in tx.plans
        for step in plan
        if ("outbox" in step and "PRIMARY KEY (operator_id=?)" in step)
        or (step.startswith("SCAN") and "outbox" in step and "COVERING INDEX" not in step)
    ]
    assert walks == []
    assert any("MIN(" in sql for sql, _ in tx.plans)  # the backlog's age was read, on the index
