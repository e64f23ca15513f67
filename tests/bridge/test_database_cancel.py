"""A write whose caller stops waiting (task cancelled, e.g. by a timeout) still commits, and the store
keeps serving later writes. (Before the fix the store's writer thread died on the cancelled future, so
every later write hung forever; the writes now run on a runner task and the store's thread, same rule.)"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from bridge.store.database import Database


async def test_a_cancelled_write_commits_and_later_writes_still_run(tmp_path: Path) -> None:
    db = Database(tmp_path / "store.db", ["CREATE TABLE t (v INTEGER);"])
    await db.open()
    try:
        entered, release = threading.Event(), threading.Event()

        def slow(conn: sqlite3.Connection) -> int:
            entered.set()
            release.wait(10)
            conn.execute("INSERT INTO t VALUES (1)")
            return 1

        task = asyncio.ensure_future(db.write(slow))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        task.cancel()
        release.set()
        async with asyncio.timeout(10):
            assert await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (2)").rowcount) == 1
            rows = await db.read(lambda conn: [r[0] for r in conn.execute("SELECT v FROM t ORDER BY v")])
        assert rows == [1, 2]
        assert task.cancelled()
    finally:
        await db.close()


async def test_many_concurrent_writes_each_get_their_own_answer(tmp_path: Path) -> None:
    db = Database(tmp_path / "store.db", ["CREATE TABLE t (v INTEGER);"])
    await db.open()
    try:

        def doubling(value: int) -> Callable[[sqlite3.Connection], int]:
            return lambda conn: value * 2

        results = await asyncio.gather(*(db.write(doubling(v)) for v in range(300)))
        assert results == [v * 2 for v in range(300)]
        assert db.commits < 300  # grouped: one commit covers many writes
    finally:
        await db.close()


async def test_a_cancelled_inline_write_still_commits(tmp_path: Path) -> None:
    """As for writes on the store's thread: once queued, an inline write runs and commits even if its
    caller (an OCPI request whose client hung up) stops waiting."""
    db = Database(tmp_path / "store.db", ["CREATE TABLE t (v INTEGER);"])
    await db.open()
    try:
        task = asyncio.ensure_future(
            db.write(lambda conn: conn.execute("INSERT INTO t VALUES (5)").rowcount, inline=True)
        )
        await asyncio.sleep(0)  # queued
        task.cancel()
        async with asyncio.timeout(10):
            await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (6)").rowcount, inline=True)
            rows = await db.read(lambda conn: [r[0] for r in conn.execute("SELECT v FROM t ORDER BY v")])
        assert rows == [5, 6]
        assert task.cancelled()
    finally:
        await db.close()
