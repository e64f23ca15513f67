"""``oicp-bridge resync --data`` and ``oicp-bridge status`` against a running daemon with EVSE data push on:
the resync prints the data fullLoad's outcome and then the status fullLoad's; status shows the EVSE data
lines per operator."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

from oicp.simulator import HubjectSimulator, serve_simulator
from tests.reliability.daemon import CPO_TOKEN, Daemon
from tests.reliability.test_evse_data_crash import DataDaemonConfig
from tests.test_evse_data_end_to_end import OPERATOR, Cpo


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
    return process.returncode or 0, out.decode(), err.decode()


async def test_resync_data_and_status_through_the_command_line(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with serve_simulator(simulator) as hubject, aiohttp.ClientSession() as session:
        config = DataDaemonConfig(tmp_path, hubject.url)
        daemon = Daemon(config)
        await daemon.start()
        try:
            cpo = Cpo(session, config.receiver_url, CPO_TOKEN)
            evses = [cpo.evse("e1", "DE*OBD*E1"), cpo.evse("e2", "DE*OBD*E2", standard="GBT_DC")]
            await cpo.call("PUT", "/L1", cpo.location("L1", evses))
            async with asyncio.timeout(20):
                while len(simulator.statuses(OPERATOR)) < 1:  # noqa: ASYNC110 - polls a real system
                    await asyncio.sleep(0.05)
            code, out, err = await cli("resync", "--data", "--config", str(config.path))
            assert code == 0, out + err
            assert "DE*OBD: EVSE data done (1 records)" in out
            assert "DE*OBD: done (1 records)" in out  # the status fullLoad that followed
            code, out, err = await cli("status", "--config", str(config.path))
            assert "DE*OBD EVSE data: 0 pending, 1 statuses held for data" in out, out + err
            assert "1 EVSE: no OICP plug for GBT_DC" in out
        finally:
            await daemon.stop()
    fullloads = [(e.operation, e.action_type) for e in simulator.request_log if e.action_type == "fullLoad"]
    assert fullloads == [("data-push", "fullLoad"), ("push", "fullLoad")]
