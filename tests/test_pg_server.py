"""The test PostgreSQL server itself (tests/pg_server.py, tests/pg_fixtures.py): the command ``.ci/run`` uses,
and the rule that a missing PostgreSQL skips on a developer's machine but fails in CI."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.pg_fixtures import unavailable
from tests.pg_server import PgUnavailableError, find_bindir


def test_without_postgresql_a_developer_skips_and_ci_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is needed: no server here"):
        unavailable("no server here")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is needed: no server here"):
        unavailable("no server here")


def test_the_ci_command_starts_a_loopback_server_and_stops_it() -> None:
    try:
        find_bindir()
    except PgUnavailableError as exc:
        unavailable(str(exc))
    folder = Path(tempfile.mkdtemp(prefix="oicp-pg-cli-"))
    data = folder / "data"
    try:
        started = subprocess.run(
            [sys.executable, "-m", "tests.pg_server", "start", str(data)],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        url = started.stdout.strip()
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        with psycopg.connect(url, autocommit=True) as conn:
            listen = conn.execute("SHOW listen_addresses").fetchone()
            sockets = conn.execute("SHOW unix_socket_directories").fetchone()
        assert listen == ("127.0.0.1",)
        assert sockets == ("",)
        stopped = subprocess.run(
            [sys.executable, "-m", "tests.pg_server", "stop", str(data)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert stopped.returncode == 0
        assert not data.exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
    finally:
        subprocess.run([sys.executable, "-m", "tests.pg_server", "stop", str(data)], check=False, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_command_explains_its_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.pg_server", "begin"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "usage: python -m tests.pg_server start|stop DATA_DIR" in done.stderr
