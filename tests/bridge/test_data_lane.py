"""The EVSE data lane against the Hubject simulator over loopback (``--require-evse-data``): the first start
sends a data fullLoad then a status fullLoad, ``POST /resync?data=1`` does the same on request, the data
fullLoad is guarded like the status one, a 009 re-classifies insert/update once, a record local validation
refuses is dead with its code and the rest goes, a 603 (data lost at Hubject) pushes the data again, and
with ``push_evse_data = false`` a 603 stays parked as before."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bridge.app import Bridge
from bridge.commands.status import render
from bridge.evse_data.decide import DataDesired
from bridge.mapping import Action
from bridge.outbox import RecordState
from bridge.store.port import Tx
from oicp import ActionType, ClientSettings, RestClient
from oicp.evse_data import EvseDataRecord
from oicp.ids import EvseID, OperatorID
from oicp.models import EvseStatus
from oicp.simulator import HubjectSimulator, serve_simulator
from oicp.simulator.faults import FaultKind
from tests.bridge.conftest import wait_for
from tests.oicp.test_simulator_evse_data import record
from tests.test_evse_data_end_to_end import OPERATOR, Cpo, data_config

ADMIN = {"Authorization": "Bearer admin"}


@asynccontextmanager
async def bridge_with(
    tmp_path: Path, simulator: HubjectSimulator, *, initial_resync: bool = False, **config: Any
) -> AsyncIterator[tuple[Bridge, Cpo, aiohttp.ClientSession]]:
    async with serve_simulator(simulator) as hubject:
        bridge = Bridge.build(data_config(tmp_path, hubject, **config), initial_resync=initial_resync)
        async with bridge.running(), aiohttp.ClientSession() as session:
            assert bridge.receiver_url is not None
            yield bridge, Cpo(session, bridge.receiver_url), session


def log(simulator: HubjectSimulator) -> list[tuple[str, str | None]]:
    return [
        (e.operation, e.action_type) for e in simulator.request_log if e.operation in ("push", "data-push")
    ]


async def put_two(cpo: Cpo, location: str = "L1", first: int = 1) -> None:
    evses = [cpo.evse(f"e{n}", f"DE*OBD*E{n}") for n in (first, first + 1)]
    await cpo.call("PUT", f"/{location}", cpo.location(location, evses))


async def test_the_first_start_sends_a_data_full_load_then_a_status_full_load(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    resync = {"interval": 86400, "data_interval": 86400, "first_fullload_quiet": 0.2}
    # a long flush interval: the first fullLoad (after the quiet period) comes before any flush would
    push = {"flush_interval": 30, "max_retry_interval": 0.5}
    async with bridge_with(tmp_path, simulator, initial_resync=True, resync=resync, push=push) as (
        _,
        cpo,
        _s,
    ):
        await put_two(cpo)
        await until(lambda: ("push", "fullLoad") in log(simulator))
    assert log(simulator)[:2] == [("data-push", "fullLoad"), ("push", "fullLoad")]
    assert set(simulator.statuses(OPERATOR)) == {"DE*OBD*E1", "DE*OBD*E2"}
    assert [e for e in simulator.request_log if e.result_code == "603"] == []


async def test_resync_data_sends_data_then_status_and_is_guarded(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with bridge_with(tmp_path, simulator) as (bridge, cpo, session):
        await put_two(cpo)
        await put_two(cpo, "L2", 3)
        await until(lambda: len(simulator.statuses(OPERATOR)) == 4)
        url = f"{bridge.admin_url}/resync"
        async with session.post(url, params={"data": "1"}, headers=ADMIN) as answer:
            body = await answer.json()
        assert answer.status == 200, body
        assert body["data_outcomes"][0]["result"] == "done"
        assert body["data_outcomes"][0]["records"] == 4
        assert body["outcomes"][0]["result"] == "done"
        assert log(simulator)[-2:] == [("data-push", "fullLoad"), ("push", "fullLoad")]
        # three of four EVSEs withdrawn: the data set shrank by 75 % > max_shrink (20 %) → refused
        for uid, location in (("e1", "L1"), ("e2", "L1"), ("e3", "L2")):
            await cpo.call("PATCH", f"/{location}/{uid}", {"status": "REMOVED", "last_updated": cpo.stamp()})
        await until(lambda: len(simulator.evse_data.records(OPERATOR)) == 1)
        async with session.post(url, params={"data": "1"}, headers=ADMIN) as answer:
            refused = await answer.json()
        assert answer.status == 409
        assert refused["data_outcomes"][0]["result"] == "refused"
        assert "shrank" in refused["data_outcomes"][0]["message"]
        async with session.post(url, params={"data": "1", "force": "1"}, headers=ADMIN) as answer:
            forced = await answer.json()
        assert answer.status == 200, forced
        assert forced["data_outcomes"][0]["records"] == 1


async def test_resync_data_for_an_operator_without_data_push_is_a_clear_400(tmp_path: Path) -> None:
    simulator = HubjectSimulator()
    operators = [{"operator_id": OPERATOR, "operator_name": "OBD Charging"}]
    async with bridge_with(tmp_path, simulator, operators=operators) as (bridge, _cpo, session):
        url = f"{bridge.admin_url}/resync"
        async with session.post(url, params={"data": "1"}, headers=ADMIN) as answer:
            body = await answer.json()
    assert answer.status == 400
    assert "push_evse_data = false" in body["error"]


async def test_an_insert_of_data_hubject_already_holds_is_reclassified_as_an_update(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with bridge_with(tmp_path, simulator) as (bridge, cpo, _s):
        # another uploader (or a lost acknowledgement) left E1's data at Hubject: the bridge's insert → 009
        other = EvseDataRecord.model_validate(record("DE*OBD*E1"))
        async with RestClient(ClientSettings(url=bridge.config.hubject.url)) as client:
            await client.push_evse_data(OperatorID(OPERATOR), ActionType.INSERT, [other], operator_name="X")
        await put_two(cpo)
        await until(lambda: len(simulator.statuses(OPERATOR)) == 2)
    actions = [(e.action_type, e.result_code) for e in simulator.request_log if e.operation == "data-push"]
    assert ("insert", "009") in actions  # refused as a whole, E1 named
    assert actions[-1] == ("update", "000") or ("update", "000") in actions
    held = simulator.evse_data.records(OPERATOR)
    assert (
        held[EvseID("DE*OBD*E1")]["HotlinePhoneNumber"] == "+49301234567"
    )  # the bridge's record replaced it


async def test_a_603_when_hubject_lost_the_data_pushes_the_data_again(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with bridge_with(tmp_path, simulator) as (bridge, cpo, _s):
        await put_two(cpo)
        await until(lambda: len(simulator.statuses(OPERATOR)) == 2)
        simulator.evse_data.reset()  # Hubject lost the data (or someone deleted it)
        await cpo.call("PATCH", "/L1/e1", {"status": "CHARGING", "last_updated": cpo.stamp()})
        await until(lambda: simulator.evse_data.count() >= 1 and _charging(simulator))
        data = bridge.dispatcher.data
        assert data is not None
        assert data.lanes[OperatorID(OPERATOR).canonical_key].last_error is None
    codes = [(e.operation, e.action_type, e.result_code) for e in simulator.request_log]
    assert ("push", "update", "603") in codes
    after = codes[codes.index(("push", "update", "603")) :]
    assert ("data-push", "insert", "000") in after  # the data again, as an insert, then the status


async def test_without_data_push_a_603_stays_parked(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    operators = [{"operator_id": OPERATOR, "operator_name": "OBD Charging"}]
    async with bridge_with(tmp_path, simulator, operators=operators) as (bridge, cpo, _s):
        await put_two(cpo)

        async def parked() -> bool:
            counts = await bridge.outbox.counts_by_state()
            return counts.get(OPERATOR, {}).get(RecordState.PARKED.value, 0) == 2

        await wait_for(parked)
    assert not any(e.operation == "data-push" for e in simulator.request_log)


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    async def condition() -> bool:
        await asyncio.sleep(0)
        return check()

    await wait_for(condition, within)


def _charging(simulator: HubjectSimulator) -> bool:
    return simulator.statuses(OPERATOR).get(EvseID("DE*OBD*E1")) is EvseStatus.OCCUPIED


async def test_operators_see_pending_data_held_statuses_and_evses_without_data(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with bridge_with(tmp_path, simulator) as (bridge, cpo, session):
        evses = [cpo.evse("e1", "DE*OBD*E1"), cpo.evse("e2", "DE*OBD*E2", standard="GBT_DC")]
        await cpo.call("PUT", "/L1", cpo.location("L1", evses))
        await until(lambda: len(simulator.statuses(OPERATOR)) == 1)
        async with session.get(f"{bridge.admin_url}/status.json") as answer:
            body = await answer.json()
        data = body["operators"][OPERATOR]["evse_data"]
        assert data["not_pushable"] == ["1 EVSE: no OICP plug for GBT_DC"]
        assert data["held_statuses"] == 1  # E2's status waits for data that cannot be made
        assert data["delivered"] == 1
        async with session.get(f"{bridge.admin_url}/status") as answer:
            page = await answer.text()
        assert "Statuses held for data" in page
        assert "1 EVSE: no OICP plug for GBT_DC" in page
        async with session.get(f"{bridge.admin_url}/metrics") as answer:
            metrics = await answer.text()
        assert 'oicp_bridge_evse_data_held_statuses{operator_id="DE*OBD"} 1.0' in metrics
        assert 'oicp_bridge_evse_data_not_pushable{operator_id="DE*OBD",reason="no OICP plug"} 1.0' in metrics
        assert "EVSE data: 0 pending, 1 statuses held for data" in render(body)


def data_versions(bridge: Bridge) -> Callable[[], Awaitable[int]]:
    async def read() -> int:
        def run(tx: Tx) -> int:
            found = tx.execute("SELECT COUNT(*), COALESCE(MAX(version), 0) FROM evse_data_outbox").fetchone()
            return int(found[0]) * 1_000_000 + int(found[1])

        return await bridge.db.read(run)

    return read


async def test_withdrawals_delete_the_status_first_then_the_data(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with bridge_with(tmp_path, simulator) as (_bridge, cpo, _s):
        evses = [cpo.evse("e1", "DE*OBD*E1"), cpo.evse("e2", "DE*OBD*E2"), cpo.evse("e3", "DE*OBD*E3")]
        await cpo.call("PUT", "/L1", cpo.location("L1", evses))
        await until(lambda: len(simulator.statuses(OPERATOR)) == 3)
        # e2 vanishes from a re-PUT Location (treated as REMOVED), e3 is renamed
        evses = [cpo.evse("e1", "DE*OBD*E1"), cpo.evse("e3", "DE*OBD*E3B")]
        await cpo.call("PUT", "/L1", cpo.location("L1", evses))
        await until(
            lambda: (
                set(simulator.evse_data.records(OPERATOR)) == {"DE*OBD*E1", "DE*OBD*E3B"}
                and set(simulator.statuses(OPERATOR)) == {"DE*OBD*E1", "DE*OBD*E3B"}
            )
        )
    for withdrawn in ("DE*OBD*E2", "DE*OBD*E3"):
        status_delete = _index(simulator, "push", "delete", withdrawn)
        data_delete = _index(simulator, "data-push", "delete", withdrawn)
        assert status_delete < data_delete, f"{withdrawn}: the data went before the status"
    assert [e for e in simulator.request_log if e.result_code == "603"] == []


def _index(simulator: HubjectSimulator, operation: str, action: str, evse_id: str) -> int:
    for index, entry in enumerate(simulator.request_log):
        if entry.operation == operation and entry.action_type == action and evse_id in json.dumps(entry.body):
            return index
    raise AssertionError(f"no {operation} {action} of {evse_id}")


async def test_a_status_patch_and_a_change_that_does_not_reach_the_record_push_no_data(
    tmp_path: Path,
) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with bridge_with(tmp_path, simulator) as (bridge, cpo, _s):
        await put_two(cpo)
        await until(lambda: len(simulator.statuses(OPERATOR)) == 2)
        versions = data_versions(bridge)
        before, data_before = await versions(), _data_pushes(simulator)
        # a status PATCH: the data outbox is not touched (not even read into a new version)
        await cpo.call("PATCH", "/L1/e1", {"status": "CHARGING", "last_updated": cpo.stamp()})
        # a structural PATCH whose fields do not reach the EvseDataRecord: the hash is unchanged
        await cpo.call("PATCH", "/L1", {"tariff_ids": ["T1"], "last_updated": cpo.stamp()})
        await until(lambda: simulator.statuses(OPERATOR).get(EvseID("DE*OBD*E1")) is EvseStatus.OCCUPIED)
        assert await versions() == before
        assert _data_pushes(simulator) == data_before
        # a change that does reach it: one update
        await cpo.call("PATCH", "/L1", {"name": "New name", "last_updated": cpo.stamp()})
        await until(lambda: _data_pushes(simulator) == data_before + 1)
    assert simulator.request_log[-1].action_type == "update"


def _data_pushes(simulator: HubjectSimulator) -> int:
    return sum(1 for e in simulator.request_log if e.operation == "data-push")


async def test_a_status_full_load_carries_only_evses_whose_data_hubject_holds(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with bridge_with(tmp_path, simulator) as (bridge, cpo, session):
        evses = [cpo.evse("e1", "DE*OBD*E1"), cpo.evse("e2", "DE*OBD*E2", standard="GBT_DC")]
        await cpo.call("PUT", "/L1", cpo.location("L1", evses))
        await until(lambda: len(simulator.statuses(OPERATOR)) == 1)
        async with session.post(f"{bridge.admin_url}/resync", headers=ADMIN) as answer:
            body = await answer.json()
        assert answer.status == 200, body
        assert body["outcomes"][0]["records"] == 1  # E2 has no data at Hubject: not in the set
        counts = await bridge.outbox.counts_by_state()
        assert counts[OPERATOR]["pending"] == 1  # and still held, not marked delivered
    assert [e for e in simulator.request_log if e.result_code == "603"] == []


async def test_switching_data_push_on_maps_the_evses_already_stored(tmp_path: Path) -> None:
    simulator = HubjectSimulator()  # data uploaded by other means until now: status only
    operators = [{"operator_id": OPERATOR, "operator_name": "OBD Charging"}]
    async with bridge_with(tmp_path, simulator, operators=operators) as (_bridge, cpo, _s):
        await put_two(cpo)
        await until(lambda: len(simulator.statuses(OPERATOR)) == 2)
    assert simulator.evse_data.count() == 0
    async with bridge_with(tmp_path, simulator) as (_bridge, _cpo, _s):  # push_evse_data = true now
        await until(lambda: len(simulator.evse_data.records(OPERATOR)) == 2)


async def test_a_failing_data_push_backs_off_and_its_records_arrive_later(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    simulator.faults.error_5xx_status, simulator.faults.retry_after = 503, 0.2
    simulator.faults.error_5xx_rate = 1.0  # an outage: every request answered 503 with Retry-After
    push = {"flush_interval": 0.05, "max_retry_interval": 0.5, "retry_budget": 0.3}
    async with bridge_with(tmp_path, simulator, push=push) as (bridge, cpo, _s):
        await put_two(cpo)
        data = bridge.dispatcher.data
        assert data is not None
        lane = data.lane(OPERATOR)
        await until(lambda: lane.failures >= 1)
        assert lane.last_error is not None
        assert "503" in lane.last_error
        assert lane.request_floor > 0  # backing off, never before Hubject's Retry-After
        # while it keeps failing, the lane's requests are counted over a window: a backoff, not a hot loop
        before = _data_pushes(simulator)
        await asyncio.sleep(2.0)
        assert _data_pushes(simulator) - before <= 20
        simulator.faults.error_5xx_rate = 0.0
        await until(lambda: len(simulator.statuses(OPERATOR)) == 2)
        assert lane.failures == 0
    assert len(simulator.evse_data.records(OPERATOR)) == 2


async def test_a_change_during_a_data_full_load_is_neither_lost_nor_overtaken(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with bridge_with(tmp_path, simulator) as (bridge, cpo, session):
        await put_two(cpo)
        await until(lambda: len(simulator.statuses(OPERATOR)) == 2)
        simulator.faults.latency = 0.5  # the fullLoad takes a while at Hubject
        resync = asyncio.ensure_future(
            session.post(f"{bridge.admin_url}/resync", params={"data": "1"}, headers=ADMIN)
        )
        await until(lambda: any(e.action_type == "fullLoad" for e in simulator.request_log))
        await cpo.call("PATCH", "/L1", {"name": "Renamed meanwhile", "last_updated": cpo.stamp()})
        answer = await resync
        assert answer.status == 200
        answer.release()
        simulator.faults.latency = 0.0

        def renamed() -> bool:
            held = simulator.evse_data.records(OPERATOR).values()
            return len(held) == 2 and all(
                r["ChargingStationNames"][0]["value"] == "Renamed meanwhile" for r in held
            )

        await until(renamed)
    kinds = [e.action_type for e in simulator.request_log if e.operation == "data-push"]
    assert kinds.index("fullLoad") < len(kinds) - 1  # the change followed the fullLoad as an update
    assert kinds[-1] == "update"


async def test_the_data_full_load_is_scheduled_every_data_interval(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    resync = {"interval": 0, "data_interval": 1, "first_fullload_quiet": 0.1}
    async with bridge_with(tmp_path, simulator, initial_resync=True, resync=resync) as (_b, cpo, _s):
        await put_two(cpo)

        def full_loads() -> int:
            return sum(
                1 for e in simulator.request_log if e.operation == "data-push" and e.action_type == "fullLoad"
            )

        await until(lambda: full_loads() >= 2)
    pushes = [(e.operation, e.action_type) for e in simulator.request_log if e.action_type == "fullLoad"]
    assert pushes[:2] == [("data-push", "fullLoad"), ("push", "fullLoad")]  # each followed by a status one


async def test_records_are_mapped_again_before_a_data_full_load(tmp_path: Path) -> None:
    """Europe/Berlin is UTC+01:00 in winter and UTC+02:00 in summer: the fullLoad carries today's offset."""
    simulator = HubjectSimulator(require_evse_data=True)
    shift = [0.0]
    async with serve_simulator(simulator) as hubject:
        config = data_config(tmp_path, hubject)
        bridge = Bridge.build(config, initial_resync=False, wall_clock=lambda: time.time() + shift[0])
        async with bridge.running(), aiohttp.ClientSession() as session:
            assert bridge.receiver_url is not None
            cpo = Cpo(session, bridge.receiver_url)
            await put_two(cpo)
            await until(lambda: len(simulator.evse_data.records(OPERATOR)) == 2)
            offsets = {r["Address"].get("TimeZone") for r in simulator.evse_data.records(OPERATOR).values()}
            shift[0] = 182 * 86400.0  # half a year later: the other side of daylight saving time
            async with session.post(f"{bridge.admin_url}/resync", params={"data": "1"}, headers=ADMIN) as r:
                assert r.status == 200, await r.text()
            later = {r["Address"].get("TimeZone") for r in simulator.evse_data.records(OPERATOR).values()}
    assert offsets | later == {"UTC+01:00", "UTC+02:00"}
    assert len(offsets) == len(later) == 1


async def test_a_status_held_for_data_that_cannot_be_made_does_not_age_the_backlog(tmp_path: Path) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with bridge_with(tmp_path, simulator) as (bridge, cpo, session):
        evses = [cpo.evse("e1", "DE*OBD*E1"), cpo.evse("e2", "DE*OBD*E2", standard="GBT_DC")]
        await cpo.call("PUT", "/L1", cpo.location("L1", evses))
        body: dict[str, Any] = {}

        async def e1_acknowledged() -> bool:  # Hubject holds it, and the bridge recorded the answer
            nonlocal body
            async with session.get(f"{bridge.admin_url}/status.json") as answer:
                body = await answer.json()
            return bool(body["operators"][OPERATOR]["delivered"] == 1)

        await wait_for(e1_acknowledged)
    operator = body["operators"][OPERATOR]
    assert operator["pending"] == 1  # E2's status: held, shown under evse_data.held_statuses
    assert operator["oldest_unacknowledged_age_s"] is None  # but no backlog for Hubject to work off
    assert operator["evse_data"]["held_statuses"] == 1


async def test_a_record_local_validation_refuses_is_dead_and_the_rest_of_the_batch_goes(
    tmp_path: Path,
) -> None:
    simulator = HubjectSimulator(require_evse_data=True)
    async with bridge_with(tmp_path, simulator) as (bridge, cpo, _s):
        data = bridge.dispatcher.data
        assert data is not None
        # a stored record Hubject would refuse (a hotline number that is not one): never sent
        bad = json.loads(EvseDataRecord.model_validate(record("DE*OBD*E9")).canonical_json())
        bad["HotlinePhoneNumber"] = "call us"
        text = json.dumps(bad, sort_keys=True, separators=(",", ":"))
        desired = DataDesired(Action.UPDATE, text, "bad-hash", "DE/OBD/L9/e9")
        await bridge.db.write(lambda tx: data.store.observe(tx, OPERATOR, "DE*OBD*E9", desired, time.time()))
        await put_two(cpo)
        data.notify_data(OperatorID(OPERATOR), pending=1)
        await until(lambda: len(simulator.evse_data.records(OPERATOR)) == 2)
        status = await data.store.lane_status(OperatorID(OPERATOR))
        assert status.dead == {"local": 1}
    assert "DE*OBD*E9" not in json.dumps([e.body for e in simulator.request_log])


async def test_a_data_push_that_timed_out_and_landed_late_is_pushed_once_more_after_its_quiet_period(
    tmp_path: Path,
) -> None:
    """A data push times out at the client but Hubject applies it later, after a newer record of the same
    EVSE was acknowledged: Hubject holds the older data. The rows stay ``unsure`` (those acknowledgements
    came within the quiet period), and once it is over (2 × the client's timeouts, 1 s here) the lane
    pushes the records once more, without waiting for a change or the next data fullLoad."""
    simulator = HubjectSimulator(require_evse_data=True)
    push = {"flush_interval": 0.05, "max_retry_interval": 0.2}

    def names() -> set[str]:
        return {r["ChargingStationNames"][0]["value"] for r in simulator.evse_data.records(OPERATOR).values()}

    async with serve_simulator(simulator) as served:
        config = data_config(tmp_path, served, push=push)
        timeouts = {"timeout": 0.3, "connect_timeout": 0.2}  # quiet period 2 x (0.3 + 0.2) = 1 s
        config = config.model_copy(update={"hubject": config.hubject.model_copy(update=timeouts)})
        bridge = Bridge.build(config, initial_resync=False)
        async with bridge.running(), aiohttp.ClientSession() as session:
            assert bridge.receiver_url is not None
            cpo = Cpo(session, bridge.receiver_url)
            await put_two(cpo)
            await until(lambda: len(simulator.statuses(OPERATOR)) == 2)  # data first, then statuses
            simulator.faults.slow_latency = 0.8  # answered (and applied) 0.8 s later: the client gave up
            simulator.faults.queue.append(FaultKind.SLOW)
            await cpo.call("PATCH", "/L1", {"name": "First", "last_updated": cpo.stamp()})
            await until(lambda: names() == {"First"})  # the retried push, acknowledged
            await cpo.call("PATCH", "/L1", {"name": "Second", "last_updated": cpo.stamp()})
            await until(lambda: names() == {"Second"})
            await until(lambda: names() == {"First"})  # the timed-out push landed late: older data
            await until(lambda: names() == {"Second"})  # pushed once more after the quiet period
            lane = bridge.dispatcher.data.lane(OPERATOR) if bridge.dispatcher.data else None
            assert lane is not None
            await until(lambda: lane.settle_at is None)  # no doubt left to settle


async def test_an_evse_id_two_locations_hold_gets_its_data_from_the_evse_that_owns_its_status(
    tmp_path: Path,
) -> None:
    """An EVSE moved to another Location while the old one still lists it: both hold DE*OBD*E1. The status
    comes from the owner (``bridge.ownership.owner``: the newer one, in L2), and so must the EVSE data — a
    later change of L1 alone (its name) must not put L1's record on Hubject for an EVSE that L2 owns."""
    simulator = HubjectSimulator(require_evse_data=True)

    def name_of(evse_id: str) -> str | None:
        record = simulator.evse_data.records(OPERATOR).get(EvseID(evse_id))
        return None if record is None else str(record["ChargingStationNames"][0]["value"])

    async with bridge_with(tmp_path, simulator) as (_bridge, cpo, _s):
        old = [cpo.evse("e1", "DE*OBD*E1", status="AVAILABLE"), cpo.evse("e2", "DE*OBD*E2")]
        await cpo.call("PUT", "/L1", cpo.location("L1", old, name="Old site"))
        await until(lambda: name_of("DE*OBD*E2") == "Old site")
        moved = cpo.evse("e9", "DE*OBD*E1", status="CHARGING")  # newer: the owner
        await cpo.call("PUT", "/L2", cpo.location("L2", [moved], name="New site"))
        await until(lambda: name_of("DE*OBD*E1") == "New site")
        await until(lambda: simulator.statuses(OPERATOR).get(EvseID("DE*OBD*E1")) is EvseStatus.OCCUPIED)
        await cpo.call("PATCH", "/L1", {"name": "Old site, renamed", "last_updated": cpo.stamp()})
        await until(lambda: name_of("DE*OBD*E2") == "Old site, renamed")  # the change was pushed
        assert name_of("DE*OBD*E1") == "New site"  # E1's data still from its owner, as its status
        assert simulator.statuses(OPERATOR).get(EvseID("DE*OBD*E1")) is EvseStatus.OCCUPIED
