"""What a store engine offers the repositories: the interface ``bridge.store.database.Database`` (SQLite) and
``bridge.store.postgres.PostgresDatabase`` both have, so a repository can be written against either.

Not used by the repositories yet (they take ``Database``): this is the shape the next step of issue 15 moves
them to (docs/postgres.md). ``tests/typing/store_engines.py`` makes mypy check that both engines fit it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from bridge.store.dialect import Dialect
from bridge.store.port import Tx

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

    def next_in_sequence(self, tx: Tx, name: str) -> int:
        """The next value of a named sequence, from inside a write function, in commit order."""
        ...

    async def read(self, fn: Callable[[Tx], T]) -> T: ...

    def snapshot(self) -> AbstractAsyncContextManager[SnapshotPort]: ...
