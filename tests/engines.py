"""Both store engines for the tests: ``engine_url`` (a fixture in ``tests/conftest.py``) runs a test once on
SQLite (a file in tmp_path) and once on PostgreSQL (a new database on ``pg_url``); ``open_engine`` builds the
engine a URL names exactly as the daemon does (``bridge.app.build_store``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bridge.app import build_store
from bridge.config import StoreConfig
from bridge.store.engine import Engine
from bridge.store.port import Tx

ENGINES = ("sqlite", "postgresql")


def build_engine(url: str) -> Engine:
    return build_store(StoreConfig(url=url))


@asynccontextmanager
async def open_engine(url: str) -> AsyncIterator[Engine]:
    engine = build_engine(url)
    await engine.open()
    try:
        yield engine
    finally:
        await engine.close()


def table_names(tx: Tx, engine: Engine) -> list[str]:
    """The tables of the store, sorted (each engine has its own catalogue)."""
    if engine.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
    return [row[0] for row in tx.execute(sql)]


def dump(tx: Tx, engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: to assert that something changed nothing."""
    return {
        name: sorted((tuple(r) for r in tx.execute(f"SELECT * FROM {name}")), key=repr)
        for name in table_names(tx, engine)
    }
