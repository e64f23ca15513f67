"""Where ``Database`` runs each step: inline writes on the event loop, the others and BEGIN/COMMIT on the
store's thread; one group commit either way, each write isolated in its savepoint; a write that waits for
the file lock never stalls the loop; writes from another event loop are handed over; a failing commit
listener does not stop later writes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import StoreError
from bridge.store.database import Database

SCHEMA = ["CREATE TABLE t (v INTEGER);"]


def values(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT v FROM t ORDER BY rowid")]


async def test_inline_writes_run_on_the_loop_and_the_others_on_the_store_thread(tmp_path: Path) -> None:
    db = Database(tmp_path / "store.db", SCHEMA)
    await db.open()
    try:
        loop_thread = threading.get_ident()

        def insert(value: int) -> Callable[[sqlite3.Connection], int]:
            def write(conn: sqlite3.Connection) -> int:
                conn.execute("INSERT INTO t VALUES (?)", (value,))
                return threading.get_ident()

            return write

        def failing(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO t VALUES (99)")
            raise ValueError("this write is refused")

        commits = db.commits
        results = await asyncio.gather(
            db.write(insert(1), inline=True),
            db.write(insert(2)),
            db.write(failing, inline=True),
            db.write(insert(3), inline=True),
            return_exceptions=True,
        )
        assert results[0] == loop_thread
        assert results[1] != loop_thread
        assert isinstance(results[2], ValueError)  # its own error, its own savepoint undone
        assert results[3] == loop_thread
        assert await db.read(values) == [1, 2, 3]  # in order; 99 rolled back
        assert db.commits == commits + 1  # one transaction for the whole group
    finally:
        await db.close()


async def test_a_write_waiting_for_the_file_lock_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    db = Database(tmp_path / "store.db", SCHEMA)
    await db.open()
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        write = asyncio.ensure_future(
            db.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)").rowcount, inline=True)
        )
        ticks = 0
        async with asyncio.timeout(5):
            while ticks < 20:  # the loop keeps running while the write waits for the lock
                await asyncio.sleep(0.005)
                ticks += 1
        assert not write.done()
        other.execute("COMMIT")
        async with asyncio.timeout(10):
            assert await write == 1
        assert await db.read(values) == [1]
    finally:
        other.close()
        await db.close()


async def test_a_failed_commit_fails_every_write_of_its_group_and_later_writes_work(tmp_path: Path) -> None:
    # the store waits up to 10 s for another program's lock: shorten it so the locked BEGIN fails quickly
    db = Database(tmp_path / "store.db", SCHEMA, busy_timeout_ms=50)
    await db.open()
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        results = await asyncio.gather(
            db.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)"), inline=True),
            db.write(lambda conn: conn.execute("INSERT INTO t VALUES (2)")),
            return_exceptions=True,
        )
        assert all(isinstance(result, StoreError) for result in results)
        other.execute("COMMIT")
        await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (3)"), inline=True)
        assert await db.read(values) == [3]
    finally:
        other.close()
        await db.close()


async def test_a_write_from_another_event_loop_is_handed_over(tmp_path: Path) -> None:
    db = Database(tmp_path / "store.db", SCHEMA)
    await db.open()
    try:

        def elsewhere() -> int:
            async def write() -> int:
                return await db.write(
                    lambda conn: conn.execute("INSERT INTO t VALUES (7)").rowcount, inline=True
                )

            return asyncio.run(write())

        async with asyncio.timeout(10):
            assert await asyncio.get_running_loop().run_in_executor(None, elsewhere) == 1
        assert await db.read(values) == [7]
    finally:
        await db.close()


async def test_a_snapshot_keeps_its_view_while_writes_and_reads_go_on(tmp_path: Path) -> None:
    """A fullLoad reads its set page by page from one snapshot that Database owns: writes committed
    meanwhile are not in it, and every other read sees them at once."""
    db = Database(tmp_path / "store.db", SCHEMA)
    await db.open()
    try:
        await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
        async with db.snapshot() as snap:
            assert await snap.run(values) == [1]
            await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (2)"), inline=True)
            assert await snap.run(values) == [1]
            assert await db.read(values) == [1, 2]
        async with db.snapshot() as snap:
            assert await snap.run(values) == [1, 2]
    finally:
        await db.close()


async def test_close_finishes_queued_writes_and_then_refuses_new_ones(tmp_path: Path) -> None:
    db = Database(tmp_path / "store.db", SCHEMA)
    await db.open()

    def insert(value: int) -> Callable[[sqlite3.Connection], object]:
        return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (value,))

    queued = [asyncio.ensure_future(db.write(insert(v))) for v in range(5)]
    await asyncio.sleep(0)
    await db.close()
    assert all(task.done() and task.exception() is None for task in queued)
    with pytest.raises(StoreError):
        await db.write(lambda conn: None)
    reopened = Database(tmp_path / "store.db", SCHEMA)
    await reopened.open()
    try:
        assert await reopened.read(values) == [0, 1, 2, 3, 4]
    finally:
        await reopened.close()


async def test_an_unexpected_failure_of_a_group_fails_its_writes_and_later_writes_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection at the group seam (no write can make this happen today): the runner survives."""
    db = Database(tmp_path / "store.db", SCHEMA)
    await db.open()
    try:
        real = Database._run_group
        calls = 0

        async def once_broken(self: Database, group: list[Any]) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("injected")
            await real(self, group)

        monkeypatch.setattr(Database, "_run_group", once_broken)
        async with asyncio.timeout(10):
            with pytest.raises(StoreError, match="injected"):
                await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)"), inline=True)
            await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (2)"), inline=True)
        assert await db.read(values) == [2]
    finally:
        await db.close()


SEQUENCE_SCHEMA = [
    "CREATE TABLE sequence (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT INTO sequence VALUES ('v', 0);"
    "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
    "CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);"
]


async def test_sequence_values_are_counted_in_memory_written_before_each_commit_and_never_repeat(
    tmp_path: Path,
) -> None:
    def stored(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM sequence WHERE name = 'v'").fetchone()[0])

    db = Database(tmp_path / "store.db", SEQUENCE_SCHEMA)
    await db.open()
    try:
        three = await db.write(lambda tx: [db.next_in_sequence(tx, "v") for _ in range(3)], inline=True)
        assert three == [1, 2, 3]
        assert await db.read(stored) == 3  # written with the commit that used them

        def taken_then_refused(tx: sqlite3.Connection) -> None:
            db.next_in_sequence(tx, "v")
            raise ValueError("this write is refused")

        results = await asyncio.gather(
            db.write(taken_then_refused, inline=True),
            db.write(lambda tx: db.next_in_sequence(tx, "v")),  # on the store's thread
            return_exceptions=True,
        )
        assert isinstance(results[0], ValueError)
        assert results[1] == 5  # the refused write's value is a gap, not handed out again
        assert await db.read(stored) == 5

        def breaks_the_commit(tx: sqlite3.Connection) -> int:
            tx.execute("INSERT INTO child VALUES (42)")  # a deferred foreign key: COMMIT fails
            return db.next_in_sequence(tx, "v")

        with pytest.raises(StoreError):
            await db.write(breaks_the_commit, inline=True)
        assert await db.read(stored) == 5  # that group did not commit
        assert await db.write(lambda tx: db.next_in_sequence(tx, "v"), inline=True) == 7  # 6 never again
        assert await db.read(stored) == 7
        with pytest.raises(StoreError, match="no sequence 'missing'"):
            await db.write(lambda tx: db.next_in_sequence(tx, "missing"), inline=True)
    finally:
        await db.close()
    reopened = Database(tmp_path / "store.db", SEQUENCE_SCHEMA)  # a restart goes on from the table
    await reopened.open()
    try:
        assert await reopened.write(lambda tx: reopened.next_in_sequence(tx, "v"), inline=True) == 8
    finally:
        await reopened.close()
