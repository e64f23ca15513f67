"""The PostgreSQL engine (bridge.store.postgres) against a real server: migrations, group commit, a savepoint
per write, acknowledged means committed, snapshots, lost connections and a server restart."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import StoreClosedError, StoreError
from bridge.store import schema, schema_pg
from bridge.store.port import Tx
from bridge.store.postgres import PgTx, PipelinedTx, PostgresDatabase, translate_placeholders
from tests.pg_server import PgServer

KV = "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"
DEADLINE_S = 20.0


def put(key: str, value: int) -> Any:
    def fn(tx: Tx) -> str:
        tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (key, value))
        return key

    return fn


def count(tx: Tx) -> int:
    return int(tx.execute("SELECT count(*) FROM kv").fetchone()[0])


async def opened(url: str, migrations: list[str] | None = None, **kwargs: Any) -> PostgresDatabase:
    db = PostgresDatabase(url, [KV] if migrations is None else migrations, **kwargs)
    await db.open()
    return db


def columns_sqlite() -> dict[str, list[str]]:
    conn = sqlite3.connect(":memory:")
    for script in schema.MIGRATIONS:
        conn.executescript(script)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: sorted(r[1] for r in conn.execute(f"PRAGMA table_info({t})")) for t in tables}


async def test_migrations_give_the_sqlite_tables_and_columns_and_apply_once(pg_url: str) -> None:
    db = await opened(pg_url, schema_pg.MIGRATIONS)
    await db.close()
    db = await opened(pg_url, schema_pg.MIGRATIONS)  # a second open (a restart, a replica) applies nothing

    def tables(tx: Tx) -> dict[str, list[str]]:
        rows = tx.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row["table_name"], []).append(row["column_name"])
        return {t: sorted(c) for t, c in found.items()}

    pg_tables = await db.read(tables)
    # the types take what the repositories bind: a bool for publish, epoch microseconds beyond 32 bits
    evse = (
        "INSERT INTO ocpi_evse (country_code, party_id, location_id, evse_uid, status, publish,"
        " last_updated_us) VALUES ('DE', 'ABC', 'L1', 'E1', 'AVAILABLE', ?, ?)"
    )
    await db.write(lambda tx: tx.execute(evse, (True, 1_764_590_400_123_456)))
    stored = await db.read(
        lambda tx: tuple(tx.execute("SELECT publish, last_updated_us FROM ocpi_evse").fetchone())
    )
    assert stored == (True, 1_764_590_400_123_456)
    versions = await db.read(lambda tx: [r[0] for r in tx.execute("SELECT version FROM bridge_schema")])
    await db.close()
    assert versions == list(range(1, len(schema_pg.MIGRATIONS) + 1))
    sqlite_tables = columns_sqlite()
    assert {t: pg_tables[t] for t in sqlite_tables} == sqlite_tables
    assert set(pg_tables) - set(sqlite_tables) == {"bridge_schema", "bridge_lease"}
    # a new SQLite migration needs its PostgreSQL twin in schema_pg.py (the engines share repositories)
    assert len(schema.MIGRATIONS) == schema_pg.SQLITE_MIGRATIONS_MIRRORED


async def test_replicas_opening_together_apply_each_migration_once(pg_url: str) -> None:
    dbs = [PostgresDatabase(pg_url, schema_pg.MIGRATIONS) for _ in range(3)]
    await asyncio.gather(*(db.open() for db in dbs))
    versions = await dbs[0].read(lambda tx: [r[0] for r in tx.execute("SELECT version FROM bridge_schema")])
    await asyncio.gather(*(db.close() for db in dbs))
    assert sorted(versions) == list(range(1, len(schema_pg.MIGRATIONS) + 1))


async def test_concurrent_writes_share_commits(pg_url: str) -> None:
    db = await opened(pg_url)
    keys = await asyncio.gather(*(db.write(put(f"k{i}", i)) for i in range(300)))
    total = await db.read(count)
    await db.close()
    assert keys == [f"k{i}" for i in range(300)]
    assert total == 300
    assert db.writes == 300
    assert db.commits <= 30, f"{db.commits} commits for 300 concurrent writes: no group commit"


async def test_a_failing_write_rolls_back_only_itself(pg_url: str) -> None:
    db = await opened(pg_url)
    await db.write(put("taken", 0))

    def half_then_fail(tx: Tx) -> None:
        tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", ("half", 1))
        raise ValueError("the repository's own error")

    results = await asyncio.gather(
        db.write(put("a", 1)),
        db.write(half_then_fail),
        db.write(put("taken", 2)),  # primary key violation: the driver's error, as StoreError
        db.write(put("b", 3)),
        return_exceptions=True,
    )
    keys = await db.read(lambda tx: sorted(r["k"] for r in tx.execute("SELECT k FROM kv")))
    await db.close()
    assert results[0] == "a"
    assert results[3] == "b"
    assert isinstance(results[1], ValueError)
    assert isinstance(results[2], StoreError)
    assert "duplicate key" in str(results[2])
    assert keys == ["a", "b", "taken"]
    assert db.commits == 2  # the one before, and one for the group of four


async def test_acknowledged_means_committed_and_durable(pg_url: str) -> None:
    db = await opened(pg_url)
    setting = await db.write(lambda tx: tx.execute("SHOW synchronous_commit").fetchone()[0])
    with psycopg.connect(pg_url, autocommit=True) as other:
        for i in range(20):
            await db.write(put(f"k{i}", i))
            row = other.execute("SELECT v FROM kv WHERE k = %s", (f"k{i}",)).fetchone()
            assert row == (i,), f"write {i} acknowledged but not visible to another connection"
    await db.close()
    assert setting == "on"


async def test_a_snapshot_keeps_its_view_while_writes_go_on(pg_url: str) -> None:
    db = await opened(pg_url)
    await asyncio.gather(*(db.write(put(f"before{i}", i)) for i in range(5)))
    async with db.snapshot() as snap:
        assert await snap.run(count) == 5
        await asyncio.gather(*(db.write(put(f"during{i}", i)) for i in range(7)))
        assert await db.read(count) == 12  # other reads see every commit
        assert await snap.run(count) == 5  # the snapshot does not
        with pytest.raises(StoreError, match="read-only"):
            await snap.run(put("x", 0))
    await db.close()


async def test_rows_read_by_name_and_index_and_placeholders_in_literals(pg_url: str) -> None:
    db = await opened(pg_url)
    await db.write(put("a?b%c", 7))

    def select(tx: Tx) -> tuple[Any, ...]:
        row = tx.execute("SELECT k, v, '?%' AS lit FROM kv WHERE k = ? AND v = ?", ("a?b%c", 7)).fetchone()
        return (row["k"], row[1], row["lit"], tuple(row), row.keys())

    got = await db.read(select)
    bump = "UPDATE kv SET v = v + ? WHERE k = ?"
    many = await db.write(lambda tx: tx.executemany(bump, [(1, "a?b%c")] * 3))
    value = await db.read(lambda tx: tx.execute("SELECT v FROM kv").fetchone()[0])
    await db.close()
    assert got == ("a?b%c", 7, "?%", ("a?b%c", 7, "?%"), ["k", "v", "lit"])
    assert many.rowcount == 3
    assert value == 10


async def test_a_killed_connection_is_a_store_error_and_the_next_write_reconnects(pg_url: str) -> None:
    db = await opened(pg_url, application_name="oicp-bridge-under-test")
    await db.write(put("before", 0))
    with psycopg.connect(pg_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            ("oicp-bridge-under-test",),
        ).fetchone()
    assert killed == (2,)  # the writer and the reader
    with pytest.raises(StoreError):
        await db.write(put("lost", 1))
    with pytest.raises(StoreError):
        await db.read(count)
    await db.write(put("after", 2))
    keys = await db.read(lambda tx: sorted(r[0] for r in tx.execute("SELECT k FROM kv")))
    await db.close()
    assert keys == ["after", "before"]


async def test_the_engine_recovers_when_the_server_is_back(pg_private_server: PgServer) -> None:
    url = pg_private_server.url
    db = await opened(url)
    await db.write(put("before", 0))
    pg_private_server.stop(mode="immediate")  # as if it crashed
    with pytest.raises(StoreError) as caught:
        await db.write(put("down", 1))
    assert "postgres@" not in str(caught.value)  # the error names no connection string
    with pytest.raises(StoreError):
        await db.read(count)
    with pytest.raises(StoreError, match="cannot open a snapshot"):
        async with db.snapshot():
            pass
    pg_private_server.start()
    await db.write(put("after", 2))
    keys = await db.read(lambda tx: sorted(r[0] for r in tx.execute("SELECT k FROM kv")))
    await db.close()
    assert keys == ["after", "before"]  # the write answered with an error is not there; the others are


async def test_open_on_an_unreachable_server_is_a_store_error() -> None:
    from tests.pg_server import free_port

    db = PostgresDatabase(f"postgresql://nobody@127.0.0.1:{free_port()}/none", [KV])
    with pytest.raises(StoreError, match="cannot open the store on PostgreSQL"):
        await db.open()
    assert not db.is_open
    with pytest.raises(StoreClosedError):
        await db.write(put("x", 1))


async def test_close_finishes_queued_writes(pg_url: str) -> None:
    db = await opened(pg_url)
    pending = [asyncio.ensure_future(db.write(put(f"k{i}", i))) for i in range(50)]
    await asyncio.sleep(0)  # let them queue
    await db.close()
    assert [p.result() for p in pending] == [f"k{i}" for i in range(50)]
    db = await opened(pg_url, [KV])
    assert await db.read(count) == 50
    await db.close()


def test_a_tx_is_the_port() -> None:
    tx: Tx = PgTx.__new__(PgTx)  # mypy checks that both satisfy the Tx protocol
    pipelined: Tx = PipelinedTx.__new__(PipelinedTx)
    assert tx is not None
    assert pipelined is not None


# --- placeholder translation (pure) -------------------------------------------------------------------

unquoted = st.text(alphabet=st.sampled_from(list("abc ,()=?%\n")), max_size=40)
literal = st.text(alphabet=st.sampled_from(list("ab?%'\" -")), max_size=10).map(
    lambda s: "'" + s.replace("'", "''") + "'"
)


@given(st.lists(st.one_of(unquoted, literal), max_size=6))
def test_placeholders_outside_literals_become_psycopg_ones(parts: list[str]) -> None:
    sql = "".join(parts)
    translated = translate_placeholders(sql)
    # every ? outside a literal is %s; every other % is doubled; literals keep their text (with % doubled)
    expected = "".join(
        p.replace("%", "%%") if p.startswith("'") else p.replace("%", "%%").replace("?", "%s") for p in parts
    )
    assert translated == expected


@given(st.lists(st.one_of(unquoted, literal), max_size=6))
def test_numbered_placeholders_count_the_question_marks_outside_literals(parts: list[str]) -> None:
    translated = translate_placeholders("".join(parts), numbered=True)
    expected, count = [], 0
    for part in parts:
        if part.startswith("'"):
            expected.append(part)
            continue
        for ch in part:
            if ch == "?":
                count += 1
                expected.append(f"${count}")
            else:
                expected.append(ch)
    assert translated == "".join(expected)  # % stays as it is: libpq has no placeholders of its own


def test_comments_keep_their_question_marks() -> None:
    assert translate_placeholders("SELECT ? -- why?\n, ? /* ok? */") == "SELECT %s -- why?\n, %s /* ok? */"


async def test_a_failing_read_leaves_the_reader_usable(pg_url: str) -> None:
    db = await opened(pg_url)
    await db.write(put("a", 1))

    def broken(tx: Tx) -> None:
        tx.execute("SELECT count(*) FROM kv").fetchone()
        raise KeyError("the caller's own error")

    with pytest.raises(KeyError):
        await db.read(broken)
    with pytest.raises(StoreError, match="read failed"):
        await db.read(lambda tx: tx.execute("SELECT nothing FROM kv"))
    assert await db.read(count) == 1
    await db.close()


async def test_a_repeated_column_name_reads_the_first_as_sqlite_does(pg_url: str) -> None:
    db = await opened(pg_url)
    row = await db.read(lambda tx: tx.execute("SELECT 1 AS x, 2 AS x, 3 AS y").fetchone())
    await db.close()
    assert (row["x"], row["y"], tuple(row), len(row)) == (1, 3, (1, 2, 3), 3)
    assert repr(row) == "Row({'x': 1, 'y': 3})"
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    assert conn.execute("SELECT 1 AS x, 2 AS x").fetchone()["x"] == 1


async def test_a_snapshot_whose_server_goes_away_fails_with_store_error(pg_private_server: PgServer) -> None:
    db = await opened(pg_private_server.url)
    await db.write(put("a", 1))
    async with db.snapshot() as snap:
        assert await snap.run(count) == 1
        pg_private_server.stop(mode="immediate")
        with pytest.raises(StoreError, match="snapshot read failed"):
            await snap.run(count)
    await db.close()  # closing with the server gone is quiet
    assert not db.is_open


async def test_two_replicas_groups_never_interleave_so_they_cannot_deadlock(pg_url: str) -> None:
    """Two replicas' groups that lock the same rows in opposite orders (as intake writes lock the
    ``sequence`` row and Location rows) deadlocked, each deadlock stalling both for ``deadlock_timeout``.
    Every group takes the replicas' write lock first (``GROUP_BEGIN``): the second group waits for the
    first's COMMIT, and both commit every write."""
    first, second = await opened(pg_url), await opened(pg_url, [KV])
    await first.write(lambda tx: tx.executemany("INSERT INTO kv VALUES (?, 0)", [("x",), ("y",)]))
    spans: dict[str, tuple[float, float]] = {}
    inside = threading.Event()

    def cross(mine: str, theirs: str) -> Any:
        def fn(tx: Tx) -> str:
            # each statement's answer is read, so that it is waited for (pipeline mode would not wait)
            tx.execute("UPDATE kv SET v = v + 1 WHERE k = ? RETURNING v", (mine,)).fetchone()
            started = time.monotonic()  # this group holds the write lock from here
            inside.set()
            time.sleep(0.2)  # the other replica's group arrives meanwhile (it must wait for this one)
            tx.execute("UPDATE kv SET v = v + 10 WHERE k = ? RETURNING v", (theirs,)).fetchone()
            spans[mine] = (started, time.monotonic())
            return mine

        return fn

    async def second_group() -> list[Any]:
        await asyncio.get_running_loop().run_in_executor(None, inside.wait, DEADLINE_S)
        return list(await asyncio.gather(second.write(put("second-own", 2)), second.write(cross("y", "x"))))

    outcomes = await asyncio.gather(
        first.write(put("first-own", 1)), first.write(cross("x", "y")), second_group()
    )
    rows = await first.read(lambda tx: {r["k"]: r["v"] for r in tx.execute("SELECT k, v FROM kv")})
    await first.close()
    await second.close()
    assert outcomes == ["first-own", "x", ["second-own", "y"]]
    assert rows == {"first-own": 1, "second-own": 2, "x": 11, "y": 11}
    assert spans["x"][1] <= spans["y"][0]  # one group after the other, never both at once
    assert (first.commits, second.commits) == (2, 1)  # the seed, then one group each


SEQUENCE_SCHEMA = [
    "CREATE TABLE sequence (name TEXT PRIMARY KEY, value BIGINT NOT NULL);"
    "INSERT INTO sequence VALUES ('v', 0);"
    "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
    "CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);"
]


async def test_sequence_values_are_counted_in_memory_written_before_each_commit_and_never_repeat(
    pg_url: str,
) -> None:
    """The SQLite engine's rule (tests/bridge/test_database.py), on PostgreSQL."""

    def stored(tx: Tx) -> int:
        return int(tx.execute("SELECT value FROM sequence WHERE name = 'v'").fetchone()[0])

    db = await opened(pg_url, SEQUENCE_SCHEMA)
    try:
        three = await db.write(lambda tx: [db.next_in_sequence(tx, "v") for _ in range(3)])
        assert three == [1, 2, 3]
        assert await db.read(stored) == 3  # written with the commit that used them

        def taken_then_refused(tx: Tx) -> None:
            db.next_in_sequence(tx, "v")
            raise ValueError("this write is refused")

        results = await asyncio.gather(
            db.write(taken_then_refused),
            db.write(lambda tx: db.next_in_sequence(tx, "v")),
            return_exceptions=True,
        )
        assert isinstance(results[0], ValueError)
        assert results[1] == 5  # the refused write's value is a gap, not handed out again
        assert await db.read(stored) == 5

        def breaks_the_commit(tx: Tx) -> int:
            tx.execute("INSERT INTO child VALUES (42)")  # a deferred foreign key: COMMIT fails
            return db.next_in_sequence(tx, "v")

        with pytest.raises(StoreError):
            await db.write(breaks_the_commit)
        assert await db.read(stored) == 5  # that group did not commit
        assert await db.write(lambda tx: db.next_in_sequence(tx, "v")) == 7  # 6 never again
        assert await db.read(stored) == 7
        with pytest.raises(StoreError, match="no sequence 'missing'"):
            await db.write(lambda tx: db.next_in_sequence(tx, "missing"))
    finally:
        await db.close()
    other = await opened(pg_url, SEQUENCE_SCHEMA)  # another replica (or a restart) goes on from the table
    try:
        assert await other.write(lambda tx: other.next_in_sequence(tx, "v")) == 8
    finally:
        await other.close()


async def test_replicas_take_sequence_values_in_commit_order_and_never_the_same(pg_url: str) -> None:
    """Each replica counts in memory within its group; the write lock orders the groups, so values
    interleaved from two replicas' concurrent groups are all distinct and the row ends at the highest."""
    # small groups, so that the two replicas' groups alternate
    first = await opened(pg_url, SEQUENCE_SCHEMA, max_group=5)
    second = await opened(pg_url, SEQUENCE_SCHEMA, max_group=5)

    def take(db: PostgresDatabase) -> Any:
        return db.write(lambda tx: db.next_in_sequence(tx, "v"))

    try:
        taken = await asyncio.gather(*(take(db) for _ in range(100) for db in (first, second)))
        row = await first.read(
            lambda tx: tx.execute("SELECT value FROM sequence WHERE name = 'v'").fetchone()[0]
        )
    finally:
        await first.close()
        await second.close()
    assert sorted(taken) == list(range(1, 201))
    assert row == 200
    assert first.commits > 1
    assert second.commits > 1


async def test_a_failing_write_in_a_group_leaves_the_others_committed_exactly_once(pg_url: str) -> None:
    """The group first runs without savepoints; a write that raises sends it back to be run again, each
    write in its own savepoint. The writes around the failing one add to a counter: run twice, they count
    once, because the first run was rolled back whole."""
    db = await opened(pg_url, [KV, "INSERT INTO kv VALUES ('count', 0)"])

    def add_one(tx: Tx) -> int:
        return int(tx.execute("UPDATE kv SET v = v + 1 WHERE k = 'count' RETURNING v").fetchone()[0])

    def add_blind(tx: Tx) -> None:
        tx.execute("UPDATE kv SET v = v + 1 WHERE k = 'count'")  # its answer is never read

    def duplicate(tx: Tx) -> None:
        tx.execute("INSERT INTO kv VALUES ('count', 0)")  # primary key: fails at the server, not here

    try:
        results = await asyncio.gather(
            db.write(add_one), db.write(add_blind), db.write(duplicate), db.write(add_blind),
            db.write(add_one), return_exceptions=True,
        )  # fmt: skip
        total = await db.read(lambda tx: tx.execute("SELECT v FROM kv WHERE k = 'count'").fetchone()[0])
    finally:
        await db.close()
    assert results[0] == 1
    assert results[1] is None
    assert results[3] is None
    assert isinstance(results[2], StoreError)
    assert "duplicate key" in str(results[2])
    assert results[4] == 4
    assert total == 4
    assert db.reruns == 1  # the group ran twice; the first run committed nothing
    assert db.commits == 1


async def test_rowcount_is_read_after_the_answer_in_a_group(pg_url: str) -> None:
    """Statements in a group are pipelined; a ``rowcount`` read inside the write waits for the answer."""
    db = await opened(pg_url)
    await db.write(lambda tx: tx.executemany("INSERT INTO kv VALUES (?, 0)", [("a",), ("b",), ("c",)]))

    def counts(tx: Tx) -> tuple[int, int]:
        one = tx.execute("UPDATE kv SET v = 1 WHERE k IN ('a', 'b')").rowcount
        many = tx.executemany("UPDATE kv SET v = 2 WHERE k = ?", [("a",), ("b",), ("c",), ("x",)]).rowcount
        return one, many

    try:
        assert await db.write(counts) == (2, 3)
        assert db.reruns == 0
    finally:
        await db.close()


async def test_writes_queued_while_a_group_waits_for_the_write_lock_join_that_group(pg_url: str) -> None:
    """Another replica's group holds the write lock; this replica's group waits for it, and the writes that
    arrive meanwhile are taken into that group once it holds the lock: one COMMIT for all, not one for
    the first write and another for the rest."""
    first, second = await opened(pg_url), await opened(pg_url, [KV])
    holding, release = threading.Event(), threading.Event()

    def hold(tx: Tx) -> None:
        tx.execute("SELECT 1").fetchone()  # answered after the lock's answer: this group holds the lock
        holding.set()
        release.wait(DEADLINE_S)

    def waiting_for_the_lock(tx: Tx) -> int:
        sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return int(tx.execute(sql).fetchone()[0])

    try:
        held = asyncio.ensure_future(first.write(hold))
        await asyncio.get_running_loop().run_in_executor(None, holding.wait, DEADLINE_S)
        one = asyncio.ensure_future(second.write(put("k0", 0)))
        deadline = time.monotonic() + DEADLINE_S
        while await first.read(waiting_for_the_lock) == 0:  # second's group is at the lock
            assert time.monotonic() < deadline, "the second replica's group never waited for the lock"
        rest = [asyncio.ensure_future(second.write(put(f"k{i}", i))) for i in range(1, 6)]
        await asyncio.sleep(0)  # one turn of the loop: each of them queues its write (before its first await)
        release.set()
        await held
        keys = [await one, *[await w for w in rest]]
        total = await second.read(count)
    finally:
        release.set()
        await first.close()
        await second.close()
    assert keys == [f"k{i}" for i in range(6)]
    assert total == 6
    assert second.commits == 1  # the five that came while the group waited were committed with it
