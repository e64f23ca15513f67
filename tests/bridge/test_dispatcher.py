"""The dispatcher against the Hubject simulator over loopback HTTP: batching, coalescing, failures,
dead letters, parking, fullLoad resync and its guard."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.dispatcher import ResyncResult
from bridge.intake import Intake
from bridge.observation import EvseObservation, OcpiEvseStatus
from bridge.outbox import Record
from bridge.store.database import Database
from bridge.store.outbox import OutboxStore
from oicp import ClientSettings, RestClient, RetryPolicy
from oicp.errors import RequestTimeoutError
from oicp.ids import EvseID, OperatorID
from oicp.models import ActionType, EvseStatus, EvseStatusRecord
from oicp.simulator import FaultKind, HubjectSimulator, ServedSimulator, serve_simulator
from tests.bridge.conftest import make_dispatcher, make_intake, observation, wait_for
from tests.engines import build_engine

ABC = OperatorID("DE*ABC")


async def accept(intake: Intake, observations: list[EvseObservation]) -> None:
    await intake.apply_observations(observations)


def pushes(hubject: ServedSimulator, action: str | None = None) -> list[object]:
    return [
        e
        for e in hubject.simulator.request_log
        if e.operation == "push" and (action is None or e.action_type == action)
    ]


async def test_pending_records_reach_hubject_as_one_update(
    outbox: OutboxStore, intake: Intake, client: RestClient, hubject: ServedSimulator
) -> None:
    await accept(intake, [observation(str(n), OcpiEvseStatus.CHARGING) for n in range(50)])
    await make_dispatcher(intake, client).run_until_idle()
    assert hubject.simulator.statuses(ABC) == {EvseID(f"DE*ABC*E{n}"): EvseStatus.OCCUPIED for n in range(50)}
    assert len(pushes(hubject, "update")) == 1
    assert (await outbox.lane_status(ABC)).pending == 0


async def test_max_batch_cuts_requests(
    outbox: OutboxStore, intake: Intake, client: RestClient, hubject: ServedSimulator
) -> None:
    await accept(intake, [observation(str(n), OcpiEvseStatus.AVAILABLE) for n in range(25)])
    await make_dispatcher(intake, client, max_batch=10).run_until_idle()
    sizes = [len(e.body["OperatorEvseStatus"]["EvseStatusRecord"]) for e in pushes(hubject)]  # type: ignore[attr-defined]
    assert sizes == [10, 10, 5]


async def test_a_burst_is_coalesced_to_at_most_one_push_per_flush_interval(
    outbox: OutboxStore, intake: Intake, client: RestClient, hubject: ServedSimulator, database: Database
) -> None:
    dispatcher = make_dispatcher(intake, client, flush_interval=0.5)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    for n in range(200):  # 200 changes to 5 EVSEs, as fast as intake takes them
        status = OcpiEvseStatus.CHARGING if n % 2 else OcpiEvseStatus.AVAILABLE
        await accept(intake, [observation(str(n % 5), status, seconds=n)])
    expected = {
        EvseID(f"DE*ABC*E{n}"): (EvseStatus.OCCUPIED if (195 + n) % 2 else EvseStatus.AVAILABLE)
        for n in range(5)
    }

    async def converged() -> bool:
        return hubject.simulator.statuses(ABC) == expected and (await outbox.lane_status(ABC)).pending == 0

    await wait_for(converged)
    stop.set()
    await running
    times = [e.received_at for e in pushes(hubject)]  # type: ignore[attr-defined]
    assert 1 <= len(times) <= 2 + (times[-1] - times[0]) / 0.5
    for earlier, later in itertools.pairwise(times):
        assert later - earlier >= 0.45  # never two pushes within one flush interval


async def test_failed_pushes_keep_records_pending_until_hubject_recovers(
    outbox: OutboxStore, intake: Intake, client: RestClient, hubject: ServedSimulator
) -> None:
    hubject.simulator.faults.error_5xx_rate = 1.0
    hubject.simulator.faults.retry_after = None
    await accept(intake, [observation("1", OcpiEvseStatus.CHARGING)])
    dispatcher = make_dispatcher(intake, client)
    await dispatcher.run_until_idle()
    assert (await outbox.lane_status(ABC)).pending == 1
    assert "500" in (dispatcher.lane(ABC).last_error or "")
    hubject.simulator.faults.error_5xx_rate = 0.0
    await dispatcher.run_until_idle()
    assert hubject.simulator.statuses(ABC) == {EvseID("DE*ABC*E1"): EvseStatus.OCCUPIED}


async def test_a_refused_record_is_dead_lettered_and_the_rest_delivered(
    outbox: OutboxStore, intake: Intake, client: RestClient, hubject: ServedSimulator, database: Database
) -> None:
    # Hubject refuses (018, naming no record) the batch of 4, then its first half, then that half's first one.
    hubject.simulator.faults.reject_code = "018"
    hubject.simulator.faults.queue.extend([FaultKind.REJECT] * 3)
    await accept(intake, [observation(str(n), OcpiEvseStatus.AVAILABLE) for n in range(4)])
    await make_dispatcher(intake, client).run_until_idle()
    assert hubject.simulator.statuses(ABC) == {
        EvseID(f"DE*ABC*E{n}"): EvseStatus.AVAILABLE for n in (1, 2, 3)
    }
    dead = await database.read(
        lambda conn: conn.execute(
            "SELECT evse_id, dead_code, dead_reason FROM outbox WHERE state = 'dead'"
        ).fetchall()
    )
    assert [(row[0], row[1]) for row in dead] == [("DE*ABC*E0", "018")]
    assert "018" in dead[0][2]


async def test_unknown_evses_are_parked_and_the_rest_delivered(
    outbox: OutboxStore, intake: Intake, client: RestClient, hubject: ServedSimulator, database: Database
) -> None:
    hubject.simulator.state.known_evse_ids = frozenset({EvseID("DE*ABC*E1"), EvseID("DE*ABC*E2")})
    await accept(intake, [observation(str(n), OcpiEvseStatus.AVAILABLE) for n in (1, 2, 3)])
    await make_dispatcher(intake, client).run_until_idle()
    assert set(hubject.simulator.statuses(ABC)) == {EvseID("DE*ABC*E1"), EvseID("DE*ABC*E2")}
    parked = await database.read(
        lambda conn: conn.execute("SELECT evse_id, dead_code FROM outbox WHERE state = 'parked'").fetchall()
    )
    assert [tuple(row) for row in parked] == [("DE*ABC*E3", "603")]
    # a later status for it waits for the next fullLoad instead of being retried forever
    await accept(intake, [observation("3", OcpiEvseStatus.CHARGING, seconds=5)])
    assert (await outbox.lane_status(ABC)).pending == 0


async def test_fullload_replaces_hubjects_set(
    outbox: OutboxStore, intake: Intake, client: RestClient, hubject: ServedSimulator
) -> None:
    stale = EvseStatusRecord(evse_id=EvseID("DE*ABC*E999"), evse_status=EvseStatus.AVAILABLE)
    await client.push_evse_status(
        ABC, ActionType.UPDATE, [stale]
    )  # something Hubject holds, the bridge does not know
    await accept(intake, [observation(str(n), OcpiEvseStatus.CHARGING) for n in range(3)])
    (outcome,) = await make_dispatcher(intake, client).resync_now(ABC)
    assert outcome.result is ResyncResult.DONE
    assert outcome.records == 3
    assert hubject.simulator.statuses(ABC) == {EvseID(f"DE*ABC*E{n}"): EvseStatus.OCCUPIED for n in range(3)}
    assert (await outbox.lane_status(ABC)).pending == 0


async def test_fullload_guard_refuses_empty_and_shrunken_sets_unless_forced(
    outbox: OutboxStore, intake: Intake, client: RestClient, hubject: ServedSimulator
) -> None:
    dispatcher = make_dispatcher(intake, client)
    (empty,) = await dispatcher.resync_now(ABC)
    assert empty.result is ResyncResult.REFUSED
    assert "empty" in empty.message
    await accept(intake, [observation(str(n), OcpiEvseStatus.AVAILABLE) for n in range(10)])
    (first,) = await dispatcher.resync_now(ABC)
    assert first.result is ResyncResult.DONE
    await accept(intake, [observation(str(n), OcpiEvseStatus.REMOVED, seconds=1) for n in range(5)])
    (shrunk,) = await dispatcher.resync_now(ABC)
    assert shrunk.result is ResyncResult.REFUSED
    assert "50%" in shrunk.message
    assert len(hubject.simulator.statuses(ABC)) == 10  # nothing was sent
    (forced,) = await dispatcher.resync_now(ABC, force=True)
    assert forced.result is ResyncResult.DONE
    assert len(hubject.simulator.statuses(ABC)) == 5


async def test_updates_arriving_during_a_fullload_survive_it(
    outbox: OutboxStore, intake: Intake, client: RestClient, hubject: ServedSimulator, database: Database
) -> None:
    await accept(intake, [observation(str(n), OcpiEvseStatus.AVAILABLE) for n in range(20)])
    dispatcher = make_dispatcher(intake, client, flush_interval=0.01)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    await wait_for(lambda: _settled(outbox))
    hubject.simulator.faults.latency = 0.3  # the fullLoad takes a while ...
    resync = asyncio.create_task(dispatcher.request_resync(ABC))
    await wait_for(lambda: _fullload_started(hubject))
    await accept(intake, [observation("7", OcpiEvseStatus.CHARGING, seconds=10)])  # ... and an update arrives
    (outcome,) = await resync
    assert outcome.result is ResyncResult.DONE
    hubject.simulator.faults.latency = 0.0
    expected = {EvseID(f"DE*ABC*E{n}"): EvseStatus.AVAILABLE for n in range(20)} | {
        EvseID("DE*ABC*E7"): EvseStatus.OCCUPIED
    }

    async def converged() -> bool:
        return hubject.simulator.statuses(ABC) == expected

    await wait_for(converged)
    stop.set()
    await running
    actions = [e.action_type for e in pushes(hubject)]  # type: ignore[attr-defined]
    assert actions.index("fullLoad") < len(actions) - 1  # the update came after the fullLoad, not before
    assert hubject.simulator.max_in_flight_overall == 1


async def _settled(outbox: OutboxStore) -> bool:
    return (await outbox.lane_status(ABC)).pending == 0


async def _fullload_started(hubject: ServedSimulator) -> bool:
    return any(e.action_type == "fullLoad" for e in pushes(hubject))  # type: ignore[attr-defined]


# --- the pushed state, as a property ---------------------------------------------------------------------

STATUS_OF = {
    OcpiEvseStatus.AVAILABLE: EvseStatus.AVAILABLE,
    OcpiEvseStatus.CHARGING: EvseStatus.OCCUPIED,
    OcpiEvseStatus.OUTOFORDER: EvseStatus.OUT_OF_SERVICE,
    OcpiEvseStatus.RESERVED: EvseStatus.RESERVED,
}
# (evse, status or None for REMOVED, last_updated second, push now?)
steps = st.lists(
    st.tuples(
        st.integers(1, 5),
        st.sampled_from([*STATUS_OF, OcpiEvseStatus.REMOVED]),
        st.integers(0, 30),
        st.booleans(),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
async def test_hubject_ends_with_the_mapping_of_the_newest_observation_per_evse(
    emptied_engine_url: Callable[[], str], sequence: list[tuple[int, OcpiEvseStatus, int, bool]]
) -> None:
    """Any interleaving of observations (out-of-order last_updated, duplicates) and pushes: what Hubject
    finally holds per EVSE is the mapping of that EVSE's newest observation."""
    db = build_engine(emptied_engine_url())
    await db.open()
    try:
        intake = make_intake(db)
        async with serve_simulator(HubjectSimulator()) as hubject:
            policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01)
            async with RestClient(ClientSettings(url=hubject.url), retry_policy=policy) as rest:
                dispatcher = make_dispatcher(intake, rest)
                newest: dict[EvseID, tuple[int, OcpiEvseStatus]] = {}
                for evse, status, second, push_now in sequence:
                    await intake.apply_observations([observation(str(evse), status, seconds=second)])
                    key = EvseID(f"DE*ABC*E{evse}")
                    if key not in newest or second >= newest[key][0]:
                        newest[key] = (second, status)
                    if push_now:
                        await dispatcher.run_until_idle()
                await dispatcher.run_until_idle()
            expected = {k: STATUS_OF[s] for k, (_, s) in newest.items() if s is not OcpiEvseStatus.REMOVED}
            assert hubject.simulator.statuses(ABC) == expected
    finally:
        await db.close()


class HeldOutboxStore(OutboxStore):
    """The outbox as shipped, whose next ``claim`` can be held open by the test once it has committed:
    the moment a lane has taken what was pending and not yet looked at what it got."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold: asyncio.Event | None = None
        self.held = asyncio.Event()

    async def claim(
        self, operator_id: OperatorID, limit: int, *, ahead: bool = False, data_first: bool = False
    ) -> list[Record]:
        records = await super().claim(operator_id, limit, ahead=ahead, data_first=data_first)
        hold, self.hold = self.hold, None
        if hold is not None:
            self.held.set()
            await hold.wait()
        return records


@pytest.mark.parametrize("arrives", ["a change", "a resync request"])
async def test_a_wake_up_while_the_lane_claims_is_not_lost(
    database: Database, client: RestClient, hubject: ServedSimulator, arrives: str
) -> None:
    """A change (or a resync request) that lands while the lane awaits its claim must still reach
    Hubject: the lane must not take "I claimed everything pending" for true when the intake told of new
    pending rows meanwhile (nor clear a wake-up that arrived during the step)."""
    outbox = HeldOutboxStore(database)
    intake = make_intake(database, outbox)
    await accept(intake, [observation("1", OcpiEvseStatus.AVAILABLE)])
    dispatcher = make_dispatcher(intake, client)  # no scheduled resync: no timeout to fall back on
    await dispatcher.run_until_idle()
    await accept(intake, [observation("2", OcpiEvseStatus.AVAILABLE)])
    stop = asyncio.Event()
    release = asyncio.Event()
    outbox.hold = release
    running = asyncio.create_task(dispatcher.run(stop))
    try:
        async with asyncio.timeout(10):
            await outbox.held.wait()  # the lane has claimed E2 and waits for its answer
        if arrives == "a change":
            await accept(intake, [observation("1", OcpiEvseStatus.CHARGING, seconds=1)])
            release.set()

            async def pushed() -> bool:
                return hubject.simulator.statuses(ABC).get(EvseID("DE*ABC*E1")) is EvseStatus.OCCUPIED

            await wait_for(pushed, within=5)
        else:
            requested = asyncio.ensure_future(dispatcher.request_resync(ABC, force=True))
            await asyncio.sleep(0)  # the request is queued and the lane woken while it still claims
            release.set()
            async with asyncio.timeout(5):
                (outcome,) = await requested
            assert outcome.result is ResyncResult.DONE
    finally:
        stop.set()
        await running


async def test_a_timed_out_push_that_lands_late_is_overwritten_once_its_quiet_period_is_over(
    database: Database, hubject: ServedSimulator
) -> None:
    """What the crash test once showed under load, played step by step with the real client and
    simulator (the dispatcher's claim → push → release/delivered): a push that timed out lands after a
    later push of the same EVSE was acknowledged. The row stays ``unsure`` (that acknowledgement came
    within the quiet period), and once the period is over the row is pushed once more (``settle``), which
    puts Hubject right without waiting for a change or the next fullLoad."""
    now = [1_000.0]
    outbox = OutboxStore(database, clock=lambda: now[0])
    intake = make_intake(database, outbox)
    settings = ClientSettings(url=hubject.url, timeout=0.2)
    policy = RetryPolicy(max_attempts=1, initial_wait=0.01, max_wait=0.01, budget=1.0)
    evse = EvseID("DE*ABC*E1")

    async def push(records: list[Any]) -> None:
        wire = [EvseStatusRecord(evse_id=r.evse_id, evse_status=r.status) for r in records]
        await client.push_evse_status(ABC, ActionType.UPDATE, wire)

    async with RestClient(settings, retry_policy=policy) as client:
        await accept(intake, [observation("1", OcpiEvseStatus.AVAILABLE, seconds=1)])
        sent = await outbox.claim(ABC, 10)
        await push(sent)
        await outbox.delivered(ABC, sent, now[0])

        hubject.simulator.faults.latency = 0.6  # Hubject is slow: the next push times out at the client
        await accept(intake, [observation("1", OcpiEvseStatus.CHARGING, seconds=2)])
        late = await outbox.claim(ABC, 10)
        with pytest.raises(RequestTimeoutError):
            await push(late)
        await outbox.release(ABC, late, "timeout", unsure_for=60.0)
        hubject.simulator.faults.latency = 0.0

        await accept(intake, [observation("1", OcpiEvseStatus.AVAILABLE, seconds=3)])
        sent = await outbox.claim(ABC, 10)
        await push(sent)
        await outbox.delivered(ABC, sent, now[0])

        async def landed_late() -> bool:
            return hubject.simulator.statuses(ABC).get(evse) is EvseStatus.OCCUPIED

        await wait_for(landed_late, within=5)  # the timed-out push, applied after the later one

        assert await outbox.settle(ABC) == (0, 1_060.0)  # still within the quiet period: nothing yet
        now[0] = 1_061.0
        assert (await outbox.settle(ABC))[0] == 1
        sent = await outbox.claim(ABC, 10)
        assert [r.status for r in sent] == [EvseStatus.AVAILABLE]  # pushed once more
        await push(sent)
        await outbox.delivered(ABC, sent, now[0])
        assert await outbox.settle(ABC) == (0, None)  # the doubt is settled
    assert hubject.simulator.statuses(ABC).get(evse) is EvseStatus.AVAILABLE


class RecordingOutboxStore(OutboxStore):
    """The outbox as shipped, noting when each claim starts (to see it overlap a push)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[str] = []

    async def claim(
        self, operator_id: OperatorID, limit: int, *, ahead: bool = False, data_first: bool = False
    ) -> list[Record]:
        self.events.append("claim")
        records = await super().claim(operator_id, limit, ahead=ahead, data_first=data_first)
        self.events.append(f"claimed {len(records)}")
        return records


class RecordingClient(RestClient):
    """The REST client as shipped, noting when each push starts and ends."""

    events: list[str]

    async def push_evse_status(self, *args: Any, **kwargs: Any) -> Any:
        self.events.append("push")
        try:
            return await super().push_evse_status(*args, **kwargs)
        finally:
            self.events.append("pushed")


@pytest.mark.parametrize("fails", [False, True])
async def test_the_next_batch_is_claimed_while_a_push_is_out_and_released_if_it_fails(
    database: Database, hubject: ServedSimulator, fails: bool
) -> None:
    outbox = RecordingOutboxStore(database)
    intake = make_intake(database, outbox)
    await accept(intake, [observation(str(n), OcpiEvseStatus.CHARGING) for n in range(12)])
    hubject.simulator.faults.latency = 0.1  # each push takes a while: the next claim fits in it
    if fails:
        hubject.simulator.faults.error_5xx_status = 400  # not retried: the first push fails at once
        hubject.simulator.faults.queue.append(FaultKind.SERVER_ERROR)
    policy = RetryPolicy(max_attempts=1, initial_wait=0.01, max_wait=0.01)
    async with RecordingClient(ClientSettings(url=hubject.url), retry_policy=policy) as client:
        client.events = outbox.events
        dispatcher = make_dispatcher(intake, client, max_batch=5)
        await dispatcher.run_until_idle()
        if fails:
            assert (await outbox.lane_status(ABC)).pending == 12  # the unsent batch went back too
            await dispatcher.run_until_idle()
    first_push = outbox.events.index("push")
    assert outbox.events[first_push : first_push + 4] == ["push", "claim", "claimed 5", "pushed"]
    assert hubject.simulator.statuses(ABC) == {EvseID(f"DE*ABC*E{n}"): EvseStatus.OCCUPIED for n in range(12)}
    assert hubject.simulator.max_in_flight_overall == 1  # the pushes themselves stay one at a time
    assert (await outbox.lane_status(ABC)).unacknowledged == 0


async def test_a_fullload_sets_aside_the_evse_ids_hubject_names_without_separators(
    outbox: OutboxStore, intake: Intake, client: RestClient, hubject: ServedSimulator, database: Database
) -> None:
    """Hubject writes the EvseIDs of a 603 without '*' (DEABCE3); the outbox keys them with it (DE*ABC*E3):
    the fullLoad must still find and park exactly those rows, and go through without them."""
    hubject.simulator.state.known_evse_ids = frozenset({EvseID("DE*ABC*E1"), EvseID("DE*ABC*E2")})
    await accept(intake, [observation(str(n), OcpiEvseStatus.AVAILABLE) for n in (1, 2, 3)])
    (outcome,) = await make_dispatcher(intake, client).resync_now(ABC, force=True)
    assert (outcome.result, outcome.records, outcome.parked) == (ResyncResult.DONE, 2, 1)
    assert set(hubject.simulator.statuses(ABC)) == {EvseID("DE*ABC*E1"), EvseID("DE*ABC*E2")}
    parked = await database.read(
        lambda conn: conn.execute("SELECT evse_id, dead_code FROM outbox WHERE state = 'parked'").fetchall()
    )
    assert [tuple(row) for row in parked] == [("DE*ABC*E3", "603")]


class GatedOutboxStore(OutboxStore):
    """The outbox as shipped; its first ``lane_status`` read (the lane's start) is held after it has read
    the store, until the test lets it go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read = asyncio.Event()
        self.go_on = asyncio.Event()

    async def lane_status(self, operator_id: OperatorID) -> Any:
        status = await super().lane_status(operator_id)
        if not self.read.is_set():
            self.read.set()
            await self.go_on.wait()
        return status


async def test_a_change_committed_while_the_lane_reads_its_start_state_is_pushed(
    database: Database, client: RestClient, hubject: ServedSimulator
) -> None:
    """The receiver takes OCPI before the lanes have read their state from the store: a change committed
    (and notified) between the lane's read and the end of its start counts, though the read predates it.
    It was overwritten by the read's count of 0, and the lane then waited for the next change."""
    outbox = GatedOutboxStore(database)
    intake = make_intake(database, outbox)
    dispatcher = make_dispatcher(intake, client)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    try:
        async with asyncio.timeout(10):
            await outbox.read.wait()  # the lane has read the store: nothing pending yet
        await accept(intake, [observation("1", OcpiEvseStatus.CHARGING, seconds=1)])
        outbox.go_on.set()

        async def pushed() -> bool:
            return hubject.simulator.statuses(ABC).get(EvseID("DE*ABC*E1")) is EvseStatus.OCCUPIED

        await wait_for(pushed, within=5)
    finally:
        stop.set()
        await running
