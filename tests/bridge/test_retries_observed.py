"""Every attempt the client retries is seen where it happens (review C7): a `hubject_retry` log event and a
count in `oicp_bridge_hubject_requests_total` by Hubject's answer, besides the final answer."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from bridge.ocpi.cpo_sim.model import CpoFleet
from bridge.ocpi.cpo_sim.pusher import CpoPusher
from bridge.ocpi.versions import OcpiVersion
from oicp.simulator import FaultKind, HubjectSimulator, serve_simulator
from tests.bridge.conftest import wait_for
from tests.test_end_to_end import TOKEN, bridge_config, converge, running_bridge


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{{{wanted}}}")


async def test_a_retried_503_is_logged_and_counted_and_the_push_still_lands(tmp_path: Path) -> None:
    async with serve_simulator(HubjectSimulator()) as hubject:
        hubject.simulator.faults.error_5xx_status = 503
        hubject.simulator.faults.retry_after = 0.01
        hubject.simulator.faults.queue.extend([FaultKind.SERVER_ERROR] * 2)  # the first two attempts
        fleet = CpoFleet(seed=3, locations=1, evses_per_location=2, country_code="DE", party_id="OBD")
        with capture_logs() as logs:
            async with (
                running_bridge(bridge_config(tmp_path, hubject, "rest")) as bridge,
                aiohttp.ClientSession() as session,
            ):
                pusher = CpoPusher(fleet, OcpiVersion.V2_2_1, session)
                await pusher.discover(f"{bridge.receiver_url}/ocpi/versions", TOKEN)
                await pusher.push_all()

                async def pushed_three_times() -> bool:  # two refused attempts, then the one that lands
                    return sum(e.operation == "push" for e in hubject.simulator.request_log) >= 3

                await wait_for(pushed_three_times)
                await converge(hubject, fleet)
                async with session.get(f"{bridge.admin_url}/metrics") as answer:
                    metrics = await answer.text()
    retries = [entry for entry in logs if entry["event"] == "hubject_retry"]
    assert len(retries) == 2
    assert all("503" in entry["error"] for entry in retries)
    assert sample(metrics, "oicp_bridge_hubject_requests_total", http_status="503", oicp_code="none") == 2
    assert sample(metrics, "oicp_bridge_hubject_requests_total", http_status="200", oicp_code="000") >= 1
