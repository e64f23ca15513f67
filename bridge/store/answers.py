"""Answering the callers of one write group, for both engines (``database``, ``postgres``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


def answer(futures: Sequence[asyncio.Future[Any]], outcomes: Sequence[tuple[bool, Any]]) -> None:
    """Give each caller its write's result or error, once its group is settled (committed or not)."""
    for future, (ok, value) in zip(futures, outcomes, strict=True):
        if future.done():  # cancelled while its write ran: the write stands, the answer has no taker
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
