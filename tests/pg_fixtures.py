"""Fixtures for the tests that need a real PostgreSQL server (imported into ``tests/conftest.py``).

- ``pg_cluster`` (session): the server at ``OICP_BRIDGE_TEST_PG_URL`` (``.ci/run`` starts one and sets it),
  else one started for the session from Debian's packages (``tests.pg_server``).
- ``pg_url``: a new empty database on it for one test, dropped afterwards.
- ``pg_private_server``: a server of the test's own, which the test may stop and start again.

Without PostgreSQL these tests skip with the reason, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

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
    from psycopg.conninfo import make_conninfo  # psycopg is optional: imported only when used

    return make_conninfo(admin_url, dbname=name)


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    import psycopg  # psycopg is optional: imported only when used

    name = f"oicp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield _database_url(pg_cluster.admin_url, name)
    finally:
        with psycopg.connect(pg_cluster.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


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
