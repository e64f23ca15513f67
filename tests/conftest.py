"""Fixtures shared by every test area: real TLS material made by trustme.

Area-specific fixtures (simulators on ephemeral ports, stores on temp files) live in the
``conftest.py`` of each test folder.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

# A real PostgreSQL server for the store's second engine (tests/pg_fixtures.py).
from tests.engines import ENGINES
from tests.pg_fixtures import empty_tables, pg_cluster, pg_databases, pg_private_server, pg_url

# Suite-wide secret check (tests/secret_scan.py): the hooks and fixtures live there, imported here so
# they apply to the whole suite.
from tests.secret_scan import _secret_scan_basetemp, pytest_configure, secrets_registry

__all__ = ["_secret_scan_basetemp", "pytest_configure", "secrets_registry"]
__all__ += ["pg_cluster", "pg_databases", "pg_private_server", "pg_url"]


@pytest.fixture(params=ENGINES)
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store URL of one engine: each test that takes it runs on SQLite and on PostgreSQL
    (tests/engines.py). In CI a missing PostgreSQL fails the PostgreSQL run (``pg_url``), never skips it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bridge.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def new_engine_url(engine_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """More stores of ``engine_url``'s engine: each call a new empty one (a file, or a database)."""
    if engine_url.startswith("sqlite:///"):
        count = iter(range(1, 1_000_000))
        return lambda: f"sqlite:///{tmp_path / f'bridge-{next(count)}.db'}"
    factory: Callable[[], str] = request.getfixturevalue("pg_databases")
    return factory


@pytest.fixture
def emptied_engine_url(engine_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """For property tests (one store per example, each closed before the next): on SQLite a new file
    each call; on PostgreSQL the same database, its tables emptied to the state migrations leave
    (creating a database per example would make those tests many times slower)."""
    if engine_url.startswith("sqlite:///"):
        count = iter(range(1, 1_000_000))
        return lambda: f"sqlite:///{tmp_path / f'bridge-{next(count)}.db'}"

    def emptied() -> str:
        empty_tables(engine_url)
        return engine_url

    return emptied


@dataclass(frozen=True)
class TLSMaterial:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all as files."""

    ca: trustme.CA
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self, *, require_client_cert: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.ca_cert)
        return ctx


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("cpo-client.example")
    ca_cert = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_cert))
    server_cert, server_key = folder / "server.pem", folder / "server.key"
    server.cert_chain_pems[0].write_to_path(str(server_cert))
    server.private_key_pem.write_to_path(str(server_key))
    client_cert, client_key = folder / "client.pem", folder / "client.key"
    client.cert_chain_pems[0].write_to_path(str(client_cert))
    client.private_key_pem.write_to_path(str(client_key))
    return TLSMaterial(ca, ca_cert, server_cert, server_key, client_cert, client_key)
