"""Leadership per operator (bridge.leadership) with the real pieces: two replicas in one process, each its
own PostgreSQL engine, lease keeper, intake and dispatcher, on one database and one Hubject simulator.

Only the replica leading an operator pushes for it, whatever replica took the OCPI input; when the leader
stops renewing, the other takes over within the lease and pushes what the first had in flight; the old
leader's late "mark delivered" is refused in its transaction (fenced) and changes nothing. On SQLite the
dispatcher leads everything (``SoleLeader``) and nothing is fenced."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config import PushConfig, ResyncConfig
from bridge.dispatcher import Dispatcher, ResyncResult
from bridge.intake import Intake
from bridge.leadership import SOLE_TERM, SoleLeader, operator_lease, while_leading
from bridge.leases import LeaseLostError, LeasePolicy
from bridge.metrics import Metrics
from bridge.ocpi.locations import ObjectPath
from bridge.ocpi.versions import OcpiVersion
from bridge.store import schema_pg
from bridge.store.outbox import OutboxStore
from bridge.store.pg_leases import LeaseKeeper, LeaseLeadership
from bridge.store.postgres import PostgresDatabase
from oicp import ClientSettings, RestClient, RetryPolicy
from oicp.ids import EvseID, OperatorID
from oicp.models import EvseStatus
from oicp.simulator import HubjectSimulator, serve_simulator
from tests.bridge.conftest import OPERATORS, make_intake
from tests.test_evse_data_end_to_end import Cpo, data_config

ABC = OperatorID("DE*ABC")
ABC_OBD = OperatorID("DE*OBD")
LEASE_S = 1.5
V = OcpiVersion.V2_2_1
DEADLINE_S = 20.0


async def until(condition: Callable[[], Awaitable[object]], what: str) -> float:
    deadline = time.monotonic() + DEADLINE_S
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic()


@dataclass
class Replica:
    name: str
    db: PostgresDatabase
    leadership: LeaseLeadership
    intake: Intake
    dispatcher: Dispatcher
    stop_leading: asyncio.Event
    stop_dispatch: asyncio.Event
    tasks: list[asyncio.Task[None]]

    @property
    def outbox(self) -> OutboxStore:
        return self.intake.outbox

    def leads(self) -> bool:
        return self.leadership.term(operator_lease(ABC)) is not None


@contextlib.asynccontextmanager
async def replica(url: str, name: str, client: RestClient) -> AsyncIterator[Replica]:
    db = PostgresDatabase(url, schema_pg.MIGRATIONS, application_name=name)
    await db.open()
    names = [operator_lease(op.operator_id) for op in OPERATORS]
    leadership = LeaseLeadership(LeaseKeeper(db, name, LeasePolicy(duration=LEASE_S)), names)
    outbox = OutboxStore(db, fence=lambda tx, op: leadership.fence(tx, operator_lease(op)))
    intake = make_intake(db, outbox)
    dispatcher = Dispatcher(
        outbox,
        client,
        OPERATORS,
        PushConfig(flush_interval=0.05, max_batch=100, max_retry_interval=0.2, shutdown_timeout=5),
        ResyncConfig(interval=0),
        metrics=Metrics(),
        initial_resync=False,
        unsure_for=0.5,
        leadership=leadership,
    )
    intake.lanes = dispatcher
    stop_leading, stop_dispatch = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.create_task(leadership.run(stop_leading)),
        asyncio.create_task(dispatcher.run(stop_dispatch)),
    ]
    try:
        yield Replica(name, db, leadership, intake, dispatcher, stop_leading, stop_dispatch, tasks)
    finally:
        stop_dispatch.set()
        stop_leading.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await db.close()


def location(evses: dict[str, str], second: int) -> dict[str, object]:
    stamp = f"2026-11-01T12:00:{second:02}Z"
    return {
        "country_code": "DE", "party_id": "ABC", "id": "LOC1", "publish": True, "address": "Main St 1",
        "city": "Berlin", "country": "DEU", "time_zone": "Europe/Berlin", "last_updated": stamp,
        "coordinates": {"latitude": "52.520008", "longitude": "13.404954"},
        "evses": [
            {"uid": uid, "evse_id": f"DE*ABC*E{uid}", "status": status, "last_updated": stamp,
             "connectors": [{"id": "1", "standard": "IEC_62196_T2", "format": "SOCKET",
                             "power_type": "AC_3_PHASE", "max_voltage": 400, "max_amperage": 32,
                             "last_updated": stamp}]}
            for uid, status in evses.items()
        ],
    }  # fmt: skip


async def patch(intake: Intake, uid: str, status: str, second: int) -> None:
    body = {"status": status, "last_updated": f"2026-11-01T12:00:{second:02}Z"}
    await intake.patch(V, ObjectPath("DE", "ABC", "LOC1", uid), body)


@pytest.fixture
async def client() -> AsyncIterator[tuple[HubjectSimulator, RestClient]]:
    simulator = HubjectSimulator()
    async with serve_simulator(simulator) as served:
        policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.05, budget=2.0)
        async with RestClient(ClientSettings(url=served.url, timeout=2.0), retry_policy=policy) as rest:
            yield simulator, rest


async def test_one_replica_pushes_input_from_both_and_the_other_takes_over_when_it_stops(
    pg_url: str, client: tuple[HubjectSimulator, RestClient]
) -> None:
    simulator, rest = client
    async with replica(pg_url, "a", rest) as a, replica(pg_url, "b", rest) as b:
        await until(lambda: asyncio.sleep(0, a.leads() or b.leads()), "a leader")
        leader, follower = (a, b) if a.leads() else (b, a)
        assert not follower.leads()
        # input through the follower: the leader finds it in the store (no notification crosses replicas)
        await follower.intake.put(V, ObjectPath("DE", "ABC", "LOC1"), location({"1": "AVAILABLE"}, 1))
        await patch(leader.intake, "1", "CHARGING", 2)
        await patch(follower.intake, "1", "OUTOFORDER", 3)
        want = {EvseID("DE*ABC*E1"): EvseStatus.OUT_OF_SERVICE}
        await until(lambda: asyncio.sleep(0, simulator.statuses(ABC) == want), "the leader's push")
        assert follower.dispatcher.lane(ABC).last_push_at is None  # it never pushed
        assert simulator.max_in_flight.get("DEABC", 0) == 1

        # the leader stops renewing (as if it died): the follower takes over within the lease
        stopped_at = time.monotonic()
        leader.tasks[0].cancel()
        await patch(follower.intake, "1", "AVAILABLE", 4)
        taken = await until(lambda: asyncio.sleep(0, follower.leads()), "the takeover")
        assert taken - stopped_at < LEASE_S + 2 * LEASE_S / 3 + 1.0
        want = {EvseID("DE*ABC*E1"): EvseStatus.AVAILABLE}
        await until(lambda: asyncio.sleep(0, simulator.statuses(ABC) == want), "the new leader's push")
        assert not leader.leads()
        assert simulator.max_in_flight.get("DEABC", 0) == 1


async def test_a_replica_that_lost_the_lease_cannot_mark_anything_delivered(
    pg_url: str, client: tuple[HubjectSimulator, RestClient]
) -> None:
    _, rest = client
    async with replica(pg_url, "a", rest) as a:
        await until(lambda: asyncio.sleep(0, a.leads()), "a leads")
        a.stop_dispatch.set()  # its lane stops; the records below stay as a late push would leave them
        await a.tasks[1]
        await a.intake.put(V, ObjectPath("DE", "ABC", "LOC1"), location({"1": "AVAILABLE"}, 1))
        lane = a.dispatcher.lane(ABC)
        term = a.leadership.term(lane.lease)
        assert term is not None
        a.leadership.accept(lane.lease, term)
        claimed = await a.outbox.claim(ABC, 10)
        assert [r.evse_id for r in claimed] == [EvseID("DE*ABC*E1")]
        # another replica takes the lease over once a's expires (a stops renewing)
        a.tasks[0].cancel()
        async with replica(pg_url, "b", rest) as b:
            await until(lambda: asyncio.sleep(0, b.leads()), "b takes over")
            before = await b.db.read(lambda tx: [tuple(r) for r in tx.execute("SELECT * FROM outbox")])
            with pytest.raises(LeaseLostError):
                await a.outbox.delivered(ABC, claimed, time.time())
            with pytest.raises(LeaseLostError):
                await a.outbox.fullload_finished(ABC, None, frozenset(), 0.0)
            after = await b.db.read(lambda tx: [tuple(r) for r in tx.execute("SELECT * FROM outbox")])
            assert after == before
            # the new leader pushed what a had in flight (recovered as pending at its takeover)
            await until(
                lambda: asyncio.sleep(0, b.dispatcher.lane(ABC).last_push_at is not None),
                "b pushes the record",
            )


async def test_a_push_is_cut_when_the_lease_would_end() -> None:
    """``while_leading``: a block that outlives the replica's lead is cancelled and LeaseLostError raised
    (the push's connection closes before another replica may open one)."""

    class Ending(SoleLeader):
        shared = True
        recheck = 0.05

        def __init__(self, until: float) -> None:
            super().__init__(["operator:DE*ABC"])
            self.until = until

        def valid_until(self, name: str) -> float | None:
            return self.until if time.monotonic() < self.until else None

    leadership = Ending(time.monotonic() + 0.3)
    started = time.monotonic()
    with pytest.raises(LeaseLostError):
        async with while_leading(leadership, "operator:DE*ABC"):
            await asyncio.sleep(30)
    assert time.monotonic() - started < 2.0


async def test_one_process_leads_everything_at_term_zero(client: tuple[HubjectSimulator, RestClient]) -> None:
    """SQLite (one process): the dispatcher's default is ``SoleLeader``; nothing to claim, nothing fenced."""
    _, rest = client
    dispatcher = Dispatcher(
        OutboxStore(None),  # type: ignore[arg-type]  # never reached: the lanes are not started
        rest, OPERATORS, PushConfig(), ResyncConfig(interval=0),
    )  # fmt: skip
    leadership = dispatcher.leadership
    assert isinstance(leadership, SoleLeader)
    assert not leadership.shared
    assert {leadership.term(lane.lease) for lane in dispatcher.lanes.values()} == {SOLE_TERM}
    assert leadership.valid_until("operator:DE*ABC") is None  # so while_leading adds nothing
    assert [leader.mine for leader in await leadership.report()] == [True, True]


@contextlib.asynccontextmanager
async def two_data_replicas(
    pg_url: str, tmp_path: Path, simulator: HubjectSimulator
) -> AsyncIterator[tuple[Bridge, Bridge]]:
    """Two whole bridges with ``push_evse_data`` on one database and ``simulator``, running; yields
    (the one leading DE*OBD, the other) once one leads."""
    async with serve_simulator(simulator) as hubject:
        configs = [data_config(tmp_path, hubject, store={"url": pg_url, "lease": LEASE_S}) for _ in range(2)]
        bridges = [Bridge.build(config, initial_resync=False) for config in configs]
        async with bridges[0].running(), bridges[1].running():

            def leader() -> Bridge | None:
                held = [b for b in bridges if b.dispatcher.leadership.term("operator:DE*OBD") is not None]
                return held[0] if len(held) == 1 else None

            await until(lambda: asyncio.sleep(0, leader() is not None), "a leader")
            first = leader()
            assert first is not None
            yield first, next(b for b in bridges if b is not first)


async def test_two_replicas_push_evse_data_and_status_from_the_leader_only(
    pg_url: str, tmp_path: Path
) -> None:
    """The EVSE data lane asks the status lane's question: with ``push_evse_data`` on two replicas (whole
    bridges, one database), only the operator's leader pushes data and status, input taken by either,
    without a single 603 from a Hubject that requires the data first."""
    simulator = HubjectSimulator(require_evse_data=True)
    async with (
        two_data_replicas(pg_url, tmp_path, simulator) as (first, other),
        aiohttp.ClientSession() as session,
    ):
        assert other.receiver_url is not None
        cpo = Cpo(session, other.receiver_url)  # input through the replica that does not lead
        await cpo.call("PUT", "/L1", cpo.location("L1", [cpo.evse("e1", "DE*OBD*E1")]))
        await cpo.call("PATCH", "/L1/e1", {"status": "CHARGING", "last_updated": cpo.stamp()})

        def delivered() -> bool:
            data, statuses = set(simulator.evse_data.records("DE*OBD")), simulator.statuses("DE*OBD")
            return data == {EvseID("DE*OBD*E1")} and statuses == {EvseID("DE*OBD*E1"): EvseStatus.OCCUPIED}

        await until(lambda: asyncio.sleep(0, delivered()), "the data and the status at Hubject")
        assert first.dispatcher.data is not None
        assert other.dispatcher.data is not None
        assert first.dispatcher.data.lane(ABC_OBD).last_push_at is not None
        assert other.dispatcher.data.lane(ABC_OBD).last_push_at is None  # the follower's data lane
        assert other.dispatcher.lane(ABC_OBD).last_push_at is None  # and its status lane never pushed
    assert not [e for e in simulator.request_log if e.result_code == "603"]


async def test_a_fullload_asked_of_a_replica_that_does_not_lead_is_answered_at_once(
    pg_url: str, tmp_path: Path
) -> None:
    """A data fullLoad and a status fullLoad asked of the follower (its admin endpoint, its CLI) fail at
    once with who to ask, rather than waiting until that replica leads or stops; the leader runs them.
    (The data lane's waited: found in session 8.)"""
    simulator = HubjectSimulator(require_evse_data=True)
    async with two_data_replicas(pg_url, tmp_path, simulator) as (first, other):
        assert first.dispatcher.data is not None
        assert other.dispatcher.data is not None
        holder = other.dispatcher.leadership.holder
        (data,) = await asyncio.wait_for(other.dispatcher.data.request_resync(ABC_OBD), LEASE_S * 4)
        (status,) = await asyncio.wait_for(other.dispatcher.request_resync(ABC_OBD), LEASE_S * 4)
        for outcome in (data, status):
            assert outcome.result is ResyncResult.FAILED
            assert outcome.message == f"replica {holder} does not lead DE*OBD: ask the leader"
        # the leader runs it: with no EVSE stored yet its guard refuses to empty Hubject's set
        (led,) = await asyncio.wait_for(first.dispatcher.data.request_resync(ABC_OBD), DEADLINE_S)
        assert led.result is ResyncResult.REFUSED
        assert "--force" in led.message
        assert "ask the leader" not in led.message
