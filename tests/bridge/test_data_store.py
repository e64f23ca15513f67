"""The EVSE data outbox in a real SQLite store: the set-based settlement of a data fullLoad does exactly what
folding ``decide.fullload_delivered`` over the rows does, statuses waiting for data are released by a data
acknowledgement (with a new version) and by a data fullLoad, and a data delete waits for its status delete."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridge.evse_data import decide
from bridge.evse_data.decide import DataDesired, DataRow
from bridge.mapping import Action
from bridge.outbox import Desired, RecordState
from bridge.store import schema_pg
from bridge.store.database import Database
from bridge.store.evse_data import DataOutboxStore, DataSnapshot, to_row
from bridge.store.outbox import OutboxStore
from bridge.store.port import Tx
from bridge.store.postgres import PostgresDatabase
from bridge.store.schema import MIGRATIONS
from oicp.ids import OperatorID
from oicp.models import ActionType, EvseStatus

OP = OperatorID("DE*ABC")
NOW = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """The store on both engines: the data outbox's SQL is written for SQLite and PostgreSQL alike."""
    if request.param == "sqlite":
        db: Any = Database(tmp_path / "bridge.db", MIGRATIONS)
    else:
        db = PostgresDatabase(request.getfixturevalue("pg_url"), schema_pg.MIGRATIONS)
    await db.open()
    yield db
    await db.close()


def record(n: int, content: str = "a") -> DataDesired:
    text = f'{{"EvseID":"DE*ABC*E{n}","c":"{content}"}}'
    return DataDesired(Action.UPDATE, text, hashlib.sha256(text.encode()).hexdigest(), f"DE/ABC/L/{n}")


WITHDRAWN = DataDesired(Action.DELETE, None, None, "")


async def rows(db: Database) -> dict[str, DataRow]:
    def run(tx: Tx) -> dict[str, DataRow]:
        return {f["evse_id"]: to_row(f) for f in tx.execute("SELECT * FROM evse_data_outbox")}

    return await db.read(run)


async def observe(db: Database, store: DataOutboxStore, n: int, desired: DataDesired) -> None:
    await db.write(lambda tx: store.observe(tx, str(OP), f"DE*ABC*E{n}", desired, NOW))


async def status(db: Database, outbox: OutboxStore, n: int) -> None:
    desired = Desired(Action.UPDATE, EvseStatus.AVAILABLE, "AVAILABLE", 1, f"DE/ABC/L/{n}")
    await db.write(lambda tx: outbox.observe(tx, str(OP), f"DE*ABC*E{n}", desired, NOW))


async def test_the_set_based_full_load_settlement_equals_the_pure_rule(engine: Database) -> None:
    store = DataOutboxStore(engine, clock=lambda: NOW)
    for n in range(1, 7):
        await observe(engine, store, n, record(n))
    claimed = await store.claim(OP, 3)  # E1..E3 acknowledged: held
    await store.delivered(OP, claimed.records, NOW)
    await observe(engine, store, 2, WITHDRAWN)  # a pending delete of a held record
    await observe(engine, store, 3, record(3, "b"))  # a pending update of a held record
    out = await store.claim(OP, 1)  # E2's delete in flight (left to its answer)
    assert [r.evse_id for r in out.records] == ["DE*ABC*E2"]
    second = await store.claim(OP, 1)
    await store.refuse(OP, second.records, "018", "refused")  # E3: dead
    before = await rows(engine)

    def watermark(tx: Tx) -> int:
        return int(tx.execute("SELECT value FROM sequence WHERE name = 'evse_data_version'").fetchone()[0])

    mark = await engine.read(watermark)
    await observe(engine, store, 6, record(6, "later"))  # changed after the snapshot
    after_change = await rows(engine)
    await store.fullload_finished(OP, DataSnapshot(mark, 5), NOW + 1)
    expected: dict[str, Any] = {}
    for evse_id, row in after_change.items():
        if row.state is RecordState.DEAD and row.action is Action.UPDATE:
            expected[evse_id] = replace(row, held=False, acked_record=None, acked_hash=None)
        elif row.state is RecordState.IN_FLIGHT:
            expected[evse_id] = row
        else:
            expected[evse_id] = decide.fullload_delivered(row, mark, NOW + 1, NOW)
    assert await rows(engine) == expected
    assert before["DE*ABC*E2"].state is RecordState.IN_FLIGHT


async def test_a_data_acknowledgement_releases_the_held_status_with_a_new_version(engine: Database) -> None:
    store = DataOutboxStore(engine, clock=lambda: NOW)
    outbox = OutboxStore(engine)
    await status(engine, outbox, 1)
    await observe(engine, store, 1, record(1))
    held = await outbox.claim(OP, 10, data_first=True)
    assert held == []  # the status waits for its data

    def version(tx: Tx) -> int:
        return int(tx.execute("SELECT version FROM outbox").fetchone()[0])

    before = await engine.read(version)
    claimed = await store.claim(OP, 10)
    assert claimed.records[0].action is ActionType.INSERT
    assert await store.delivered(OP, claimed.records, NOW) == 1
    assert await engine.read(version) > before
    assert [str(r.evse_id) for r in await outbox.claim(OP, 10, data_first=True)] == ["DE*ABC*E1"]


async def test_a_data_delete_waits_for_the_status_delete(engine: Database) -> None:
    store = DataOutboxStore(engine, clock=lambda: NOW)
    outbox = OutboxStore(engine)
    await status(engine, outbox, 1)
    await observe(engine, store, 1, record(1))
    await store.delivered(OP, (await store.claim(OP, 10)).records, NOW)
    await outbox.delivered(OP, await outbox.claim(OP, 10, data_first=True), NOW)
    # withdrawn: the status delete first
    gone = Desired(Action.DELETE, None, "REMOVED", 2, "DE/ABC/L/1")
    await engine.write(lambda tx: outbox.observe(tx, str(OP), "DE*ABC*E1", gone, NOW))
    await observe(engine, store, 1, WITHDRAWN)
    waiting = await store.claim(OP, 10)
    assert waiting.records == []
    assert waiting.waiting == 1
    await outbox.delivered(OP, await outbox.claim(OP, 10, data_first=True), NOW)
    deletes = await store.claim(OP, 10)
    assert [(r.action, r.record) for r in deletes.records] == [(ActionType.DELETE, record(1).record)]


async def test_an_unknown_outcome_of_a_record_changed_while_it_was_out_leaves_the_row_unsure(
    engine: Database,
) -> None:
    """A data push whose outcome is unknown (a timeout) may still land at Hubject, even after the record
    that changed while it was out has been pushed: the row must be unsure, so that once the doubt's quiet
    period is over the newest record is pushed once more (as the status outbox does)."""
    store = DataOutboxStore(engine, clock=lambda: NOW)
    await observe(engine, store, 1, record(1, "a"))
    claimed = await store.claim(OP, 10)
    await observe(engine, store, 1, record(1, "b"))  # changed while the push of "a" is out
    await store.release(OP, claimed.records, "timed out", unsure_for=30)
    row = (await rows(engine))["DE*ABC*E1"]
    assert (row.state, row.unsure, row.unsure_until) == (RecordState.PENDING, True, NOW + 30)
    assert (row.sent_version, row.sent_action, row.last_error) == (None, None, "timed out")
    assert row.record == record(1, "b").record
    assert await store.settle(OP) == (0, NOW + 30)  # its doubt ends then


async def test_a_refusal_of_a_record_changed_while_it_was_out_leaves_the_new_record_pending(
    engine: Database,
) -> None:
    """Hubject refused the record sent, but the row holds a newer one: that one is pending (it may be
    accepted), no longer marked as sent, with Hubject's reason shown."""
    store = DataOutboxStore(engine, clock=lambda: NOW)
    await observe(engine, store, 1, record(1, "a"))
    claimed = await store.claim(OP, 10)
    await observe(engine, store, 1, record(1, "b"))
    assert await store.refuse(OP, claimed.records, "018", "refused") == 0
    row = (await rows(engine))["DE*ABC*E1"]
    assert (row.state, row.sent_version, row.sent_action) == (RecordState.PENDING, None, None)
    assert (row.last_error, row.dead_code, row.record) == ("refused", None, record(1, "b").record)
