"""One SQLite file in WAL mode, written by one thread, with group commit.

Every write is a function ``fn(conn) -> T`` queued to the writer thread. The writer takes everything
queued (up to ``max_group``), runs each in its own SAVEPOINT inside one transaction and commits once, so
one fsync covers many OCPI requests under load ("group commit"), while a write that raises rolls back
only its own savepoint and its caller gets the error. A caller's ``await write(...)`` returns only after
the commit that holds its change: an OCPI request is acknowledged only once its change is durable.

``synchronous=FULL``: in WAL mode NORMAL may lose the last commits on power loss; FULL does not, and group
commit pays for it. Reads use a second connection on a reader thread (WAL lets them run beside writes).
The event loop never touches SQLite directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bridge.errors import StoreClosedError, StoreError

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], Any]

BUSY_TIMEOUT_MS = 10_000


@dataclass(slots=True)
class _Job:
    fn: WriteFn
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


_STOP = object()


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


class Database:
    """The bridge's SQLite database. ``await open()``, then ``write``/``read``; ``await close()``."""

    def __init__(self, path: Path, migrations: Sequence[str], *, max_group: int = 512) -> None:
        self.path = path
        self.migrations = tuple(migrations)
        self.max_group = max_group
        self.commits = 0  # transactions committed (for metrics and group-commit tests)
        self.writes = 0  # write functions run
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._open = False
        self._commit_listeners: list[Callable[[], None]] = []

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the writer thread) after every commit, e.g. to wake the dispatcher."""
        self._commit_listeners.append(listener)

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self) -> None:
        if self._open:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_conn = connect(self.path)
            self._migrate(write_conn)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        self._writer = threading.Thread(
            target=self._write_loop, args=(write_conn,), name="store-writer", daemon=True
        )
        self._writer.start()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")
        self._read_conn = await asyncio.get_running_loop().run_in_executor(self._reader, connect, self.path)
        self._open = True

    async def close(self) -> None:
        """Finish every queued write, then close both connections."""
        if not self._open:
            return
        self._open = False
        self._queue.put(_STOP)
        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        if self._reader is not None and self._read_conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._reader, self._read_conn.close)
            self._reader.shutdown(wait=True)
        self._writer = self._reader = self._read_conn = None

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction; return its result once that transaction is committed."""
        if not self._open:
            raise StoreClosedError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, future, loop))
        return await future

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

    # --- the writer thread ------------------------------------------------------------------------

    def _migrate(self, conn: sqlite3.Connection) -> None:
        (applied,) = conn.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(self.migrations[applied:], start=applied + 1):
            conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                group: list[_Job] = [first]  # type: ignore[list-item]
                while len(group) < self.max_group:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    group.append(item)  # type: ignore[arg-type]
                self._run_group(conn, group)
        finally:
            conn.close()

    def _run_group(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in group:
                conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, job.fn(conn)))
                    conn.execute("RELEASE job")
                except Exception as exc:  # noqa: BLE001 - the job's own error is handed to its caller, not lost
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    if isinstance(exc, sqlite3.Error):
                        wrapped = StoreError(f"write failed: {exc}")
                        wrapped.__cause__ = exc
                        exc = wrapped
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = StoreError(f"write transaction failed: {exc}")
            error.__cause__ = exc
            _settle_all(group, [(False, error)] * len(group))
            return
        self.commits += 1
        self.writes += len(group)
        for listener in self._commit_listeners:
            listener()
        _settle_all(group, outcomes)


def _settle_all(group: list[_Job], outcomes: list[tuple[bool, Any]]) -> None:
    """Hand each job its outcome on its own event loop: one thread-safe call per loop and group, not one
    per job (each costs a wake-up of the loop), and a caller that stopped waiting is skipped."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for job, (ok, value) in zip(group, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, ok, value))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        if future.done():  # cancelled while its write ran: the write stands, the answer has no taker
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
