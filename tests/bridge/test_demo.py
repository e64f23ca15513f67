"""``oicp-bridge demo`` as the README runs it: everything embedded (EVSE data push on, a simulator that
requires EVSE data), ends saying Hubject's status and data converged."""

from __future__ import annotations

import asyncio
import sys


async def test_demo_runs_end_to_end_and_reports_equal_state() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "demo",
        "--locations",
        "6",
        "--rounds",
        "4",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    output = stdout.decode()
    assert process.returncode == 0, output + stderr.decode()
    assert "Hubject's state EQUALS the mapped OCPI state" in output
    assert "Hubject's EVSE data EQUALS the mapped OCPI data" in output
    assert "(0 answered 603)" in output  # data push on, the simulator requires EVSE data
    assert "simulated outage" in output
    assert "24 EVSEs" in output
