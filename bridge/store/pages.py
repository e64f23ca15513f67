"""A fullLoad's set read from one consistent snapshot (``Engine.snapshot``), page by page in EvseID order, so
a set of 100 000 rows never sits in memory whole. Both outboxes (status: ``bridge.store.outbox``, EVSE data:
``bridge.store.evse_data``) read their fullLoad sets this way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from bridge.store.engine import Engine
from bridge.store.port import Tx


async def snapshot_pages(
    db: Engine,
    *,
    table: str,
    column: str,
    where: str,
    args: tuple[Any, ...],
    sequence: str,
    opened: Callable[[int, int], None],
    page_size: int,
) -> AsyncIterator[list[tuple[str, str]]]:
    """(evse_id, ``column``) of the rows of ``table`` that ``where`` selects, ``page_size`` at a time.
    ``opened(watermark, count)`` hears, before the first page, the ``sequence`` value the snapshot saw
    (rows with a version up to it are exactly as read) and how many rows the set holds."""
    async with db.snapshot() as snap:

        def head(tx: Tx) -> tuple[int, int]:
            (watermark,) = tx.execute("SELECT value FROM sequence WHERE name = ?", (sequence,)).fetchone()
            (count,) = tx.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", args).fetchone()
            return int(watermark), int(count)

        opened(*await snap.run(head))

        def page_after(after: str) -> Callable[[Tx], list[tuple[str, str]]]:
            def read(tx: Tx) -> list[tuple[str, str]]:
                return [
                    (r[0], r[1])
                    for r in tx.execute(
                        f"SELECT evse_id, {column} FROM {table} WHERE {where} AND evse_id > ? "
                        "ORDER BY evse_id LIMIT ?",
                        (*args, after, page_size),
                    )
                ]

            return read

        last = ""
        while True:
            page = await snap.run(page_after(last))
            if not page:
                return
            last = page[-1][0]
            yield page
