"""``oicp-bridge run`` as an operator runs it: a real process, real sockets, signals; and the admin API,
``status``, ``resync`` and ``check-config`` commands against it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.cpo_sim.pusher import CpoPusher
from bridge.ocpi.versions import OcpiVersion
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator
from tests.bridge.conftest import wait_for
from tests.conftest import TLSMaterial

TOKEN = "daemon-cpo-token"
ADMIN_TOKEN = "daemon-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(folder: Path, hubject_url: str, *, extra: str = "") -> tuple[Path, int, int]:
    receiver, admin = free_port(), free_port()
    path = folder / "oicp-bridge.toml"
    path.write_text(
        f"""
[store]
url = "sqlite:///{folder / "bridge.db"}"
[hubject]
url = "{hubject_url}"
timeout = "2s"
[[operators]]
operator_id = "DE*OBD"
[ocpi.receiver]
listen = "127.0.0.1:{receiver}"
[[ocpi.receiver.tokens]]
token = "{TOKEN}"
country_code = "DE"
party_id = "OBD"
[push]
flush_interval = "50ms"
shutdown_timeout = "10s"
max_retry_interval = "100ms"
retry_budget = "1s"
[resync]
interval = 0
[admin]
listen = "127.0.0.1:{admin}"
token = "{ADMIN_TOKEN}"
{extra}
""",
        encoding="utf-8",
    )
    return path, receiver, admin


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


@asynccontextmanager
async def daemon(config: Path, admin_port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "run",
        "--config",
        str(config),
        "--log-format",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    async with (
                        aiohttp.ClientSession() as session,
                        session.get(f"http://127.0.0.1:{admin_port}/health") as r,
                    ):
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def get(url: str, **kwargs: object) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status, await response.text()


async def push_fleet(receiver_port: int, fleet: CpoFleet) -> None:
    async with aiohttp.ClientSession() as session:
        pusher = CpoPusher(fleet, OcpiVersion.V2_2_1, session)
        await pusher.discover(f"http://127.0.0.1:{receiver_port}/ocpi/versions", TOKEN)
        await pusher.push_all()


async def holds(hubject: ServedSimulator, count: int) -> bool:
    return len(hubject.simulator.statuses("DE*OBD")) >= count


@pytest.fixture
async def hubject() -> AsyncIterator[ServedSimulator]:
    async with serve_simulator(HubjectSimulator()) as served:
        yield served


async def test_daemon_serves_admin_pushes_and_drains_on_sigterm(
    tmp_path: Path, hubject: ServedSimulator
) -> None:
    config, receiver, admin = write_config(tmp_path, hubject.url)
    fleet = CpoFleet(seed=5, locations=4, evses_per_location=3, country_code="DE", party_id="OBD")
    base = f"http://127.0.0.1:{admin}"
    async with daemon(config, admin) as process:
        assert (await get(f"{base}/ready"))[0] == 200
        hubject.simulator.faults.error_5xx_rate = 1.0  # Hubject is down: intake still works, readiness drops
        hubject.simulator.faults.retry_after = None
        await push_fleet(receiver, fleet)

        async def not_ready() -> bool:
            return (await get(f"{base}/ready"))[0] == 503

        await wait_for(not_ready, within=20)

        async def twelve_pending() -> bool:
            status, metrics = await get(f"{base}/metrics")
            return status == 200 and 'oicp_bridge_pending_records{operator_id="DE*OBD"} 12.0' in metrics

        await wait_for(twelve_pending, within=20)
        hubject.simulator.faults.error_5xx_rate = 0.0  # recovery: no manual step
        await wait_for(lambda: holds(hubject, 12), within=20)
        _, page = await get(f"{base}/status")
        assert "DE*OBD" in page
        assert "<table>" in page

        async def all_delivered() -> bool:
            _, body = await get(f"{base}/status.json")
            return bool(json.loads(body)["operators"]["DE*OBD"].get("delivered") == 12)

        await wait_for(all_delivered, within=20)
        process.send_signal(signal.SIGTERM)
        assert process.stdout is not None
        output = (await asyncio.wait_for(process.stdout.read(), timeout=30)).decode()
        assert await process.wait() == 0
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(line["event"] == "bridge stopped" and line["pending_records"] == 0 for line in lines)
    assert TOKEN not in output
    assert ADMIN_TOKEN not in output

    code, out, _ = await cli("status", "--config", str(config))
    assert code == 2  # the daemon has stopped: not ready (a Nagios-style check); figures from the file
    assert "not running" in out
    assert "DE*OBD" in out
    assert "by Hubject status" in out
    code, out, _ = await cli("status", "--config", str(config), "--json")
    assert json.loads(out)["operators"]["DE*OBD"]["delivered"] == 12


async def test_resync_command_goes_through_the_admin_api(tmp_path: Path, hubject: ServedSimulator) -> None:
    config, receiver, admin = write_config(tmp_path, hubject.url)
    async with daemon(config, admin):
        await push_fleet(receiver, CpoFleet(seed=2, locations=2, evses_per_location=2, party_id="OBD"))
        await wait_for(lambda: holds(hubject, 4), within=20)
        code, out, err = await cli("resync", "--config", str(config))
        assert code == 0, err
        assert out.strip() == "DE*OBD: done (4 records)"
        status, _ = await get(f"http://127.0.0.1:{admin}/status")
        assert status == 200
        async with aiohttp.ClientSession() as session, session.post(f"http://127.0.0.1:{admin}/resync") as r:
            assert r.status == 401  # no bearer token
        code, _, err = await cli("resync", "--config", str(config), "--operator", "DE*XXX")
        assert code == 1
        assert "not a configured operator" in err
    assert any(e.action_type == "fullLoad" for e in hubject.simulator.request_log)


async def test_check_config_reports_each_problem_on_its_own_line(tmp_path: Path, tls: TLSMaterial) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[hubject]\nurl = "https://service-qa.hubject.com"\nclient_cert = "/nonexistent.pem"\n'
        'client_key = "/nonexistent.key"\n[push]\nflush_interval = "soon"\n[mapping]\nBLOCKED = "busy"\n',
        encoding="utf-8",
    )
    code, out, _ = await cli("check-config", "--config", str(bad))
    assert code == 1
    assert "push.flush_interval" in out
    bad.write_text(
        '[hubject]\nurl = "https://service-qa.hubject.com"\nclient_cert = "/nonexistent.pem"\n'
        'client_key = "/nonexistent.key"\n[mapping]\nBLOCKED = "busy"\n',
        encoding="utf-8",
    )
    code, out, _ = await cli("check-config", "--config", str(bad))
    problems = out.strip().splitlines()
    assert code == 1
    assert any("no [[operators]]" in line for line in problems)
    assert any("/api/oicp" in line for line in problems)
    assert any("/nonexistent.pem" in line for line in problems)
    assert any("mapping" in line and "busy" in line for line in problems)

    good = tmp_path / "good.toml"
    good.write_text(
        f'[hubject]\nurl = "https://localhost/api/oicp"\nclient_cert = "{tls.client_cert}"\n'
        f'client_key = "{tls.client_key}"\nca_cert = "{tls.ca_cert}"\n[[operators]]\noperator_id = "DE*OBD"\n'
        '[admin]\ntoken = "x"\n[[ocpi.receiver.tokens]]\ntoken = "t"\n'
        'country_code = "DE"\nparty_id = "OBD"\n',
        encoding="utf-8",
    )
    code, out, _ = await cli("check-config", "--config", str(good))
    assert code == 0, out
    assert "OK" in out


async def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config, _, _ = write_config(tmp_path, "http://127.0.0.1:9/api/oicp")
    env = {**os.environ, "OICP_BRIDGE_PUSH__FLUSH_INTERVAL": "never"}
    code, out, _ = await cli("check-config", "--config", str(config), env=env)
    assert code == 1
    assert "push.flush_interval" in out


async def test_run_refuses_to_start_without_operators_or_with_a_missing_file(tmp_path: Path) -> None:
    code, _, err = await cli("run", "--config", str(tmp_path / "missing.toml"))
    assert code == 1
    assert "no such configuration file" in err
    empty = tmp_path / "empty.toml"
    empty.write_text("[push]\nflush_interval = 1\n", encoding="utf-8")
    code, _, err = await cli("run", "--config", str(empty))
    assert code == 1
    assert "no [[operators]] configured" in err
