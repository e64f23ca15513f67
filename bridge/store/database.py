"""One SQLite file in WAL mode, one write transaction at a time, with group commit.

Every write is a function ``fn(conn) -> T`` (callers outside ``bridge.store`` type ``conn`` as the port's
``Tx``, ``bridge.store.port``, which a ``sqlite3.Connection`` is). Writes queue up; one runner task takes
everything queued (up to ``max_group``), runs each in its own SAVEPOINT inside one transaction and commits
once, so one fsync covers many OCPI requests under load ("group commit"), while a write that raises rolls
back only its own savepoint and its caller gets the error. A caller's ``await write(...)`` returns only
after the commit that holds its change: an OCPI request is acknowledged only once its change is durable.

Where each step runs:
- ``COMMIT`` runs on the store's own thread: it waits for the fsync, which must never stall the event loop.
- ``BEGIN IMMEDIATE`` is tried on the event loop without waiting (the write connection's ``busy_timeout`` is
  0): only this process writes the file (the flock below), so it gets the write lock at once, and a thread
  hand-over per group is saved. If another program holds the lock (someone's ``sqlite3`` shell), it is
  asked again on the store's thread, waiting up to ``busy_timeout_ms`` there.
- A write marked ``inline=True`` runs on the event loop itself, between those two steps. That is for short
  writes on the intake path (one OCPI object): handing each to a thread cost more than the write, because the
  loop and the thread then take turns on the GIL for every statement (docs/benchmarks.md).
- Every other write runs on the store's thread, so a long one (a fullLoad's bookkeeping, a polled page)
  never blocks the loop.
Either way the connection is used by one of them at a time: the runner waits for each step. The file's
write lock is held from BEGIN to COMMIT, across event-loop iterations: another process waiting for it waits
as long as the loop takes to run the group's inline writes (a stalled loop would hold it longer).

``synchronous=FULL``: in WAL mode NORMAL may lose the last commits on power loss; FULL does not, and group
commit pays for it. Reads use a second connection on a reader thread (WAL lets them run beside writes).

One process per file: ``open`` takes an exclusive ``flock`` on ``<file>.lock`` and holds it until ``close``
(the kernel drops it if the process dies), so a second daemon on the same store refuses to start instead
of pushing the same operators in parallel, which OICP forbids. Readers (``oicp-bridge status``) do not
take it. The file and its ``-wal``/``-shm`` companions are created 0600: they hold the OCPI tokens the
bridge presents to CPOs (SQLite gives the companions the database file's mode).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bridge.errors import StoreClosedError, StoreError, StoreLockedError
from bridge.store.answers import answer
from bridge.store.dialect import SQLITE
from bridge.store.port import Read, ReadAhead, Tx

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], Any]

BUSY_TIMEOUT_MS = 10_000


@dataclass(slots=True)
class _Job:
    fn: WriteFn
    future: asyncio.Future[Any]
    inline: bool


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    # 64 MiB of page cache (SQLite's default is 2 MiB): with 10 000 Locations or 100 000 outbox rows the
    # working set no longer fits the default, and every intake write paid for re-reading pages.
    conn.execute("PRAGMA cache_size = -65536")
    return conn


PRIVATE_MODE = 0o600
COMPANIONS = ("", "-wal", "-shm", "-journal")


def lock_store(path: Path) -> int:
    """Take the store's exclusive lock (``<file>.lock``, holding the owner's pid); return its descriptor.
    Raise StoreLockedError if another process holds it."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    except OSError as exc:
        raise StoreError(f"cannot create the store's lock file {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StoreLockedError(
            f"another oicp-bridge (pid {holder}) is running on the store {path}: one daemon per store"
            " (two would push the same operators in parallel, which OICP forbids)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def create_private(path: Path) -> None:
    """Create the store file 0600 if it is missing, and take group/other access away from an existing
    file and its companions (a store created by an older version was 0644)."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE))
    for suffix in COMPANIONS:
        companion = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            if companion.stat().st_mode & 0o077:
                companion.chmod(PRIVATE_MODE)


class Database:
    """The bridge's SQLite database. ``await open()``, then ``write``/``read``; ``await close()``.

    Open, write and close on one event loop; a write from another loop is handed over to it.
    """

    dialect = SQLITE

    def __init__(
        self,
        path: Path,
        migrations: Sequence[str],
        *,
        max_group: int = 512,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.path = path
        self.migrations = tuple(migrations)
        self.max_group = max_group
        self.busy_timeout_ms = busy_timeout_ms  # how long a BEGIN waits for another program's write lock
        self.commits = 0  # transactions committed (for metrics and group-commit tests)
        self.writes = 0  # write functions run
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Task[None] | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._open = False
        self._lock_fd: int | None = None
        # the sequences' values handed out (``next_in_sequence``) and those not yet written to the table
        self._sequences: dict[str, int] = {}
        self._unwritten: set[str] = set()

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self) -> None:
        if self._open:
            return
        loop = asyncio.get_running_loop()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store's folder {self.path.parent}: {exc.strerror}") from exc
        self._lock_fd = lock_store(self.path)
        self._sequences.clear()  # another process may have written the store since this one last had it
        self._unwritten.clear()
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        try:
            create_private(self.path)
            self._write_conn = await loop.run_in_executor(writer, self._connect_and_migrate)
        except (sqlite3.Error, OSError) as exc:
            writer.shutdown(wait=False)
            self._unlock()
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        self._writer = writer
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")
        self._read_conn = await loop.run_in_executor(self._reader, connect, self.path)
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
        if self._writer is not None and self._write_conn is not None:
            await loop.run_in_executor(self._writer, self._write_conn.close)
            self._writer.shutdown(wait=True)
        if self._reader is not None and self._read_conn is not None:
            await loop.run_in_executor(self._reader, self._read_conn.close)
            self._reader.shutdown(wait=True)
        self._writer = self._reader = self._write_conn = self._read_conn = self._runner = None
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, inline: bool = False) -> T:
        """Run ``fn`` in a write transaction; return its result once that transaction is committed.

        ``inline``: run ``fn`` on the event loop (only for short writes; see the module's docstring).
        """
        if not self._open or self._loop is None:
            raise StoreClosedError("the store is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            handed = asyncio.run_coroutine_threadsafe(self.write(fn, inline=inline), self._loop)
            return await asyncio.wrap_future(handed)
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append(_Job(fn, future, inline))
        self._queued.set()
        return await future

    async def write_reading(
        self, read: Read, fn: Callable[[sqlite3.Connection, ReadAhead | None], T], *, inline: bool = False
    ) -> T:
        """``write`` of ``fn``, which reads ``read`` itself: on SQLite a read is a call into the library on
        the same thread, with nothing to gain by making it ahead (``fn`` is handed None)."""
        del read
        return await self.write(lambda conn: fn(conn, None), inline=inline)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the read connection (sees every committed write)."""
        if not self._open or self._reader is None or self._read_conn is None:
            raise StoreClosedError("the store is closed")
        conn = self._read_conn

        def run() -> T:
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                raise StoreError(f"read failed: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Snapshot]:
        """A read transaction that spans awaits (a fullLoad's consistent set, read page by page), on a
        connection and thread of its own, so the other reads keep seeing every new commit meanwhile."""
        if not self._open:
            raise StoreClosedError("the store is closed")
        loop = asyncio.get_running_loop()
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-snapshot")
        try:
            conn = await loop.run_in_executor(thread, connect, self.path)
        except sqlite3.Error as exc:
            thread.shutdown(wait=False)
            raise StoreError(f"cannot open a snapshot: {exc}") from exc
        snapshot = Snapshot(conn, thread)
        try:
            await snapshot.run(lambda tx: tx.execute("BEGIN"))
            yield snapshot
        finally:
            with contextlib.suppress(sqlite3.Error):
                await loop.run_in_executor(thread, conn.close)
            thread.shutdown(wait=False)

    def next_in_sequence(self, tx: Tx, name: str) -> int:
        """The next value of the named row of the ``sequence`` table, from inside a write function.

        One process writes this store (the flock), so the values are counted here and the row is written
        once per group, just before its COMMIT, rather than with an ``UPDATE … RETURNING`` per value (a
        statement on the intake's hot path). Values follow the commit order: writes run one after another,
        and a group that does not commit leaves a gap, never a value handed out twice (the count goes on
        from where it was, and is written by the next group that commits)."""
        value = self._sequences.get(name)
        if value is None:
            found = tx.execute("SELECT value FROM sequence WHERE name = ?", (name,)).fetchone()
            if found is None:
                raise StoreError(f"no sequence {name!r} in the store")
            value = int(found[0])
        value += 1
        self._sequences[name] = value
        self._unwritten.add(name)
        return value

    def _begin_waiting(self, conn: sqlite3.Connection) -> None:
        """On the store's thread: BEGIN IMMEDIATE, waiting up to ``busy_timeout_ms`` for the lock."""
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    def _commit(self, conn: sqlite3.Connection) -> None:
        """On the store's thread: write the sequences this group advanced, then COMMIT."""
        written = list(self._unwritten)
        for name in written:
            conn.execute("UPDATE sequence SET value = ? WHERE name = ?", (self._sequences[name], name))
        conn.execute("COMMIT")
        self._unwritten.difference_update(written)

    # --- writing ----------------------------------------------------------------------------------

    def _connect_and_migrate(self) -> sqlite3.Connection:
        conn = connect(self.path)
        try:
            (applied,) = conn.execute("PRAGMA user_version").fetchone()
            for number, script in enumerate(self.migrations[applied:], start=applied + 1):
                conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
            conn.execute("PRAGMA busy_timeout = 0")  # BEGIN tries once on the loop, then waits on the thread
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    async def _run(self) -> None:
        """The one task that writes: group after group until the store closes and the queue is empty."""
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                group = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_group))]
                try:
                    await self._run_group(group)
                except asyncio.CancelledError:  # the loop is shutting down without close(): nobody commits
                    closed = StoreClosedError("the store was shut down before this write was committed")
                    unanswered = [*group, *self._queue]
                    _settle(unanswered, [(False, closed)] * len(unanswered))
                    self._queue.clear()
                    raise
                except Exception as exc:  # a bug must not leave every later write waiting: logged, failed
                    log.exception("a write group failed unexpectedly")
                    if self._write_conn is not None and self._write_conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            self._write_conn.execute("ROLLBACK")
                    error = StoreError(f"write failed unexpectedly: {exc!r}")
                    error.__cause__ = exc
                    _settle(group, [(False, error)] * len(group))
            if not self._open:
                return

    async def _run_group(self, group: list[_Job]) -> None:
        assert self._loop is not None
        assert self._writer is not None
        assert self._write_conn is not None
        loop, conn = self._loop, self._write_conn
        outcomes: list[tuple[bool, Any]] = []
        try:
            if not _begin_at_once(conn):
                await loop.run_in_executor(self._writer, self._begin_waiting, conn)
            for job in group:
                if job.inline:
                    outcomes.append(_run_job(conn, job.fn))
                else:
                    outcomes.append(await loop.run_in_executor(self._writer, _run_job, conn, job.fn))
            await loop.run_in_executor(self._writer, self._commit, conn)
        except sqlite3.Error as exc:
            error = StoreError(f"write transaction failed: {exc}")
            error.__cause__ = exc
            if conn.in_transaction:
                try:
                    await loop.run_in_executor(self._writer, conn.execute, "ROLLBACK")
                except sqlite3.Error as rollback_exc:  # SQLite has rolled back itself (e.g. on an I/O error)
                    log.warning("rollback after a failed write transaction failed: %s", rollback_exc)
            _settle(group, [(False, error)] * len(group))
            return
        self.commits += 1
        self.writes += len(group)
        _settle(group, outcomes)


class Snapshot:
    """One read transaction of ``Database.snapshot``; ``run`` steps it on its own thread."""

    def __init__(self, conn: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._thread = thread

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn

        def step() -> T:
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                raise StoreError(f"snapshot read failed: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._thread, step)


def _begin_at_once(conn: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE if the write lock is free now (busy_timeout is 0 here); whether it began."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:  # also its extended codes (BUSY_RECOVERY…)
            return False  # another program holds the lock: the caller waits for it on the store's thread
        raise
    return True


def _run_job(conn: sqlite3.Connection, fn: WriteFn) -> tuple[bool, Any]:
    """Run one write in its own savepoint: (True, result), or (False, its error) with its changes undone.
    A failure of the savepoint statements themselves (disk full...) fails the whole group."""
    conn.execute("SAVEPOINT job")
    try:
        result = fn(conn)
    except Exception as exc:  # noqa: BLE001 - the job's own error is handed to its caller, not lost
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        if isinstance(exc, sqlite3.Error):
            wrapped = StoreError(f"write failed: {exc}")
            wrapped.__cause__ = exc
            return False, wrapped
        return False, exc
    conn.execute("RELEASE job")
    return True, result


def _settle(group: list[_Job], outcomes: list[tuple[bool, Any]]) -> None:
    answer([job.future for job in group], outcomes)


def read_file(path: Path, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn`` in one read transaction on the store file opened read-only, beside a running daemon or
    without one (``oicp-bridge status``): no lock taken, no migration run. StoreError if it cannot be read."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            conn.row_factory = sqlite3.Row
            return fn(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from exc
