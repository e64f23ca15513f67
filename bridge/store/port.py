"""The store's transaction port: what a write or read function may do with the transaction it is handed.

Rules and repositories outside ``bridge.store`` see a ``Tx``, never an engine's connection type, so a second
engine (PostgreSQL) implements the same port. SQL text is the repositories' own; parameters are positional
(``?``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol


class Rows(Protocol):
    """The result of one statement: rows readable by column name and index."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ..., /) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """One transaction (a write's savepoint, or a read's snapshot)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Rows: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Rows: ...


# Several replicas (``bridge.leadership``): called first in the transaction of each write of an operator's
# lane with the operator's id; raises (a StoreError) unless this replica still leads that operator.
Fence = Callable[[Tx, str], None]
