"""Fixtures for the tests that need a real PostgreSQL server (imported into ``tests/conftest.py``).

- ``pg_cluster`` (session): the server at ``OICP_BRIDGE_TEST_PG_URL`` (``.ci/run`` starts one and sets it),
  else one started for the session from Debian's packages (``tests.pg_server``).
- ``pg_url``: a new empty database on it for one test, dropped afterwards (``pg_databases``: as many as
  a test needs).
- ``pg_private_server``: a server of the test's own, which the test may stop and start again.

Without PostgreSQL these tests skip with the reason, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.pg_server import PgServer, PgUnavailableError, temporary_server

URL_VARIABLE = "OICP_BRIDGE_TEST_PG_URL"


@dataclass(frozen=True)
class PgCluster:
    """Where the tests create their databases; ``server`` is None for a server given by URL."""

    admin_url: str
    server: PgServer | None


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where PostgreSQL must be there (.ci/run installs it)."""
    message = f"PostgreSQL is needed: {reason}"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(message)
    pytest.skip(message)


def _require_driver() -> None:
    try:
        import psycopg  # noqa: F401 - only to know whether the optional driver is installed
    except ImportError:
        unavailable("the psycopg driver is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    _require_driver()
    url = os.environ.get(URL_VARIABLE)
    if url:
        yield PgCluster(url, None)
        return
    try:
        server = temporary_server()
    except PgUnavailableError as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable() skips or fails
    try:
        yield PgCluster(server.url, server)
    finally:
        server.destroy()


def _database_url(admin_url: str, name: str) -> str:
    """``admin_url`` (a postgresql:// URL, as ``[store] url`` takes it) naming database ``name``."""
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def pg_databases(pg_cluster: PgCluster) -> Iterator[Callable[[], str]]:
    """A factory of new empty databases on the cluster (as many as a test needs), dropped afterwards."""
    import psycopg  # psycopg is optional: imported only when used

    names: list[str] = []

    def create() -> str:
        name = f"oicp_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_cluster.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        names.append(name)
        return _database_url(pg_cluster.admin_url, name)

    try:
        yield create
    finally:
        with psycopg.connect(pg_cluster.admin_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def empty_tables(url: str) -> None:
    """Every table of the database at ``url`` as a fresh migration leaves it (nobody may be connected)."""
    import psycopg  # psycopg is optional: imported only when used

    with psycopg.connect(url, autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                " AND table_name != 'bridge_schema'"
            )
        ]
        if not names:
            return
        conn.execute(f"TRUNCATE {', '.join(names)}".encode())
        if "sequence" in names:  # the one row migration 1 inserts (schema_pg.py)
            conn.execute("INSERT INTO sequence VALUES ('outbox_version', 0)")


@pytest.fixture
def pg_url(pg_databases: Callable[[], str]) -> str:
    return pg_databases()


@pytest.fixture
def pg_private_server() -> Iterator[PgServer]:
    _require_driver()
    try:
        server = temporary_server()
    except PgUnavailableError as exc:
        unavailable(str(exc))
        raise
    try:
        yield server
    finally:
        server.destroy()
