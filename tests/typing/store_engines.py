"""Both store engines fit ``bridge.store.engine.Engine`` (mypy --strict checks this file; it never runs)."""

from __future__ import annotations

from pathlib import Path

from bridge.store.database import Database
from bridge.store.engine import Engine
from bridge.store.postgres import PostgresDatabase


def engines() -> list[Engine]:
    return [Database(Path("bridge.db"), []), PostgresDatabase("postgresql://127.0.0.1/bridge", [])]


class NotAnEngine:
    async def open(self) -> None: ...


def not_an_engine() -> Engine:
    return NotAnEngine()  # type: ignore[return-value]
