"""The suite-wide secret check (tests/secret_scan.py) finds a leaked test secret wherever the suite's
output goes (logging, captured stdout, a daemon's log file) and fails the run; a clean run passes."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from tests.secret_scan import PEM_MARKER, SecretRegistry, SecretScan

ROOT = Path(__file__).resolve().parents[2]
INNER = """
import logging
from pathlib import Path

def test_logs_a_registered_secret(secrets_registry):
    secrets_registry.add("inner-registered-secret-77")
    logging.getLogger("bridge.inner").info("calling with %s", "inner-registered-secret-77")

def test_prints_a_literal_test_token():
    print("Authorization: Token reliability-cpo-token-5b1e")

def test_a_daemon_log_holds_key_material(tmp_path: Path):
    (tmp_path / "daemon.log").write_text("-----BEGIN " + "PRIVATE KEY-----\\n")

def test_an_exception_repr_holds_a_header_with_a_stray_byte():
    # the shape of issue 12 item 4: a 2.2.1 header (base64 token) plus one byte 0xff, in a repr
    import base64
    header = "Token " + base64.b64encode(b"reliability-admin-token-9c3d\\xff").decode()
    logging.getLogger("aiohttp.server").error("Error handling request: %r", UnicodeEncodeError(
        "utf-8", header + "\\udcff", 0, 1, "surrogates not allowed"))
"""
CLEAN = """
import logging

def test_logs_nothing_secret():
    logging.getLogger("bridge.inner").info("pushed 3 records")
    print("all fine")
"""


async def run_inner(source: str) -> tuple[int, str]:
    # outside this session's temp folder: the planted leaks must not fail the outer run
    with tempfile.TemporaryDirectory() as name:
        return await _run_inner(Path(name), source)


async def _run_inner(folder: Path, source: str) -> tuple[int, str]:
    (folder / "test_inner.py").write_text(source)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-p", "tests.secret_scan", "-p", "no:cacheprovider", "-q",
        "--basetemp", str(folder / "basetemp"), "test_inner.py",
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return process.returncode, output.decode()


def test_findings_name_where_and_mask_the_secret() -> None:
    scan = SecretScan(SecretRegistry(["short", "a-long-test-token"]))
    scan.add("log record bridge", "sent a-long-test-token and short")
    scan.add("daemon.log", f"-----BEGIN {PEM_MARKER}-----")
    found = sorted(str(f) for f in scan.findings())
    assert found == ["PRIVATE KEY in daemon.log", "a-lo…(17 chars) in log record bridge"]  # "short" too short
    encoded = SecretScan(SecretRegistry(["a-long-test-token"]))
    encoded.add("header", "Token YS1sb25nLXRlc3QtdG9rZW7/")  # base64 of the token and a byte 0xff
    assert [str(f) for f in encoded.findings()] == ["base64 of a-lo…(17 chars) in header"]


async def test_a_leak_in_logs_stdout_or_a_daemon_log_fails_the_run() -> None:
    code, output = await run_inner(INNER)
    assert code == 1, output
    assert "4 passed" in output  # the tests pass; the scan fails the run
    assert "SECRET LEAK" in output
    assert "inne…(26 chars) in log record bridge.inner" in output
    assert "reli…(26 chars) in test_inner.py::test_prints_a_literal_test_token" in output
    assert "PRIVATE KEY in " in output
    assert "base64 of reli…(28 chars) in log record aiohttp.server" in output
    assert "daemon.log" in output
    assert "inner-registered-secret-77" not in output.split("SECRET LEAK")[1]  # the report masks it


async def test_a_run_without_secrets_passes() -> None:
    code, output = await run_inner(CLEAN)
    assert code == 0, output
    assert "SECRET LEAK" not in output
