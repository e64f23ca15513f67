"""Crash safety of the EVSE data lane: ``oicp-bridge run`` (a real subprocess, ``push_evse_data = true``)
is killed with SIGKILL at the moment the Hubject simulator (``--require-evse-data``) receives

- the first status push after the data was acknowledged (the data acknowledgement is committed, the held
  status is in flight and never answered), or
- the data fullLoad asked for with ``POST /resync?data=1``,

and then started again. Afterwards Hubject's data and status converge to the mapped OCPI state, every change
the CPO had been answered 1000 for included, and the simulator never answered 603."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.evse_data import EvseDataSettings, RecordSettings, map_evse
from bridge.ocpi.v221 import models as v221
from oicp.evse_data import EvseDataRecord
from oicp.ids import OperatorID
from oicp.models import ActionType, EvseStatus, PushEvseStatusRequest
from oicp.simulator import HubjectSimulator, PushOutcome, serve_simulator
from oicp.simulator.evse_data_state import EvseDataState, Record, missing_data
from tests.reliability.daemon import ADMIN_TOKEN, CPO_TOKEN, Daemon, DaemonConfig
from tests.test_evse_data_end_to_end import Cpo

OPERATOR = "DE*OBD"
HOTLINE = "+49301234567"


class DataDaemonConfig(DaemonConfig):
    """The reliability daemon's config with EVSE data push on for DE*OBD."""

    def write(self) -> Path:
        path = super().write()
        text = path.read_text(encoding="utf-8").replace(
            'operator_id = "DE*OBD"\n',
            f'operator_id = "DE*OBD"\noperator_name = "OBD Charging"\npush_evse_data = true\n'
            f'hotline_phone_number = "{HOTLINE}"\n',
        )
        text = text.replace("[resync]\ninterval = 0\n", "[resync]\ninterval = 0\ndata_interval = 0\n")
        path.write_text(text, encoding="utf-8")
        return path


class KillOnce:
    """Kills the daemon (SIGKILL) the first time ``when`` matches a push the simulator receives."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.armed = False
        self.fired = asyncio.Event()

    def fire(self) -> None:
        if self.armed and self.pid is not None:
            self.armed = False
            os.kill(self.pid, signal.SIGKILL)
            self.fired.set()


def use_data_state(simulator: HubjectSimulator, state: EvseDataState) -> None:
    """Replace the simulator's EVSE data (the status side's 603 check reads the same object)."""
    simulator.evse_data = state
    simulator.state.status_precheck = functools.partial(missing_data, state)


class KillingData(EvseDataState):
    def __init__(self, kill: KillOnce, action: ActionType) -> None:
        super().__init__()
        self.kill, self.action = kill, action

    def apply_push(
        self, operator_id: OperatorID, operator_name: str, action: ActionType, records: Sequence[Record]
    ) -> PushOutcome:
        outcome = super().apply_push(operator_id, operator_name, action, records)
        if action is self.action:
            self.kill.fire()  # Hubject applied it; the bridge never hears the answer
        return outcome


class KillingStatus(HubjectSimulator):
    def __init__(self, kill: KillOnce | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kill = kill

    def handle_push(self, path_operator_id: str, request: PushEvseStatusRequest) -> Any:
        if self.kill is not None:
            self.kill.fire()  # the held status is in flight: killed before Hubject answers
        return super().handle_push(path_operator_id, request)


def expected(documents: list[Any]) -> tuple[dict[str, Any], dict[str, EvseStatus]]:
    settings = RecordSettings.of(HOTLINE, EvseDataSettings())
    data: dict[str, Any] = {}
    statuses: dict[str, EvseStatus] = {}
    for document in documents:
        location = v221.Location.model_validate(document)
        for evse in location.evses or ():
            mapped = map_evse(location, evse, settings, at=datetime.now(UTC))
            if isinstance(mapped, EvseDataRecord):
                data[str(mapped.evse_id)] = json.loads(mapped.canonical_json())
                statuses[str(mapped.evse_id)] = (
                    EvseStatus.OCCUPIED if evse.status == "CHARGING" else EvseStatus.AVAILABLE
                )
    return data, statuses


async def converged(simulator: HubjectSimulator, documents: list[Any], within: float = 30.0) -> None:
    data, statuses = expected(documents)

    def now() -> tuple[dict[str, Any], dict[str, EvseStatus]]:
        held = {str(k): v for k, v in simulator.evse_data.records(OPERATOR).items()}
        return held, {str(k): v for k, v in simulator.statuses(OPERATOR).items()}

    try:
        async with asyncio.timeout(within):
            while now() != (data, statuses):  # noqa: ASYNC110 - polls a real system's observable state
                await asyncio.sleep(0.05)
    except TimeoutError:
        held, status = now()
        pytest.fail(f"never converged: data {sorted(held)} vs {sorted(data)}; status {status} vs {statuses}")


async def cpo_changes(cpo: Cpo) -> list[Any]:
    """Two Locations, then structural and status changes; the final documents (as the CPO holds them)."""
    l1 = cpo.location("L1", [cpo.evse("e1", "DE*OBD*E1"), cpo.evse("e2", "DE*OBD*E2")])
    l2 = cpo.location("L2", [cpo.evse("e3", "DE*OBD*E3")])
    await cpo.call("PUT", "/L1", l1)
    await cpo.call("PUT", "/L2", l2)
    return [l1, l2]


@pytest.mark.parametrize("moment", ["held status in flight", "data insert applied, unanswered"])
async def test_a_kill_between_data_and_status_converges_after_restart(tmp_path: Path, moment: str) -> None:
    kill = KillOnce()
    simulator = KillingStatus(kill if moment == "held status in flight" else None, require_evse_data=True)
    if moment != "held status in flight":
        use_data_state(simulator, KillingData(kill, ActionType.INSERT))
    async with serve_simulator(simulator) as hubject, aiohttp.ClientSession() as session:
        config = DataDaemonConfig(tmp_path, hubject.url)
        daemon = Daemon(config)
        await daemon.start()
        assert daemon.process is not None
        kill.pid, kill.armed = daemon.process.pid, True
        cpo = Cpo(session, config.receiver_url, CPO_TOKEN)
        documents = await cpo_changes(cpo)  # acknowledged (1000) before the kill
        async with asyncio.timeout(20):
            await kill.fired.wait()
        await daemon.kill9()
        await daemon.start()
        # a change after the restart too
        documents[0]["evses"][0]["status"] = "CHARGING"
        await cpo.call("PATCH", "/L1/e1", {"status": "CHARGING", "last_updated": cpo.stamp()})
        await converged(simulator, documents)
        await daemon.stop()
    assert [e for e in simulator.request_log if e.result_code == "603"] == []


async def test_a_kill_during_a_data_full_load_converges_after_restart(tmp_path: Path) -> None:
    kill = KillOnce()
    simulator = HubjectSimulator(require_evse_data=True)
    use_data_state(simulator, KillingData(kill, ActionType.FULL_LOAD))
    async with serve_simulator(simulator) as hubject, aiohttp.ClientSession() as session:
        config = DataDaemonConfig(tmp_path, hubject.url)
        daemon = Daemon(config)
        await daemon.start()
        assert daemon.process is not None
        cpo = Cpo(session, config.receiver_url, CPO_TOKEN)
        documents = await cpo_changes(cpo)
        await converged(simulator, documents)
        # a structural change acknowledged to the CPO, then the data fullLoad, killed when it lands
        documents[1]["name"] = "Renamed station"
        documents[1]["last_updated"] = cpo.stamp()
        await cpo.call("PUT", "/L2", documents[1])
        kill.pid, kill.armed = daemon.process.pid, True
        resync = asyncio.ensure_future(
            session.post(
                f"{config.admin_url}/resync",
                params={"data": "1"},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
        )
        async with asyncio.timeout(20):
            await kill.fired.wait()
        await daemon.kill9()
        await asyncio.gather(resync, return_exceptions=True)  # the daemon died: no answer
        await daemon.start()
        await converged(simulator, documents)

        def full_loads() -> int:
            pushes = [e for e in simulator.request_log if e.operation == "data-push"]
            return len([e for e in pushes if e.action_type == "fullLoad" and e.result_code == "000"])

        # the interrupted fullLoad (its outcome unknown to the bridge) is sent again after the quiet period
        async with asyncio.timeout(20):
            while full_loads() < 2:  # noqa: ASYNC110 - polls a real system's observable state
                await asyncio.sleep(0.1)
        await converged(simulator, documents)
        await daemon.stop()
    assert [e for e in simulator.request_log if e.result_code == "603"] == []
