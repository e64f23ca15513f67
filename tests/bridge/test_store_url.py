"""``[store] url = "postgresql://…"``: validated with the configuration, and its password never reaches a
log, an error message or ``check-config``'s output (contract "Several replicas"; ``StoreConfig``)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bridge.config import StoreConfig, load_config, redact_url
from bridge.errors import ConfigError
from tests.reliability.daemon import Daemon, DaemonConfig
from tests.secret_scan import SecretRegistry

PASSWORD = "pg-Secret-7f3e9a"


def with_password(url: str, password: str = PASSWORD) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://h/db", "use sqlite:///PATH or postgresql://user@host:port/database"),
        (f"postgresql://u:{PASSWORD}@h:99999/db", "the port in the postgresql:// URL is not a number"),
        (f"postgresql://u:{PASSWORD}@h:5432/", "the postgresql:// URL names no database"),
        ("sqlite:///", "sqlite:/// needs a file path"),
    ],
)
def test_a_bad_store_url_is_refused_without_echoing_it(
    url: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OICP_BRIDGE_STORE__URL", url)
    with pytest.raises(ConfigError) as raised:
        load_config(None)
    (line,) = [p for p in raised.value.problems if p.startswith("store.url")]
    assert problem in line
    assert PASSWORD not in line


def test_the_shown_url_hides_the_password() -> None:
    store = StoreConfig(url=f"postgresql://bridge:{PASSWORD}@db.example:5432/oicp", lease="2500ms")
    assert store.is_postgres
    assert store.lease == 2.5
    assert store.display_url == "postgresql://bridge:***@db.example:5432/oicp"
    assert redact_url("postgresql://bridge@db.example/oicp") == "postgresql://bridge@db.example/oicp"
    assert not StoreConfig().is_postgres


async def test_run_and_check_config_never_show_the_password(
    tmp_path: Path, pg_url: str, secrets_registry: SecretRegistry
) -> None:
    secrets_registry.add(PASSWORD)
    # the test server trusts loopback connections: the password is carried, not checked
    url = with_password(pg_url)
    config = DaemonConfig(tmp_path, "http://127.0.0.1:1/api/oicp", env={"OICP_BRIDGE_STORE__URL": url})
    config.write()
    code, out = await cli("check-config", "--config", str(config.path), env=config.env)
    assert PASSWORD not in out
    daemon = Daemon(config)
    await daemon.start()
    assert await daemon.stop() == 0
    logs = daemon.logs()
    assert "postgresql://postgres:***@127.0.0.1" in logs  # the start line names the store, redacted
    assert PASSWORD not in logs
    # a server that is not there: a clear error, exit status not 0, no traceback, no password
    away = with_password(f"postgresql://postgres@127.0.0.1:{closed_port()}/oicp")
    code, out = await cli("run", "--config", str(config.path), env={"OICP_BRIDGE_STORE__URL": away})
    assert code != 0
    assert "cannot open the store on PostgreSQL" in out
    assert "Traceback" not in out
    assert PASSWORD not in out
