"""The ``oicp`` distribution: its wheel holds the library alone, and installed alone in a clean virtual
environment it pushes to the ``hubject-sim`` it installed, with the example from docs/oicp.md.

The clean-venv test installs the wheel's dependencies with pip (about 15 s with pip's cache; the package
index must be reachable, as for the project's own install).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import oicp

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "oicp.md"
EXAMPLE_URL = "http://127.0.0.1:8090/api/oicp"


def docs_example() -> str:
    """The code block after the ``<!-- example: push`` marker in docs/oicp.md."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"<!-- example: push.*?-->\n```python\n(.*?)```", text, re.DOTALL)
    assert found is not None, "docs/oicp.md lost its example"
    return found.group(1)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the files it is made of (no build artefacts in the work tree)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(ROOT / "oicp", src / "oicp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "packaging", src / "packaging", symlinks=True)
    shutil.copy(ROOT / "LICENSE", src / "LICENSE")
    (src / "docs").mkdir()
    shutil.copy(DOCS, src / "docs" / "oicp.md")
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out)]
    subprocess.run([*command, str(src / "packaging" / "oicp")], check=True, timeout=300)
    (built,) = out.glob("oicp-*.whl")
    return built


def test_the_wheel_holds_the_library_alone(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"oicp-{oicp.__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert all(name.startswith(("oicp/", f"{info}/")) for name in names)
    for shipped in ("oicp/py.typed", "oicp/wsdl/EvseStatus_V2.1.wsdl", "oicp/openapi/LICENSE-OICP.md"):
        assert shipped in names
    assert f"{info}/licenses/LICENSE" in names
    headers = [line for line in metadata.splitlines() if ": " in line and not line.startswith(" ")]
    assert "Name: oicp" in headers
    assert f"Version: {oicp.__version__}" in headers
    assert "License-Expression: Apache-2.0" in headers
    requires = sorted(
        line.removeprefix("Requires-Dist: ") for line in headers if line.startswith("Requires-Dist")
    )
    plain = [r for r in requires if "extra ==" not in r]
    assert [re.split(r"[<>=;]", r)[0] for r in plain] == ["aiohttp", "pydantic", "tenacity"]
    assert any(r.startswith("zeep") and 'extra == "soap"' in r for r in requires)
    assert any(r.startswith("jsonschema") and 'extra == "simulator"' in r for r in requires)
    for service in ("prometheus", "structlog", "pydantic-settings", "pydantic_settings"):
        assert not any(r.startswith(service) for r in requires)
    assert "hubject-sim = oicp.simulator.command:main" in entry_points


@contextmanager
def hubject_sim(command: list[str], env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``hubject-sim --listen 127.0.0.1:0``; yield the URL it prints; stop it with SIGTERM."""
    with subprocess.Popen(
        [*command, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 30.0)
            assert ready, "hubject-sim printed nothing within 30 s"
            found = re.search(r'url = "([^"]+)"', process.stdout.readline())
            assert found is not None
            yield found.group(1)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert process.returncode == 0


def run_example(python: str, url: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [python, "-c", docs_example().replace(EXAMPLE_URL, url)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def held_by(url: str) -> dict[str, str]:
    base = url.removesuffix("/api/oicp")
    with urllib.request.urlopen(f"{base}/_simulator/state", timeout=10) as answer:
        state = json.load(answer)
    return {
        record["EvseID"]: record["EvseStatus"]
        for block in state["EvseStatuses"]["OperatorEvseStatus"]
        for record in block["EvseStatusRecord"]
    }


def test_the_docs_example_pushes_to_hubject_sim() -> None:
    assert EXAMPLE_URL in docs_example()
    assert len([line for line in docs_example().splitlines() if line.strip()]) <= 10  # "a ten-line example"
    with hubject_sim([sys.executable, "-m", "oicp.simulator"]) as url:
        code, process_id, attempts = run_example(sys.executable, url).split()
        assert (code, attempts) == ("000", "1")
        assert len(process_id) == 36
        assert held_by(url) == {"DE*ABC*E123456": "Occupied"}


NOTHING_OF_THE_BRIDGE = """
import asyncio, importlib.util, sys
import oicp
from oicp import ClientSettings, ConfigurationError, RestClient, SoapClient
assert oicp.__file__.startswith(sys.prefix), oicp.__file__  # the installed wheel, not the work tree
print(sorted(m for m in ("bridge", "prometheus_client", "structlog", "pydantic_settings", "zeep")
             if importlib.util.find_spec(m)))
async def soap() -> None:
    try:
        async with SoapClient(ClientSettings()):
            pass
    except ConfigurationError as error:
        print(error)
asyncio.run(soap())
"""


def test_the_wheel_alone_in_a_clean_venv_pushes_to_hubject_sim(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, sim = str(venv / "bin" / "python"), str(venv / "bin" / "hubject-sim")
    install = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[simulator]"]
    # Run from tmp_path, without a PYTHONPATH the test run may have (one naming a work tree): the work tree
    # (with bridge/ and oicp/) must not be on sys.path.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    subprocess.run(install, check=True, timeout=300, capture_output=True, env=env)
    checked = subprocess.run(
        [python, "-c", NOTHING_OF_THE_BRIDGE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert checked.returncode == 0, checked.stderr
    found, soap_error = checked.stdout.splitlines()
    assert found == "[]"
    assert "oicp[soap]" in soap_error
    with hubject_sim([sim], env) as url:
        assert run_example(python, url, cwd=tmp_path, env=env).startswith("000 ")
        assert held_by(url) == {"DE*ABC*E123456": "Occupied"}
