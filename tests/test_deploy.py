"""The deployment files as an operations team uses them (issue 12, items 15-17): the systemd unit is
hardened and its credentials really feed the configuration, the Kubernetes example probes /health, the
Dockerfile pins its base, keeps a dependency layer, checks health from the configuration, and its
build context leaves build outputs out. The image itself cannot be built here (no registry); the wheel
it installs is built by tests/bridge/test_cli.py and its health command is run below."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from bridge.config import load_config
from oicp.simulator import HubjectSimulator, ServedSimulator, serve_simulator
from tests.reliability.daemon import Daemon, DaemonConfig

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "oicp-bridge.service"


def unit_lines(key: str) -> list[str]:
    prefix = f"{key}="
    return [line.removeprefix(prefix) for line in UNIT.read_text().splitlines() if line.startswith(prefix)]


def test_the_unit_is_hardened() -> None:
    assert unit_lines("UMask") == ["0077"]
    assert int(unit_lines("LimitNOFILE")[0]) >= 65536
    assert unit_lines("NoNewPrivileges") == ["yes"]
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match[1]) <= 3.0


def test_every_credential_the_unit_loads_feeds_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"  # what systemd makes of LoadCredential= (%d)
    credentials.mkdir()
    loaded = [line.split(":", 1)[0] for line in unit_lines("LoadCredential")]
    assert loaded
    for name in loaded:
        (credentials / name).write_text(f"content of {name}\n", encoding="utf-8")
    environment = [line.split("=", 1) for line in unit_lines("Environment")]
    uses = {name: value for name, value in environment if "%d/" in value}
    assert {value.rsplit("/", 1)[1] for value in uses.values()} == set(loaded)  # each one used, none missing
    for name, value in environment:
        if name != "OICP_BRIDGE_CONFIG":
            monkeypatch.setenv(
                name, value.replace("%d", str(credentials)).replace("////var", f"///{tmp_path}")
            )
    config = load_config(None)
    assert config.admin.token is not None
    assert config.admin.token.get_secret_value() == "content of admin-token"
    assert config.hubject.client_key == credentials / "hubject-client.key"
    assert config.hubject.client_cert == credentials / "hubject-client.pem"


def kubernetes() -> list[dict[str, object]]:
    return list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))


def test_the_kubernetes_sidecar_probes_health_not_ready() -> None:
    statefulset = next(d for d in kubernetes() if d["kind"] == "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]  # type: ignore[index]
    bridge = next(c for c in pod["containers"] if c["name"] == "oicp-bridge")
    assert bridge["readinessProbe"]["httpGet"]["path"] == "/health"
    assert bridge["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["terminationGracePeriodSeconds"] > 20  # > the default shutdown_timeout
    rules = next(d for d in kubernetes() if d["kind"] == "PrometheusRule")
    exprs = " ".join(r["expr"] for g in rules["spec"]["groups"] for r in g["rules"])  # type: ignore[index]
    assert "oicp_bridge_oldest_pending_age_seconds" in exprs


def test_the_dockerfile_pins_its_base_and_keeps_a_dependency_layer() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$", text, re.M)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE}", "${BASE}"]
    # the constraints are copied and built before any source: source changes keep that layer
    assert text.index("COPY deploy/constraints.txt") < text.index("COPY bridge")
    assert "-r constraints.txt" in text
    assert (
        'HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["oicp-bridge", "health"]'
        in text
    )
    assert 'ENTRYPOINT ["oicp-bridge"]' in text
    assert 'CMD ["run"]' in text


def test_the_constraints_pin_every_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {
        re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
        for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    wanted = {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~ \[;]", d)[0]).lower() for d in project["dependencies"]}
    assert wanted <= pinned


def test_the_docker_build_context_leaves_build_outputs_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {
        ".git",
        ".venv",
        "build",
        "dist",
        "*.egg-info",
        "*.whl",
        "**/__pycache__",
        "*.db",
        "*.db.lock",
    } <= ignored
    assert "deploy" not in ignored  # the build needs deploy/constraints.txt
    assert "config" not in ignored  # and config/example.toml (bridge/example.toml points there)


@pytest.fixture
async def hubject() -> AsyncIterator[ServedSimulator]:
    async with serve_simulator(HubjectSimulator()) as served:
        yield served


async def test_the_health_command_follows_the_configured_admin_address(
    tmp_path: Path, hubject: ServedSimulator
) -> None:
    config = DaemonConfig(tmp_path, hubject.url)
    config.write()

    async def health() -> tuple[int | None, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "health", "--config", str(config.path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
        return process.returncode, err.decode()

    code, err = await health()
    assert code == 1
    assert f"127.0.0.1:{config.admin_port}/health" in err
    daemon = Daemon(config)
    await daemon.start()
    try:
        assert await health() == (0, "")
    finally:
        await daemon.stop()
