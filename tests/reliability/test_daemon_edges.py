"""``oicp-bridge run`` attacked and operated on its edges (issue 12): a second daemon on the same store
(item 9), the store's file modes (item 15), idle and half-sent connections and the connection cap
(item 5), the admin listener's Authorization bytes and lower-case ``bearer`` (items 4 and 8), failed
authentication counted per listener (item 6)."""

from __future__ import annotations

import asyncio
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import AcceptErrorLog, connection_cap
from bridge.cli import main
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator
from tests.bridge.conftest import wait_for
from tests.reliability.daemon import ADMIN_TOKEN, CPO_TOKEN, Daemon, DaemonConfig


@pytest.fixture
async def hubject() -> AsyncIterator[ServedSimulator]:
    async with serve_simulator(HubjectSimulator()) as served:
        yield served


@pytest.fixture
async def daemon(
    tmp_path: Path, hubject: ServedSimulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Daemon]:
    monkeypatch.setenv("OICP_BRIDGE_OCPI__RECEIVER__IDLE_TIMEOUT", "500ms")
    monkeypatch.setenv("OICP_BRIDGE_OCPI__RECEIVER__MAX_CONNECTIONS", "20")
    running = Daemon(DaemonConfig(tmp_path, hubject.url))
    await running.start()
    yield running
    assert await running.stop() == 0


async def raw(port: int, data: bytes, *, read: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), timeout=10) if read else b""
    writer.close()
    return answer


async def metric(admin_url: str, name: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{admin_url}/metrics") as response:
        return "\n".join(line for line in (await response.text()).splitlines() if line.startswith(name))


async def test_a_second_daemon_on_the_same_store_refuses_to_start(daemon: Daemon, tmp_path: Path) -> None:
    second_folder = tmp_path / "second"
    second_folder.mkdir()
    config = DaemonConfig(second_folder, daemon.config.hubject_url)
    config.write()
    text = config.path.read_text(encoding="utf-8").replace(str(config.db_path), str(daemon.config.db_path))
    config.path.write_text(text, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "run",
        "--config",
        str(config.path),
        "--log-format",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    text = output.decode()
    assert "another oicp-bridge (pid " in text
    assert "one daemon per store" in text
    assert "Traceback" not in text
    # the first one is untouched and still serves
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.config.admin_url}/ready") as r:
        assert r.status == 200


async def test_the_store_and_its_companions_are_readable_by_their_owner_only(daemon: Daemon) -> None:
    db = daemon.config.db_path
    files = [
        db,
        db.with_name(db.name + "-wal"),
        db.with_name(db.name + "-shm"),
        db.with_name(db.name + ".lock"),
    ]
    for path in files:
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


async def test_an_older_world_readable_store_is_tightened(tmp_path: Path, hubject: ServedSimulator) -> None:
    config = DaemonConfig(tmp_path, hubject.url)
    config.db_path.touch(mode=0o644)
    config.db_path.chmod(0o644)
    daemon = Daemon(config)
    await daemon.start()
    try:
        assert stat.S_IMODE(config.db_path.stat().st_mode) == 0o600
    finally:
        await daemon.stop()


async def test_idle_and_half_sent_connections_are_closed(daemon: Daemon) -> None:
    port = daemon.config.receiver_port
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    half_reader, half_writer = await asyncio.open_connection("127.0.0.1", port)
    half_writer.write(b"GET /ocpi/versions HTTP/1.1\r\nHost: x\r\nAuthoriz")  # and then nothing
    await half_writer.drain()
    # both are closed by the bridge (EOF) soon after idle_timeout (500 ms), long before the test's limit
    assert await asyncio.wait_for(idle_reader.read(), timeout=10) == b""
    assert await asyncio.wait_for(half_reader.read(), timeout=10) == b""
    idle_writer.close()
    half_writer.close()


async def test_connections_beyond_the_cap_get_503_at_once(daemon: Daemon) -> None:
    port = daemon.config.receiver_port
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]

    async def refused() -> bool:
        answer = await raw(port, b"GET /ocpi/versions HTTP/1.1\r\nHost: x\r\n\r\n")
        return answer.startswith(b"HTTP/1.1 503")

    await wait_for(refused, within=10)
    for _, writer in held:
        writer.close()

    async def served() -> bool:
        answer = await raw(port, b"GET /ocpi/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return answer.startswith(b"HTTP/1.1 401")

    await wait_for(served, within=10)  # the slots come back once the connections close


@pytest.mark.parametrize("listener", ["ocpi", "admin"])
async def test_non_ascii_authorization_bytes_are_401_on_both_ports_and_counted(
    daemon: Daemon, listener: str
) -> None:
    if listener == "ocpi":
        port, request = daemon.config.receiver_port, b"GET /ocpi/versions HTTP/1.1\r\n"
        header = b"Authorization: Token " + CPO_TOKEN.encode() + b"\xff\r\n"
    else:
        port, request = daemon.config.admin_port, b"POST /resync HTTP/1.1\r\nContent-Length: 0\r\n"
        header = b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\xff\r\n"
    answer = await raw(port, request + b"Host: x\r\n" + header + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    counted = await metric(daemon.config.admin_url, "oicp_bridge_auth_failures_total")
    assert f'oicp_bridge_auth_failures_total{{listener="{listener}"}} 1.0' in counted
    logs = daemon.logs()
    assert CPO_TOKEN not in logs
    assert ADMIN_TOKEN not in logs
    assert "Traceback" not in logs


async def test_a_lower_case_bearer_scheme_is_accepted(daemon: Daemon) -> None:
    headers = {"Authorization": f"bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{daemon.config.admin_url}/resync", headers=headers) as response,
    ):
        assert response.status in (200, 409), await response.text()  # authenticated: a resync outcome
        body: dict[str, Any] = await response.json()
    assert "outcomes" in body


def test_check_config_warns_when_the_admin_listener_is_not_on_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = DaemonConfig(tmp_path, "http://127.0.0.1:9/api/oicp")
    config.write()
    assert main(["check-config", "--config", str(config.path)]) == 0
    assert "admin.listen" not in capsys.readouterr().out
    monkeypatch.setenv("OICP_BRIDGE_ADMIN__LISTEN", "0.0.0.0:8081")
    assert main(["check-config", "--config", str(config.path)]) == 0
    out = capsys.readouterr().out
    assert "warning: admin.listen: 0.0.0.0:8081 is not a loopback address" in out


def test_the_connection_cap_stays_below_the_descriptor_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_cap(10) == 10
    if soft != resource.RLIM_INFINITY:
        assert connection_cap(10**9) < soft


EMFILE = {
    "message": "socket.accept() out of system resource",
    "exception": OSError(24, "Too many open files"),
}


def test_accept_errors_are_logged_once_per_interval() -> None:
    import structlog
    from structlog.testing import capture_logs

    now = [0.0]
    handler = AcceptErrorLog(structlog.get_logger("test"), clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        with capture_logs() as logs:
            for _ in range(1000):  # EMFILE storms repeat the same failure
                handler.handle(
                    loop, {"message": "socket.accept() out of system resource", "exception": OSError(24)}
                )
                now[0] += 0.005
            now[0] += 10
            handler.handle(
                loop, {"message": "socket.accept() out of system resource", "exception": OSError(24)}
            )
    finally:
        loop.close()
    assert [e["event"] for e in logs] == ["accepting connections fails"] * 2
    assert logs[1]["repeated"] == 999
