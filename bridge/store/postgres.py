"""The store on PostgreSQL (psycopg 3, synchronous connections on the store's threads), with group commit.

The same public interface and rules as ``bridge.store.database.Database`` (the SQLite engine), so the
repositories run on either through the ``Tx`` port (``bridge.store.port``):

- Every write is a function ``fn(tx) -> T``. Writes queue up; one runner task takes everything queued (up to
  ``max_group``) and hands the whole group to the store's writer thread in one step: ``BEGIN``, the writes,
  one ``COMMIT``. A write that raises rolls back only its own changes and its caller gets the error; the
  others commit.
- Every statement is a network round trip, so a group first runs at once (``_run_pipelined``): no
  savepoints, and in libpq's pipeline mode (``bridge.store.pg_pipeline``: named prepared statements, sent
  without psycopg's cursors), where a statement whose result is not read (an UPDATE, an upsert) does not
  wait for its answer. The writes that start with a read (``write_reading``: the status fast path) have
  their reads sent together at the group's start, one round trip for all; each write is handed its rows
  with what the group's earlier writes recorded they changed (``bridge.store.port.ReadAhead``). If any
  write raises (its error may surface at a later statement), the whole group is rolled back and run again
  the safe way (``_run_in_savepoints``): each write in its own ``SAVEPOINT``, so the failing one is undone
  alone, every read made then. A write function is a function of its transaction, so running it again
  after a rollback is running it once.
- ``await write(...)`` returns only after the ``COMMIT`` that holds the change, and the session runs with
  ``synchronous_commit = on``: the commit has reached the server's WAL on disk before it is acknowledged,
  so an acknowledged OCPI request is durable.
- ``inline=True`` is accepted for the port's sake but the write still runs on the writer thread: on
  PostgreSQL every statement is a network round trip, which must never stall the event loop, and the
  group goes to the thread in one hop (not one per write), so the thread hand-over the SQLite engine avoids
  by running inline costs one hop per group here.
- Reads run on a reader connection and thread, each read in its own ``REPEATABLE READ READ ONLY``
  transaction (one consistent view per read function, like a read on SQLite's WAL). ``snapshot()`` is a
  transaction of that kind that spans awaits, on a connection and thread of its own.
- The port's SQL uses ``?`` placeholders (sqlite3's qmark style); they are translated to psycopg's ``%s``
  (``translate_placeholders``), once per distinct statement.
- A lost connection fails the writes of its group (or the read) with ``StoreError``, never a driver
  exception; the next group (or read) connects again, so the engine recovers by itself when the server is
  back.

Several processes may open one database: that is what replicas are (contract "Several replicas"). Who
pushes for an operator is decided by leases (``bridge.store.pg_leases``), not by a lock on the store.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.rows import BaseRowFactory

from bridge.errors import StoreClosedError, StoreError
from bridge.store.answers import answer
from bridge.store.dialect import POSTGRESQL
from bridge.store.pg_pipeline import PgPipeline, Prepared, Results
from bridge.store.port import GroupChanges, Read, ReadAhead, Rows, Tx

if TYPE_CHECKING:  # psycopg exports the row factories' cursor type only from a private module
    from psycopg._cursor_base import BaseCursor

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10
# Serialises migrations between replicas starting at once (any constant; "oicp" in ASCII).
MIGRATION_LOCK_KEY = 0x6F696370
# Serialises the write groups of all replicas ("oicw"). Every intake write locks the one ``sequence`` row
# (the outbox's version counter) and Location rows; two replicas' groups that lock them in different
# orders deadlocked, each deadlock stalling both for deadlock_timeout (1 s), which made three replicas
# ~20x slower than one (bench/pg_intake.py). Taken first in each group, this lock orders every group's row
# locks after it: one group at a time, as on SQLite, each still committing many writes in one COMMIT.
WRITE_LOCK_KEY = 0x6F696377
GROUP_LOCK = f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"
GROUP_BEGIN = f"BEGIN; {GROUP_LOCK}"
SEQUENCE_ROWS = "SELECT name, value FROM sequence"
# A writer session idle inside a transaction this long is ended by the server, releasing its locks: a
# replica paused mid-group (SIGSTOP, a frozen VM) must not stop every other replica's writes. The writer
# never waits between its statements, so a healthy group is never idle that long.
WRITER_IDLE_IN_TRANSACTION = "5s"


# --- the port on psycopg ------------------------------------------------------------------------------


def translate_placeholders(sql: str, *, numbered: bool = False) -> str:
    """The port's ``?`` placeholders as psycopg's ``%s``, a literal ``%`` doubled (psycopg reads ``%`` as a
    placeholder's start); ``numbered``: as the server's ``$1``, ``$2``… (``bridge.store.pg_pipeline`` sends
    statements to libpq itself), ``%`` left as it is. Text inside quotes ('...', "...") and comments is
    left as it is."""
    percent = "%" if numbered else "%%"
    count = 0
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # '' inside a literal is a quote
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1].replace("%", percent))
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", percent))
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end].replace("%", percent))
            i = end
        elif ch == "?":
            count += 1
            out.append(f"${count}" if numbered else "%s")
            i += 1
        elif ch == "%":
            out.append(percent)
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def translated(cache: dict[str, bytes], sql: str, *, numbered: bool) -> bytes:
    """``translate_placeholders`` of ``sql``, encoded, once per distinct statement (``cache``: one per
    placeholder style)."""
    found = cache.get(sql)
    if found is None:
        found = cache[sql] = translate_placeholders(sql, numbered=numbered).encode()
    return found


class Row(Sequence[Any]):
    """One result row, readable by index and by column name (as ``sqlite3.Row`` is)."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = tuple(values)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            return self._values == other._values
        if isinstance(other, tuple):
            return self._values == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values)

    def keys(self) -> list[str]:
        return list(self._index)  # each name once

    def __repr__(self) -> str:
        return f"Row({ {name: self._values[i] for name, i in self._index.items()}!r})"


@functools.lru_cache(maxsize=512)
def _column_index(names: tuple[bytes, ...]) -> dict[str, int]:
    """Each column's position by its name (read-only: shared by every result with these columns). The
    names are UTF-8, the client encoding of every connection of the engine."""
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name.decode(), i)  # a repeated name reads the first such column, as in sqlite3.Row
    return index


def _row_factory(cursor: BaseCursor[Any, Any]) -> Callable[[Sequence[Any]], Row]:
    return _row_maker(cursor.pgresult)


def _row_maker(result: psycopg.pq.abc.PGresult | None) -> Callable[[Sequence[Any]], Row]:
    # From the result's field names, not ``cursor.description``: that builds a Column object per column
    # for every result, a quarter of the writer thread's CPU on the intake (py-spy).
    if result is None or not result.nfields:
        index: dict[str, int] = {}
    else:
        index = _column_index(tuple(result.fname(i) or b"" for i in range(result.nfields)))
    return lambda values: Row(index, values)


ROW_FACTORY: BaseRowFactory[Row] = _row_factory


class PgTx:
    """The ``Tx`` port on one psycopg connection: ``?`` parameters, rows by name and index (reads, snapshots,
    and a write group run again in savepoints; a group's first run is ``PipelinedTx``'s)."""

    def __init__(self, conn: psycopg.Connection[Row], translations: dict[str, bytes]) -> None:
        self._conn = conn
        self._translations = translations

    def _sql(self, sql: str) -> bytes:
        return translated(self._translations, sql, numbered=False)

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows:
        return self._conn.execute(self._sql(sql), tuple(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Rows:
        cursor = self._conn.cursor()
        cursor.executemany(self._sql(sql), [tuple(p) for p in parameters])
        return cursor


class PipelinedTx:
    """The ``Tx`` port on a write group's ``PgPipeline``: a statement is sent without waiting for its
    answer, which is read when its rows (or its ``rowcount``) are."""

    def __init__(self, pipeline: PgPipeline, translations: dict[str, bytes]) -> None:
        self._pipeline = pipeline
        self._translations = translations

    def _sql(self, sql: str) -> bytes:
        return translated(self._translations, sql, numbered=True)

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows:
        return self._pipeline.send(self._sql(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Rows:
        statement = self._sql(sql)
        return Results([self._pipeline.send(statement, p) for p in parameters])


def connect(url: str, *, application_name: str = "oicp-bridge") -> psycopg.Connection[Row]:
    """A connection in autocommit mode (the engine says BEGIN/COMMIT itself) with ``synchronous_commit``
    on: a COMMIT returns once its WAL is flushed on the server (acknowledged means durable)."""
    return psycopg.connect(
        url,
        autocommit=True,
        row_factory=ROW_FACTORY,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name=application_name,
        client_encoding="utf8",  # the result's column names are read as UTF-8 (``_column_index``)
        options="-c synchronous_commit=on",
    )


def read_once(url: str, fn: Callable[[PgTx], T], *, application_name: str = "oicp-bridge status") -> T:
    """``fn`` in one read-only transaction on a connection of its own (``oicp-bridge status``): no
    migration run. StoreError (without the connection string) if the server cannot be reached."""
    try:
        with connect(url, application_name=application_name) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            result = fn(PgTx(conn, {}))
            conn.execute("COMMIT")
            return result
    except psycopg.Error as exc:
        raise StoreError(_describe(exc)) from exc


def _describe(exc: psycopg.Error) -> str:
    """The driver's message without the connection string (it may hold a password)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@dataclass(slots=True)
class _Job:
    fn: Callable[[Tx, ReadAhead | None], Any]
    future: asyncio.Future[Any]
    read: Read | None = None  # the read a pipelined group makes ahead for it (``write_reading``)


class PostgresDatabase:
    """The bridge's PostgreSQL database. ``await open()``, then ``write``/``read``; ``await close()``.

    Open, write and close on one event loop; a write from another loop is handed over to it.
    """

    dialect = POSTGRESQL

    def __init__(
        self,
        url: str,
        migrations: Sequence[str],
        *,
        max_group: int = 512,
        application_name: str = "oicp-bridge",
    ) -> None:
        self.url = url
        self.migrations = tuple(migrations)
        self.max_group = max_group
        self.application_name = application_name
        self.commits = 0  # transactions committed (for metrics and group-commit tests)
        self.writes = 0  # write functions run
        self.reruns = 0  # groups run again in savepoints because a write of theirs raised
        # the values of the ``sequence`` rows this group has read and advanced (``next_in_sequence``), and
        # the highest value of each this engine has handed to a write whose outcome its caller heard
        self._sequences: dict[str, int] = {}
        self._handed_out: dict[str, int] = {}
        # once a group has read the table, every group asks for its rows right after the write lock, in
        # the same round trip (``_stored_value`` reads them at the first use)
        self._has_sequence_table = False
        self._sequence_rows: Rows | None = None
        self._stored_sequences: dict[str, int] | None = None
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Task[None] | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._write_conn: psycopg.Connection[Row] | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: psycopg.Connection[Row] | None = None
        self._translations: dict[str, bytes] = {}
        self._numbered: dict[str, bytes] = {}  # the same statements with $n placeholders (pipelined groups)
        self._prepared = Prepared()  # the statements prepared on the write connection ``_prepared_on``
        self._prepared_on: psycopg.Connection[Row] | None = None
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self) -> None:
        """Connect and apply the migrations not yet applied; StoreError if the server cannot be reached."""
        if self._open:
            return
        loop = asyncio.get_running_loop()
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")
        try:
            self._write_conn = await loop.run_in_executor(writer, self._connect_and_migrate)
            self._read_conn = await loop.run_in_executor(reader, self._connect)
        except psycopg.Error as exc:
            if self._write_conn is not None:
                await loop.run_in_executor(writer, self._write_conn.close)
                self._write_conn = None
            writer.shutdown(wait=False)
            reader.shutdown(wait=False)
            raise StoreError(f"cannot open the store on PostgreSQL: {_describe(exc)}") from exc
        self._writer, self._reader = writer, reader
        self._loop = loop
        self._queued = asyncio.Event()
        self._runner = loop.create_task(self._run(), name="store writes")
        self._open = True

    async def close(self) -> None:
        """Finish every queued write, then close both connections."""
        if not self._open:
            return
        self._open = False
        self._queued.set()
        if self._runner is not None:
            await self._runner
        loop = asyncio.get_running_loop()
        for thread, conn in ((self._writer, self._write_conn), (self._reader, self._read_conn)):
            if thread is not None:
                if conn is not None:
                    await loop.run_in_executor(thread, conn.close)
                thread.shutdown(wait=True)
        self._writer = self._reader = self._write_conn = self._read_conn = self._runner = None

    def _connect(self) -> psycopg.Connection[Row]:
        return connect(self.url, application_name=self.application_name)

    def next_in_sequence(self, tx: Tx, name: str) -> int:
        """The next value of the named row of the ``sequence`` table, from inside a write function.

        Counted in memory, as on SQLite: the row is read at its first use in a group and written once,
        just before the group's COMMIT (``_write_sequences``), rather than with an ``UPDATE … RETURNING``
        (a round trip) per value. That is safe across replicas because every group holds the replicas'
        write lock (``GROUP_LOCK``) from its start to its COMMIT and writes only happen in groups: no other
        group reads or writes the row meanwhile, and the group's READ COMMITTED read, made after taking the
        lock, sees the previous group's value. So values follow the commit order. A value is never handed
        out twice by one engine, as on SQLite: a write that raises, or a group that does not commit, leaves
        a gap (the next group counts on from the row or from the highest value handed out, whichever is
        higher)."""
        value = self._sequences.get(name)
        if value is None:
            value = max(self._stored_value(tx, name), self._handed_out.get(name, 0))
        value += 1
        self._sequences[name] = value
        return value

    def _stored_value(self, tx: Tx, name: str) -> int:
        """The row's value as this group's transaction sees it: from the rows asked for right after the
        write lock (``_run_pipelined``, once the engine has seen the table), else read now."""
        if self._sequence_rows is not None:
            self._stored_sequences = {row[0]: int(row[1]) for row in self._sequence_rows}
            self._sequence_rows = None
        if self._stored_sequences is not None:
            if name not in self._stored_sequences:
                raise StoreError(f"no sequence {name!r} in the store")
            return self._stored_sequences[name]
        found = tx.execute("SELECT value FROM sequence WHERE name = ?", (name,)).fetchone()
        if found is None:
            raise StoreError(f"no sequence {name!r} in the store")
        self._has_sequence_table = True
        return int(found[0])

    def _forget_sequences(self) -> None:
        """At a group's start: nothing counted or read yet in this transaction."""
        self._sequences.clear()
        self._sequence_rows = None
        self._stored_sequences = None

    def _write_sequences(self, tx: Tx) -> None:
        for name, value in self._sequences.items():
            tx.execute("UPDATE sequence SET value = ? WHERE name = ?", (value, name))

    def _handed(self) -> None:
        """This group's values were handed to writes whose callers hear their outcomes (committed, or a
        failure after the writes ran): none of them again. (A first run that is rolled back and run again
        in savepoints hands out nothing: nobody hears of it.)"""
        self._handed_out.update(self._sequences)

    async def write(self, fn: Callable[[Tx], T], *, inline: bool = False) -> T:
        """Run ``fn`` in a write transaction; return its result once that transaction is committed.

        ``inline`` is accepted for parity with the SQLite engine; every write runs on the writer thread
        (see the module's docstring)."""
        del inline
        return await self._queue_job(lambda tx, _ahead: fn(tx), None)

    async def write_reading(
        self, read: Read, fn: Callable[[Tx, ReadAhead | None], T], *, inline: bool = False
    ) -> T:
        """``write`` of ``fn``, whose first statement is ``read``: a pipelined group sends the reads of all
        its writes at its start, in one round trip, and hands each its rows (``ReadAhead``), instead of a
        round trip per write (``_run_pipelined``). ``fn`` gets None in a group run again in savepoints."""
        del inline
        return await self._queue_job(fn, read)

    async def _queue_job(self, fn: Callable[[Tx, ReadAhead | None], T], read: Read | None) -> T:
        if not self._open or self._loop is None:
            raise StoreClosedError("the store is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            handed = asyncio.run_coroutine_threadsafe(self._queue_job(fn, read), self._loop)
            return await asyncio.wrap_future(handed)
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append(_Job(fn, future, read))
        self._queued.set()
        return await future

    async def read(self, fn: Callable[[PgTx], T]) -> T:
        """Run ``fn`` in a read-only transaction on the read connection (sees every committed write)."""
        if not self._open or self._reader is None:
            raise StoreClosedError("the store is closed")

        def run() -> T:
            try:
                if self._read_conn is None or self._read_conn.closed:
                    self._read_conn = self._connect()
                conn = self._read_conn
                # BEGIN with its options in one statement: a read costs two round trips more than its own
                # statements, not three (psycopg's transaction() would send BEGIN and SET TRANSACTION).
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    result = fn(PgTx(conn, self._translations))
                except BaseException:
                    if not (conn.broken or conn.closed):
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            except psycopg.Error as exc:
                self._discard_if_broken("_read_conn")
                raise StoreError(f"read failed: {_describe(exc)}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[PgSnapshot]:
        """A read transaction that spans awaits (a fullLoad's consistent set, read page by page), on a
        connection and thread of its own, so the other reads keep seeing every new commit meanwhile."""
        if not self._open:
            raise StoreClosedError("the store is closed")
        loop = asyncio.get_running_loop()
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-snapshot")
        try:
            conn = await loop.run_in_executor(thread, self._connect)
        except psycopg.Error as exc:
            thread.shutdown(wait=False)
            raise StoreError(f"cannot open a snapshot: {_describe(exc)}") from exc
        snapshot = PgSnapshot(conn, thread, self._translations)
        try:
            await snapshot.run(lambda tx: tx.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            yield snapshot
        finally:
            await loop.run_in_executor(thread, conn.close)
            thread.shutdown(wait=False)

    def _discard_if_broken(self, attribute: str) -> None:
        conn: psycopg.Connection[Row] | None = getattr(self, attribute)
        if conn is not None and (conn.broken or conn.closed):
            with contextlib.suppress(psycopg.Error):
                conn.close()
            setattr(self, attribute, None)

    # --- migrations -----------------------------------------------------------------------------------

    def _connect_writer(self) -> psycopg.Connection[Row]:
        conn = self._connect()
        # psycopg prepares nothing here: the pipelined groups prepare their statements (``PgPipeline``), and
        # psycopg would drop those with its own (DEALLOCATE ALL) after any ROLLBACK
        conn.prepare_threshold = None
        conn.execute(f"SET idle_in_transaction_session_timeout = '{WRITER_IDLE_IN_TRANSACTION}'")
        return conn

    def _connect_and_migrate(self) -> psycopg.Connection[Row]:
        conn = self._connect_writer()
        try:
            # Each step is one transaction under a transaction-scoped advisory lock, so replicas that start
            # together create the table and apply each migration once (PostgreSQL's DDL is transactional).
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                conn.execute("CREATE TABLE IF NOT EXISTS bridge_schema (version INTEGER NOT NULL)")
            for number, script in enumerate(self.migrations, start=1):
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                    row = conn.execute("SELECT max(version) FROM bridge_schema").fetchone()
                    applied = 0 if row is None or row[0] is None else int(row[0])
                    if applied >= number:
                        continue
                    conn.execute(script.encode())  # several statements: sent as one simple query
                    conn.execute("INSERT INTO bridge_schema (version) VALUES (%s)", (number,))
        except psycopg.Error:
            conn.close()
            raise
        return conn

    # --- writing --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        """The one task that writes: group after group until the store closes and the queue is empty."""
        assert self._loop is not None
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                # the writer thread may add to this list the writes queued while the group waited for the
                # write lock (``_take_queued``)
                group = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_group))]
                try:
                    outcomes = await self._loop.run_in_executor(self._writer, self._commit_group, group)
                except asyncio.CancelledError:  # the loop is shutting down without close(): nobody commits
                    closed = StoreClosedError("the store was shut down before this write was committed")
                    unanswered = [*group, *self._queue]
                    _settle(unanswered, [(False, closed)] * len(unanswered))
                    self._queue.clear()
                    raise
                _settle(group, outcomes)
            if not self._open:
                return

    def _commit_group(self, group: list[_Job]) -> list[tuple[bool, Any]]:
        """On the writer thread: one transaction for the group, one COMMIT; at once if no write raises,
        else again with a savepoint per write. Every outcome is returned, never raised: a failure of the
        transaction itself fails each write with StoreError."""
        try:
            if self._write_conn is None:
                self._write_conn = self._connect_writer()
            conn = self._write_conn
            outcomes = self._run_pipelined(conn, group)
            if outcomes is None:
                self.reruns += 1
                outcomes = self._run_in_savepoints(conn, group)
        except psycopg.Error as exc:
            error = StoreError(f"write transaction failed: {_describe(exc)}")
            error.__cause__ = exc
            self._rollback_after_failure()
            return [(False, error)] * len(group)
        except Exception as exc:  # a bug in the engine must not leave later writes waiting: logged, failed
            log.exception("a write group failed unexpectedly")
            error = StoreError(f"write failed unexpectedly: {exc!r}")
            error.__cause__ = exc
            self._rollback_after_failure()
            return [(False, error)] * len(group)
        self.commits += 1
        self.writes += len(group)
        return outcomes

    def _run_pipelined(
        self, conn: psycopg.Connection[Row], group: list[_Job]
    ) -> list[tuple[bool, Any]] | None:
        """The group in one transaction without savepoints, its statements pipelined: a statement waits
        for its answer only when a write reads its rows, and BEGIN, the lock, the last writes' statements
        and COMMIT share round trips. The outcomes, or None if anything raised (a write's own error, or a
        statement's, which in pipeline mode may surface at a later statement or at the COMMIT): the
        transaction is then rolled back, nothing of the group committed. A lost connection raises."""
        self._forget_sequences()
        if self._prepared_on is not conn:  # a new connection: nothing prepared on it yet
            self._prepared, self._prepared_on = Prepared(), conn
        results: list[Any] = []
        failure: Exception | None = None
        try:
            pipeline = PgPipeline(conn, self._prepared, _row_maker)
            tx = PipelinedTx(pipeline, self._numbered)
            try:
                pipeline.send(b"BEGIN", prepare=False)
                lock = tx.execute(GROUP_LOCK)
                if self._has_sequence_table:
                    self._sequence_rows = tx.execute(SEQUENCE_ROWS)
                # the writes' reads ahead go with the lock: the server runs them once it has granted it
                reads = _send_reads(tx, group)
                lock.fetchone()  # waits for the lock; the sequence rows come in the same answer
                # Taken now, not after the first write: a long first write (a storm's bulk chunk)
                # would otherwise draw everything queued during it into the group, and delay them all.
                self._take_queued(group)
                reads += _send_reads(tx, group[len(reads) :])
                results = self._run_reading_ahead(tx, group, reads)
                self._write_sequences(tx)
                pipeline.send(b"COMMIT", prepare=False)
                pipeline.finish()  # sends the last statements and the COMMIT, reads every answer
            except Exception as exc:  # noqa: BLE001 - the run in savepoints hands it to its write's caller
                failure = exc
                pipeline.abandon()  # what is still to come read, the connection out of pipeline mode
        except psycopg.Error as exc:  # the connection cannot be brought back: closed, the next group connects
            failure = failure or exc
            if not conn.closed and conn.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF:
                conn.close()
        if failure is None:
            self._handed()
            return [(True, result) for result in results]
        if conn.broken or conn.closed:  # no second run: the group fails (and the next one reconnects)
            if isinstance(failure, psycopg.Error):
                raise failure
            raise psycopg.OperationalError("the connection was lost during the write group") from failure
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute(b"ROLLBACK")
        if isinstance(failure, psycopg.Error):
            # the server refused a statement: perhaps a prepared one gone stale (another replica's migration
            # changed its table); prepared again from the next group on
            conn.execute(b"DEALLOCATE ALL")
            self._prepared = Prepared()
        return None

    @staticmethod
    def _run_reading_ahead(tx: PipelinedTx, group: list[_Job], reads: list[Rows | None]) -> list[Any]:
        """The group's writes in order, with the reads of those that have one (``write_reading``), sent
        before (``_send_reads``): a write then finds its rows read instead of waiting for a round trip of
        its own. What the earlier writes changed is in ``changes``: a plain write may change anything, so
        the writes after it get no read ahead (they read again); a reading write records what it changes.
        (Handing each write's statements to the socket when it is done, for the server to run them
        meanwhile, cost more than it saved: ~22 µs of CPU per write for the send, docs/benchmarks.md.)"""
        changes = GroupChanges()
        results = []
        for job, read in zip(group, reads, strict=True):
            ahead = None if read is None or changes.everything else ReadAhead(read, changes)
            results.append(job.fn(tx, ahead))
            if job.read is None:
                changes.everything = True
        return results

    def _take_queued(self, group: list[_Job]) -> None:
        """On the writer thread, once the group holds the write lock: the writes queued meanwhile join it
        (up to ``max_group``; the runner settles the group's list, so they are answered with it). With
        replicas a group often waits for the lock while its replica's next requests arrive; taken now,
        they need not wait for the lock again in small groups of their own. Only this thread takes from
        the queue while a group runs (the runner is waiting for it); the event loop only appends."""
        while len(group) < self.max_group:
            try:
                group.append(self._queue.popleft())
            except IndexError:
                return

    def _run_in_savepoints(self, conn: psycopg.Connection[Row], group: list[_Job]) -> list[tuple[bool, Any]]:
        """The group again, each write in its own savepoint: one that raises is undone alone and its caller
        gets its error; the others commit."""
        self._forget_sequences()
        tx = PgTx(conn, self._translations)
        conn.execute(GROUP_BEGIN.encode())  # one round trip: BEGIN and the replicas' write lock
        outcomes = [_run_job(conn, tx, job.fn) for job in group]
        self._handed()
        self._write_sequences(tx)
        conn.execute(b"COMMIT")
        return outcomes

    def _rollback_after_failure(self) -> None:
        conn = self._write_conn
        if conn is None:
            return
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if not (conn.broken or conn.closed or idle):
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error as exc:  # the connection is unusable: the next group connects again
                log.warning("rollback after a failed write transaction failed: %s", _describe(exc))
        self._discard_if_broken("_write_conn")


class PgSnapshot:
    """One read transaction of ``PostgresDatabase.snapshot``; ``run`` steps it on its own thread."""

    def __init__(
        self, conn: psycopg.Connection[Row], thread: ThreadPoolExecutor, translations: dict[str, bytes]
    ) -> None:
        self._conn = conn
        self._thread = thread
        self._tx = PgTx(conn, translations)

    async def run(self, fn: Callable[[PgTx], T]) -> T:
        tx = self._tx

        def step() -> T:
            try:
                return fn(tx)
            except psycopg.Error as exc:
                raise StoreError(f"snapshot read failed: {_describe(exc)}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._thread, step)


def _send_reads(tx: PipelinedTx, jobs: Sequence[_Job]) -> list[Rows | None]:
    """The reads of the writes that have one (``write_reading``), sent; None for the others."""
    return [None if job.read is None else tx.execute(*job.read) for job in jobs]


def _run_job(
    conn: psycopg.Connection[Row], tx: PgTx, fn: Callable[[Tx, ReadAhead | None], Any]
) -> tuple[bool, Any]:
    """Run one write in its own savepoint: (True, result), or (False, its error) with its changes undone.
    A failure of the savepoint statements themselves (connection lost...) fails the whole group."""
    conn.execute("SAVEPOINT job")
    try:
        result = fn(tx, None)
    except Exception as exc:  # noqa: BLE001 - the job's own error is handed to its caller, not lost
        conn.execute("ROLLBACK TO SAVEPOINT job")
        conn.execute("RELEASE SAVEPOINT job")
        if isinstance(exc, psycopg.Error):
            wrapped = StoreError(f"write failed: {_describe(exc)}")
            wrapped.__cause__ = exc
            return False, wrapped
        return False, exc
    conn.execute("RELEASE SAVEPOINT job")
    return True, result


def _settle(group: list[_Job], outcomes: list[tuple[bool, Any]]) -> None:
    answer([job.future for job in group], outcomes)
