"""One write group's statements sent at libpq's level in pipeline mode (``PgPipeline``), for the PostgreSQL
engine's pipelined run (``bridge.store.postgres``).

psycopg's own pipeline costs, per statement, a cursor, the query's conversion and a poll, send and receive
of the socket: on the status intake (three statements per PATCH) the writer thread spent ~250 µs of CPU per
PATCH, three quarters of it there (cProfile, docs/benchmarks.md, session 7). Here a statement is its
parameters dumped by psycopg's own adapters (so values are sent as psycopg would send them), one named
prepared statement per distinct (SQL, parameter types), and a send into libpq's buffer; the socket is
written only when an answer is waited for (or at the end), and answers are read in order.

Every statement's answer is checked: the first error is raised when it is read (at the read of a later
statement's rows, or at ``finish``), as psycopg's pipeline raises it; the group is then rolled back by the
engine. A lost connection raises ``psycopg.OperationalError``.
"""

from __future__ import annotations

import collections
import itertools
import select
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.abc import Buffer
from psycopg.adapt import PyFormat, Transformer

# Named prepared statements per connection at most; beyond, statements are parsed at each use (unnamed).
MAX_PREPARED = 256
_TEXT = PyFormat.TEXT
_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
_SYNC = pq.ExecStatus.PIPELINE_SYNC
# an answer -> the function that makes one row of the engine's row type from a row's values
RowMaker = Callable[[pq.abc.PGresult], Callable[[Sequence[Any]], Any]]


class Prepared:
    """The statements prepared on one connection: name by (SQL, parameter types). A statement counts as
    prepared once the server has answered its preparation (a group that fails before leaves it unknown)."""

    def __init__(self) -> None:
        self.names: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        # a prepared statement's row maker (its columns cannot change while it is prepared: the server
        # refuses to run it then, and the engine prepares everything anew)
        self.row_makers: dict[bytes, Callable[[Sequence[Any]], Any]] = {}
        self._numbers = itertools.count(1)

    def new_name(self) -> bytes:
        return b"oicp_%d" % next(self._numbers)


class PgPipeline:
    """The statements of one transaction on ``conn`` in libpq's pipeline mode. ``send`` queues a statement
    and returns its result, whose rows (or ``rowcount``) wait for its answer when read; ``finish`` sends
    the last statements with a sync and reads every answer; ``abandon`` (after a failure) does the same
    without raising, leaving the connection out of pipeline mode either way."""

    def __init__(self, conn: psycopg.Connection[Any], prepared: Prepared, row_maker: RowMaker) -> None:
        self._pgconn = conn.pgconn
        self._prepared = prepared
        self._row_maker = row_maker  # an answer -> how to make the engine's rows of its values
        self._adapters = Transformer.from_context(conn)
        # sent and not yet answered, in order: a statement's result, or None for a preparation's answer
        self._waiting: collections.deque[tuple[Result | None, tuple[bytes, tuple[int, ...]] | None]] = (
            collections.deque()
        )
        self._unflushed = False  # statements sent since the server was last asked for answers
        self._poll = select.poll()
        self._poll.register(self._pgconn.socket, select.POLLIN)
        self._pgconn.enter_pipeline_mode()

    # --- sending ------------------------------------------------------------------------------------------

    def send(self, sql: bytes, parameters: Sequence[Any] = (), *, prepare: bool = True) -> Result:
        """Queue ``sql`` (psycopg's ``%s`` placeholders translated to ``$n`` by the caller: see ``numbered``)
        with ``parameters``; prepared once per connection unless ``prepare`` is False (BEGIN, COMMIT)."""
        pgconn = self._pgconn
        values: Sequence[Buffer | None] | None = None
        types: tuple[int, ...] = ()
        if parameters:
            adapters = self._adapters
            values = adapters.dump_sequence(parameters, [_TEXT] * len(parameters))
            types = adapters.types or ()
        result = Result(self)
        name: bytes | None = None
        if prepare:
            key = (sql, types)
            names = self._prepared.names
            name = names.get(key)
            if name is None and len(names) < MAX_PREPARED:
                # named before the server answers, so the group's later uses of it use it too; forgotten
                # again if its answer is an error or never comes (``_take_answer``)
                name = names[key] = self._prepared.new_name()
                pgconn.send_prepare(name, sql, types or None)
                self._waiting.append((None, key))
        if name is None:
            pgconn.send_query_params(sql, values, types or None)
        else:
            pgconn.send_query_prepared(name, values)
            result.statement = sql
        self._waiting.append((result, None))
        self._unflushed = True
        return result

    # --- answers ------------------------------------------------------------------------------------------

    def wait_for(self, result: Result) -> None:
        """Read answers in order until ``result``'s is in; raise the first error among them."""
        if result.pgresult is not None:
            return
        self._ask()
        while result.pgresult is None:
            self._take_answer()

    def finish(self) -> None:
        """Send a sync with what is queued, read every answer and leave pipeline mode; raise the first
        error among the answers (an error aborts the rest of the pipeline: the group is not committed).
        A lost connection raises ``psycopg.OperationalError`` at once."""
        self._pgconn.pipeline_sync()
        self._unflushed = False
        self._flush()
        first: psycopg.Error | None = None
        while self._waiting:
            try:
                self._take_answer()
            except psycopg.Error as exc:
                if self._pgconn.status != pq.ConnStatus.OK:
                    raise  # the connection is lost
                first = first or exc  # the statements after it answer "aborted"
        self._take_sync()
        self._pgconn.exit_pipeline_mode()
        if first is not None:
            raise first

    def abandon(self) -> None:
        """After a failure (a write's error, or an answer's): what is still to come read and ignored, and
        the connection out of pipeline mode, so the engine can roll back. Raises ``psycopg.Error`` only
        if the connection cannot be brought back (the engine then closes it)."""
        if self._pgconn.pipeline_status == pq.PipelineStatus.OFF:
            return
        try:
            self.finish()
        except psycopg.Error:
            if self._pgconn.status != pq.ConnStatus.OK:
                raise
            # an answer's error: the failure the engine already handles

    def _ask(self) -> None:
        if self._unflushed:
            self._pgconn.send_flush_request()  # the server sends the answers so far without a sync
            self._unflushed = False
        self._flush()

    def _flush(self) -> None:
        pgconn = self._pgconn
        while pgconn.flush():
            # the server may be blocked writing answers we have not read: read while waiting to write
            ready = self._wait(select.POLLIN | select.POLLOUT)
            if ready & select.POLLIN:
                pgconn.consume_input()

    def _wait(self, events: int) -> int:
        self._poll.modify(self._pgconn.socket, events)
        while True:
            ready = self._poll.poll()
            if ready:
                self._poll.modify(self._pgconn.socket, select.POLLIN)
                return ready[0][1]

    def _get(self) -> pq.abc.PGresult | None:
        pgconn = self._pgconn
        while pgconn.is_busy():
            self._wait(select.POLLIN)
            pgconn.consume_input()
        return pgconn.get_result()

    def _take_answer(self) -> None:
        """The next statement's answer (its result, then the end of its results)."""
        result, preparing = self._waiting.popleft()
        answer = self._get()
        while self._get() is not None:  # one result per statement in the extended protocol
            continue
        if answer is None:
            raise psycopg.OperationalError("no answer from the server in the pipeline")
        if answer.status not in _OK:
            if preparing is not None:
                self._prepared.names.pop(preparing, None)
            self._forget_unanswered()
            raise _error(answer)
        if result is not None:
            result.pgresult = answer

    def _forget_unanswered(self) -> None:
        """The preparations still unanswered never happened (an error aborts the rest of the pipeline)."""
        for _result, preparing in self._waiting:
            if preparing is not None:
                self._prepared.names.pop(preparing, None)

    def _take_sync(self) -> None:
        answer = self._get()
        if answer is None or answer.status != _SYNC:
            raise psycopg.OperationalError("the pipeline's sync was not answered")

    def rows(self, result: pq.abc.PGresult, statement: bytes | None) -> list[Any]:
        """The rows of an answer; ``statement``: its SQL if it ran as a named prepared statement."""
        adapters = self._adapters
        adapters.set_pgresult(result)
        makers = self._prepared.row_makers
        make_row = None if statement is None else makers.get(statement)
        if make_row is None:
            make_row = self._row_maker(result)  # from the answer's column names: ~25 µs for FIND_EVSE's
            if statement is not None:
                makers[statement] = make_row
        return adapters.load_rows(0, result.ntuples, make_row)


def _error(result: pq.abc.PGresult) -> psycopg.Error:
    if result.status == pq.ExecStatus.PIPELINE_ABORTED:
        return psycopg.errors.PipelineAborted("pipeline aborted")
    return psycopg.errors.error_from_result(result, encoding="utf-8")


class Result:
    """One statement's result (the ``Rows`` port): its answer is read when its rows or its rowcount are."""

    __slots__ = ("_pipeline", "_position", "_rows", "pgresult", "statement")

    def __init__(self, pipeline: PgPipeline) -> None:
        self._pipeline = pipeline
        self.pgresult: pq.abc.PGresult | None = None
        self.statement: bytes | None = None  # its SQL, if sent as a named prepared statement
        self._rows: list[Any] | None = None
        self._position = 0

    @property
    def rowcount(self) -> int:
        self._pipeline.wait_for(self)
        return _rowcount(self.pgresult)

    def _all(self) -> list[Any]:
        if self._rows is None:
            self._pipeline.wait_for(self)
            assert self.pgresult is not None
            self._rows = self._pipeline.rows(self.pgresult, self.statement)
        return self._rows

    def fetchone(self) -> Any:
        rows = self._all()
        if self._position >= len(rows):
            return None
        self._position += 1
        return rows[self._position - 1]

    def fetchall(self) -> list[Any]:
        rows = self._all()
        rest = rows[self._position :]
        self._position = len(rows)
        return rest

    def fetchmany(self, size: int = 1, /) -> list[Any]:
        rows = self._all()
        chunk = rows[self._position : self._position + size]
        self._position += len(chunk)
        return chunk

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class Results:
    """Several statements' results as one (``executemany``): their rowcounts summed, no rows."""

    __slots__ = ("_results",)

    def __init__(self, results: Iterable[Result]) -> None:
        self._results = tuple(results)

    @property
    def rowcount(self) -> int:
        return sum(max(result.rowcount, 0) for result in self._results)

    def fetchone(self) -> Any:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def fetchmany(self, size: int = 1, /) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


def _rowcount(result: pq.abc.PGresult | None) -> int:
    if result is None:
        return -1
    if result.status == pq.ExecStatus.TUPLES_OK:
        return result.ntuples
    count = result.command_tuples
    return -1 if count is None else count
