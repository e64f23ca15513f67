"""``oicp-bridge demo`` as the README runs it."""

from __future__ import annotations

import asyncio
import sys


async def test_demo_runs_end_to_end_and_reports_equal_state() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "demo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    output = stdout.decode()
    assert process.returncode == 0, stderr.decode()
    assert "EQUALS" in output
    assert "after 2 attempts" in output  # the injected outage was retried
