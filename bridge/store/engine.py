"""What a store engine offers the repositories: the interface ``bridge.store.database.Database`` (SQLite) and
``bridge.store.postgres.PostgresDatabase`` both have, so a repository can be written against either.

The repositories take an ``Engine``, never an engine class; ``tests/typing/store_engines.py`` makes mypy check
that both engines fit it. ``lane_write``: the fenced write of an operator's lane, shared by both outboxes
(``operator_write``: the same, or a write for every operator at once).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from bridge.store.dialect import Dialect
from bridge.store.port import Fence, Read, ReadAhead, Tx

T = TypeVar("T")


class SnapshotPort(Protocol):
    """A read transaction spanning awaits (``Engine.snapshot``)."""

    async def run(self, fn: Callable[[Tx], T]) -> T: ...


class Engine(Protocol):
    """One database: ``await open()``, then writes (group-committed, acknowledged after their commit) and
    reads; ``await close()`` finishes the queued writes."""

    dialect: Dialect
    commits: int
    writes: int

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, fn: Callable[[Tx], T], *, inline: bool = False) -> T: ...

    async def write_reading(
        self, read: Read, fn: Callable[[Tx, ReadAhead | None], T], *, inline: bool = False
    ) -> T:
        """A write whose first statement is the read ``read``: the engine may make that read ahead, at the
        start of the write's group with the other writes' reads, and hand it to ``fn`` (``ReadAhead``);
        ``fn`` gets None where it is not (it then reads itself)."""
        ...

    def next_in_sequence(self, tx: Tx, name: str) -> int:
        """The next value of a named sequence, from inside a write function, in commit order."""
        ...

    async def read(self, fn: Callable[[Tx], T]) -> T: ...

    def snapshot(self) -> AbstractAsyncContextManager[SnapshotPort]: ...


async def lane_write(db: Engine, fence: Fence | None, operator_id: str, fn: Callable[[Tx], T]) -> T:
    """A write of an operator's lane: with several replicas (``fence`` set, ``bridge.leadership``) the
    fence is checked first in the same transaction, so a replica that lost the operator's lease changes
    nothing; one process (SQLite, ``fence`` None): the write as it is."""
    if fence is None:
        return await db.write(fn)

    def fenced(tx: Tx) -> T:
        fence(tx, operator_id)
        return fn(tx)

    return await db.write(fenced)


async def operator_write(
    db: Engine, fence: Fence | None, operator_id: str | None, fn: Callable[[Tx], T]
) -> T:
    """A write of one operator's lane (``lane_write``: fenced), or, ``operator_id`` None, a write for every
    operator at once (at start, before any lane runs: not fenced)."""
    if operator_id is None:
        return await db.write(fn)
    return await lane_write(db, fence, operator_id, fn)
