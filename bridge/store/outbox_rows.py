"""An outbox's rows as its store reads and writes them: one row per (operator, EvseID), whole, through a row
mapper. Both outboxes (status: ``bridge.store.outbox``, EVSE data: ``bridge.store.evse_data``) take these
steps alike on their own table; each supplies its table (``OutboxRows``) and its pure rules, and these steps
only read the rows a rule touches, apply it and write the changed rows back, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bridge.outbox import MOVES_FROM, Doubtful, Event, RecordState, evse_key, settle_due
from bridge.store.port import Tx

R = TypeVar("R")  # a row (``bridge.outbox.Row``, ``bridge.evse_data.decide.DataRow``)
D = TypeVar("D", bound=Doubtful)
K = TypeVar("K")  # what a step is handed with each row (the record that was sent)

_CHUNK = 500  # EvseIDs per ``IN (…)``: well inside both engines' parameter limits


@dataclass(frozen=True, slots=True)
class OutboxRows(Generic[R]):
    """One outbox table: its statements and its row mapper (``outbox_rows`` builds one)."""

    table: str
    select: str  # ``evse_id``, then the columns, FROM the table
    select_with_operator: str  # the same and then ``operator_id``
    select_one: str  # ``select`` of one (operator, EvseID): the intake reads it for every change
    upsert: str  # ``operator_id``, ``evse_id``, the columns: the whole row
    to_row: Callable[[Any], R]  # a row read with ``select`` (or ``select_with_operator``)
    to_params: Callable[[str, str, R], tuple[Any, ...]]  # (operator, EvseID, row): ``upsert``'s parameters


def outbox_rows(
    table: str,
    columns: Sequence[str],
    to_row: Callable[[Any], R],
    to_params: Callable[[str, str, R], tuple[Any, ...]],
) -> OutboxRows[R]:
    listed = ", ".join(columns)
    return OutboxRows(
        table=table,
        select=f"SELECT evse_id, {listed} FROM {table}",
        select_with_operator=f"SELECT evse_id, {listed}, operator_id FROM {table}",
        select_one=f"SELECT evse_id, {listed} FROM {table} WHERE operator_id = ? AND evse_id = ?",
        upsert=(
            f"INSERT INTO {table} (operator_id, evse_id, {listed}) "
            f"VALUES ({', '.join('?' * (len(columns) + 2))}) "
            "ON CONFLICT (operator_id, evse_id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in columns)
        ),
        to_row=to_row,
        to_params=to_params,
    )


def load(tx: Tx, rows: OutboxRows[R], operator_id: str, evse_id: str) -> R | None:
    found = tx.execute(rows.select_one, (operator_id, evse_id)).fetchone()
    return None if found is None else rows.to_row(found)


def guarded(event: Event, step: Callable[[D, K], D]) -> Callable[[D, K], D]:
    """``step`` only for rows in a state the table (``bridge.outbox.TRANSITIONS``) lets ``event`` move a
    row from; a row that moved on meanwhile (a fullLoad settled it, a restart recovered it) is left as it
    is. Both outboxes guard by the one table: a row changed while its push was out (pending) still takes
    that push's outcome (unsure after a timeout; no longer marked as sent after a refusal)."""

    def apply(row: D, sent: K) -> D:
        if row.state not in MOVES_FROM[event]:
            return row
        return step(row, sent)

    return apply


def apply(
    tx: Tx, rows: OutboxRows[R], operator_id: str, wanted: Mapping[str, K], step: Callable[[R, K], R]
) -> list[tuple[str, R, R]]:
    """Apply ``step`` to the operator's rows of ``wanted`` (EvseID -> what ``step`` is handed with the row)
    and write the rows it changed; the (EvseID, before, after) of each. An EvseID without a row is passed
    over."""
    ids = list(wanted)
    changed: list[tuple[str, R, R]] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for found in tx.execute(
            f"{rows.select} WHERE operator_id = ? AND evse_id IN ({marks})", (operator_id, *chunk)
        ):
            row = rows.to_row(found)
            new = step(row, wanted[found["evse_id"]])
            if new != row:
                changed.append((found["evse_id"], row, new))
    if changed:
        tx.executemany(rows.upsert, [rows.to_params(operator_id, e, new) for e, _, new in changed])
    return changed


def settle(
    tx: Tx, rows: OutboxRows[D], operator_id: str, now: float, settled: Callable[[D, float], D]
) -> tuple[int, float | None]:
    """The operator's unsure rows that are ``bridge.outbox.settle_due`` (the same rule for both outboxes)
    become ``settled(row, now)``. Returns how many, and the next time a doubt ends (wall clock), if any."""
    due = [
        (f["evse_id"], rows.to_row(f))
        for f in tx.execute(f"{rows.select} WHERE operator_id = ? AND unsure = 1", (operator_id,))
    ]
    done = [(e, settled(r, now)) for e, r in due if settle_due(r, now)]
    tx.executemany(rows.upsert, [rows.to_params(operator_id, e, r) for e, r in done])
    later = [r.unsure_until for _, r in due if r.unsure_until is not None and r.unsure_until > now]
    return len(done), min(later) if later else None


def only_operator(operator_id: str | None) -> tuple[str, tuple[str, ...]]:
    """An ``AND`` condition (and its parameters) keeping one operator's rows; none for every operator's."""
    return ("", ()) if operator_id is None else (" AND operator_id = ?", (operator_id,))


def recover_in_flight(
    tx: Tx,
    rows: OutboxRows[R],
    operator_id: str | None,
    recovered: Callable[[R, float, float], R],
    now: float,
    unsure_until: float,
) -> int:
    """The rows in flight of one operator, or of every operator (``operator_id`` None), become
    ``recovered(row, now, unsure_until)``; returns how many."""
    only, args = only_operator(operator_id)
    found = [
        (f["operator_id"], f["evse_id"], rows.to_row(f))
        for f in tx.execute(
            f"{rows.select_with_operator} WHERE state = ?{only}",
            (RecordState.IN_FLIGHT.value, *args),
        )
    ]
    tx.executemany(
        rows.upsert, [rows.to_params(op, e, recovered(r, now, unsure_until)) for op, e, r in found]
    )
    return len(found)


def matching(tx: Tx, rows: OutboxRows[Any], operator_id: str, keys: set[str]) -> set[str]:
    """The operator's EvseIDs whose ``bridge.outbox.evse_key`` is one of ``keys`` (as Hubject names them)."""
    return {
        r[0]
        for r in tx.execute(f"SELECT evse_id FROM {rows.table} WHERE operator_id = ?", (operator_id,))
        if evse_key(r[0]) in keys
    }
