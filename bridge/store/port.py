"""The store's transaction port: what a write or read function may do with the transaction it is handed.

Rules and repositories outside ``bridge.store`` see a ``Tx``, never an engine's connection type, so a second
engine (PostgreSQL) implements the same port. SQL text is the repositories' own; parameters are positional
(``?``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
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


class GroupChanges:
    """What the earlier writes of one write group changed, as far as they recorded it, for the group's
    read-ahead writes (``ReadAhead``) to tell whether the rows read at the group's start still hold.
    ``notes``: keys (and values) the writes chose to record; ``everything``: an earlier write changed what
    it did not record (any plain write does), so no read-ahead of the group holds any more."""

    __slots__ = ("everything", "notes")

    def __init__(self) -> None:
        self.notes: dict[Hashable, Any] = {}
        self.everything = False


class ReadAhead:
    """A write's read, made at the start of its write group (on PostgreSQL every write of a group sends
    its read in one round trip, before the group's writes run): ``rows`` as they were then, ``changes``
    what the group's earlier writes changed since. A write handed one uses ``rows`` only where
    ``changes`` says they still hold (else it reads again), and records in ``changes`` what it writes
    (or sets ``everything``), for the writes after it."""

    __slots__ = ("changes", "rows")

    def __init__(self, rows: Rows, changes: GroupChanges) -> None:
        self.rows = rows
        self.changes = changes


# The read a write may be handed made ahead (``Engine.write_reading``): its statement and parameters.
Read = tuple[str, Sequence[Any]]
