"""The PostgreSQL engine's pipelined groups at libpq's level (bridge.store.pg_pipeline) against a real server:
named prepared statements that outlive rollbacks and heal when they go stale, a group larger than the
socket's buffers, errors in the middle of a group, and reads made ahead. (The numbered placeholders and the
pipelined Tx's port check sit beside their twins in test_pg_database.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from bridge.errors import StoreError
from bridge.store.port import ReadAhead, Tx
from bridge.store.postgres import PostgresDatabase

KV = "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"
UPSERT = "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"


async def opened(url: str, migrations: list[str] | None = None) -> PostgresDatabase:
    db = PostgresDatabase(url, [KV] if migrations is None else migrations)
    await db.open()
    return db


def value(key: str) -> Any:
    return lambda tx: tx.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()[0]


async def test_prepared_statements_outlive_a_failed_group_and_a_rollback(pg_url: str) -> None:
    """A group whose last write raises is rolled back and run again in savepoints, where psycopg runs the
    statements itself, each write's undone by ROLLBACK TO SAVEPOINT: the statements the pipelined runs
    prepared stay usable by the next groups. (Had psycopg prepared the six upserts there itself, it would
    have dropped every prepared statement of the session, DEALLOCATE ALL, at that ROLLBACK.)"""
    db = await opened(pg_url)

    def then_raise(tx: Tx) -> None:
        tx.execute(UPSERT, ("a", 1))
        raise ValueError("the write's own error")

    try:
        await db.write(lambda tx: tx.execute(UPSERT, ("a", 0)))
        results = await asyncio.gather(
            *(db.write(lambda tx: tx.execute(UPSERT, ("b", 2))) for _ in range(6)),
            db.write(then_raise),
            return_exceptions=True,
        )
        reruns = db.reruns
        for number in range(5):  # each its own group, pipelined, with the statements prepared before

            def upsert(tx: Tx, n: int = number) -> None:
                tx.execute(UPSERT, ("a", 10 + n))

            await db.write(upsert)
        assert await db.read(value("a")) == 14
        assert await db.read(value("b")) == 2
    finally:
        await db.close()
    assert isinstance(results[-1], ValueError)
    assert db.reruns == reruns  # none of the later groups failed


async def test_a_statement_gone_stale_under_another_replicas_migration_heals(pg_url: str) -> None:
    """Another replica changes a table (a rolling deploy's migration): a prepared ``SELECT *`` of it can no
    longer run ("cached plan must not change result type"). That group runs again in savepoints, unprepared,
    and the statements are prepared anew: later groups run pipelined again."""
    db = await opened(pg_url)
    read_all = "SELECT * FROM kv WHERE k = ?"
    try:
        await db.write(lambda tx: tx.execute(UPSERT, ("a", 1)))
        first = await db.write(lambda tx: tuple(tx.execute(read_all, ("a",)).fetchone()))
        with psycopg.connect(pg_url, autocommit=True) as other:
            other.execute("ALTER TABLE kv ADD COLUMN note TEXT")
        after = await db.write(lambda tx: tuple(tx.execute(read_all, ("a",)).fetchone()))
        reruns = db.reruns
        again = [await db.write(lambda tx: tuple(tx.execute(read_all, ("a",)).fetchone())) for _ in range(3)]
    finally:
        await db.close()
    assert first == ("a", 1)
    assert after == ("a", 1, None)
    assert again == [("a", 1, None)] * 3
    assert db.reruns == reruns  # healed: no group after the stale one was run again


async def test_a_group_larger_than_the_socket_buffers_neither_blocks_nor_loses_a_write(pg_url: str) -> None:
    """Thousands of statements of 8 KB each, none of whose answers is read until the COMMIT: while the socket
    takes no more, the server's answers are read (else both sides could wait on full buffers forever)."""
    db = await opened(pg_url, ["CREATE TABLE blob (k INTEGER PRIMARY KEY, body TEXT NOT NULL)"])
    body = "x" * 8192

    def many(tx: Tx) -> None:
        for number in range(3000):
            tx.execute("INSERT INTO blob (k, body) VALUES (?, ?)", (number, body))

    try:
        await asyncio.wait_for(db.write(many), timeout=60)
        totals = "SELECT count(*), sum(length(body)) FROM blob"
        stored = await db.read(lambda tx: tx.execute(totals).fetchone())
    finally:
        await db.close()
    assert tuple(stored) == (3000, 3000 * 8192)


async def test_an_error_read_in_the_middle_of_a_group_fails_only_its_write(pg_url: str) -> None:
    """A write reads an answer after a bad statement of another write (the pipeline aborted everything after
    it): the bad write gets its error, every other write of the group commits once."""
    db = await opened(pg_url)

    def bad(tx: Tx) -> None:
        tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", ("n", None))  # NOT NULL, at the server

    def reads(tx: Tx) -> int:
        tx.execute(UPSERT, ("r", 7))
        return int(tx.execute("SELECT v FROM kv WHERE k = ?", ("r",)).fetchone()[0])

    try:
        results = await asyncio.gather(
            db.write(lambda tx: tx.execute(UPSERT, ("w", 1))), db.write(bad), db.write(reads),
            return_exceptions=True,
        )  # fmt: skip
        stored = await db.read(lambda tx: dict(tx.execute("SELECT k, v FROM kv").fetchall()))
    finally:
        await db.close()
    assert isinstance(results[1], StoreError)
    assert "null value" in str(results[1])
    assert results[2] == 7
    assert stored == {"w": 1, "r": 7}


# --- reads made ahead (Engine.write_reading) --------------------------------------------------------


async def test_a_groups_reads_are_made_ahead_and_handed_to_their_writes(pg_url: str) -> None:
    """Every reading write of a group gets its rows as they were at the group's start, and the changes the
    earlier writes recorded; after a plain write they get none (they read again themselves)."""
    db = await opened(pg_url)
    handed: list[Any] = []

    def reading(key: str) -> Any:
        def fn(tx: Tx, ahead: ReadAhead | None) -> None:
            if ahead is None:
                handed.append((key, None))
            else:
                handed.append((key, [tuple(r) for r in ahead.rows.fetchall()], dict(ahead.changes.notes)))
                ahead.changes.notes[key] = True
            tx.execute(UPSERT, (key, 5))

        return fn

    read = ("SELECT k, v FROM kv WHERE k IN ('a', 'b')", ())
    try:
        await db.write(lambda tx: tx.executemany(UPSERT, [("a", 1), ("b", 2)]))
        await asyncio.gather(
            db.write_reading(read, reading("a")), db.write_reading(read, reading("b")),
            db.write(lambda tx: tx.execute(UPSERT, ("c", 3))), db.write_reading(read, reading("d")),
        )  # fmt: skip
        commits = db.commits
    finally:
        await db.close()
    assert commits == 2  # the four writes were one group
    before = [("a", 1), ("b", 2)]
    assert handed[0] == ("a", before, {})
    assert handed[1] == ("b", before, {"a": True})  # read before "a" wrote: what "a" noted tells it
    assert handed[2] == ("d", None)  # after the plain write, nothing holds


async def test_a_group_run_again_in_savepoints_hands_no_read_ahead(pg_url: str) -> None:
    db = await opened(pg_url)
    handed: list[bool] = []

    def reading(tx: Tx, ahead: ReadAhead | None) -> None:
        handed.append(ahead is not None)
        tx.execute(UPSERT, ("a", 1))

    def bad(tx: Tx) -> None:
        tx.execute("INSERT INTO kv (k, v) VALUES ('n', NULL)")

    try:
        results = await asyncio.gather(
            db.write_reading(("SELECT 1", ()), reading), db.write(bad), return_exceptions=True
        )
    finally:
        await db.close()
    assert results[0] is None
    assert isinstance(results[1], StoreError)
    assert handed == [True, False]  # the first run (rolled back), then the run in savepoints
