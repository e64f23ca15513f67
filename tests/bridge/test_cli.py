"""The command line as an operator meets it on day one (issue 12, items 12 and 14): ``--version``, no
traceback for a bad option or a closed pipe, a help text for every option, ``status`` as a Nagios-style
check that agrees with ``/status.json``, log settings from the configuration and the environment, and
``example-config`` from the installed wheel."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.cli import build_parser, main
from bridge.commands.status import exit_status
from bridge.store.database import Database
from bridge.store.schema import MIGRATIONS
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator
from tests.bridge.conftest import wait_for
from tests.reliability.daemon import Daemon, DaemonConfig

ROOT = Path(__file__).resolve().parents[2]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "oicp-bridge 0.1.0"


def test_a_bad_log_level_is_a_usage_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--log-level", "foo"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'FOO'" in err
    assert "Traceback" not in err
    assert main(["run", "--log-level", "warning", "--config", "/nonexistent.toml"]) == 1  # any case accepted


def test_every_option_of_every_command_has_a_help_text() -> None:
    parser, _ = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert missing == []
    assert all(action.help for action in commands._choices_actions)


def test_status_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    config = DaemonConfig(tmp_path, "http://127.0.0.1:9/api/oicp")
    config.write()

    async def create_store() -> None:
        # SQLite only: this is about the CLI's output into a closed pipe; the store is incidental
        db = Database(config.db_path, MIGRATIONS)
        await db.open()
        await db.close()

    asyncio.run(create_store())
    read_end, write_end = os.pipe()
    os.close(read_end)  # `status | head` where head has already left: every write fails with EPIPE
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "status", "--config", str(config.path)],
        stdout=write_end,
        stderr=subprocess.PIPE,
        timeout=60,
        check=False,
    )
    os.close(write_end)
    assert "Traceback" not in result.stderr.decode()
    assert "BrokenPipeError" not in result.stderr.decode()
    assert result.returncode == 1, result.stderr


def test_exit_status_is_a_nagios_style_check() -> None:
    ok = {
        "ready": True,
        "problems": [],
        "operators": {"DE*OBD": {"dead": 0, "parked": 0}},
        "dead_letters": [],
    }
    assert exit_status(ok) == 0
    assert exit_status({**ok, "operators": {"DE*OBD": {"dead": 1, "parked": 0}}}) == 1
    assert exit_status({**ok, "operators": {"DE*OBD": {"dead": 0, "parked": 2}}}) == 1
    assert exit_status({**ok, "ready": False, "problems": ["x"]}) == 2


@pytest.fixture
async def hubject() -> AsyncIterator[ServedSimulator]:
    async with serve_simulator(HubjectSimulator()) as served:
        yield served


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def status_json(admin_url: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(f"{admin_url}/status.json") as response:
        body: dict[str, object] = await response.json()
        return body


async def test_status_asks_the_running_daemon_and_exits_by_readiness(
    tmp_path: Path, hubject: ServedSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OICP_BRIDGE_LOG__LEVEL", "warning")  # from the environment, for the daemon
    config = DaemonConfig(tmp_path, hubject.url)
    daemon = Daemon(config)
    await daemon.start()
    try:
        code, out, err = await cli("status", "--config", str(config.path), "--json")
        assert code == 0, err
        answer, served = json.loads(out), await status_json(config.admin_url)
        assert (answer["ready"], answer["problems"]) == (served["ready"], served["problems"]) == (True, [])
        code, out, _ = await cli("status", "--config", str(config.path))
        assert code == 0
        assert out.startswith("ready\n")
    finally:
        assert await daemon.stop() == 0
    logs = daemon.logs()
    assert '"bridge started"' not in logs  # info lines are below the level set in the environment
    code, out, _ = await cli("status", "--config", str(config.path), "--json")
    assert code == 2
    assert json.loads(out)["ready"] is False
    assert "not running" in json.loads(out)["problems"][0]


async def test_status_is_not_ready_while_pushes_fail(tmp_path: Path) -> None:
    from bridge.ocpi.cpo_sim.model import CpoFleet
    from bridge.ocpi.cpo_sim.pusher import CpoPusher
    from bridge.ocpi.versions import OcpiVersion
    from tests.reliability.daemon import CPO_TOKEN

    config = DaemonConfig(tmp_path, "http://127.0.0.1:9/api/oicp")  # nothing listens on port 9
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as session:
            pusher = CpoPusher(
                CpoFleet(seed=1, locations=1, evses_per_location=1, party_id="OBD"),
                OcpiVersion.V2_2_1,
                session,
            )
            await pusher.discover(f"{config.receiver_url}/ocpi/versions", CPO_TOKEN)
            await pusher.push_all()

        async def not_ready() -> bool:
            return (await status_json(config.admin_url))["ready"] is False

        await wait_for(not_ready, within=30)
        code, out, _ = await cli("status", "--config", str(config.path), "--json")
        served = await status_json(config.admin_url)
        assert code == 2
        assert json.loads(out)["problems"] == served["problems"]
        assert "pushes for DE*OBD are failing" in served["problems"][0]  # type: ignore[index]
    finally:
        await daemon.stop()


def test_example_config_from_the_installed_wheel(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("oicp", "bridge", "config"):
        shutil.copytree(
            ROOT / folder, source / folder, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheels),
            ".",
        ],
        cwd=source,
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = wheels.glob("oicp_bridge-*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        assert "bridge/example.toml" in archive.namelist()
        (entry_points,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        # the Docker image's ENTRYPOINT ["oicp-bridge"] is this console script
        assert "oicp-bridge = bridge.cli:main" in archive.read(entry_points).decode()
        archive.extractall(installed)
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run(
        [sys.executable, "-c", "import bridge; print(bridge.__file__)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert where.stdout.startswith(str(installed))  # the wheel's copy, not the source tree
    printed = subprocess.run(
        [sys.executable, "-m", "bridge", "example-config"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert printed.stdout == (ROOT / "config" / "example.toml").read_text(encoding="utf-8")
    assert "[ocpi.receiver]" in printed.stdout
