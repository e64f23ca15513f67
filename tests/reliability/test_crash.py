"""Crash safety: ``oicp-bridge run`` is killed with SIGKILL at random points while a simulated CPO pushes
status changes steadily, and restarted on the same SQLite file.

Kill points: during intake (PATCHes being committed), while a push to Hubject is in flight, while a
fullLoad (asked for through ``POST /resync``) is in flight. After each kill, the store on disk must hold
every change the bridge answered 1000 for (durable before acknowledged, and handed to the outbox in the
same transaction). When the load stops, Hubject's state (read through the OICP pull) equals the mapped
final OCPI state for 100 % of the EVSEs, with no manual step. The short variant runs by default; the
long one (more seeds, more kills) is marked ``slow``.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import aiohttp
import pytest

from bridge.intake import Intake
from bridge.observation import OcpiEvseStatus
from bridge.ocpi.cpo_sim.model import CpoFleet, EvseChange, format_datetime, parse_datetime
from bridge.ocpi.cpo_sim.pusher import CpoPusher, PushError
from bridge.ocpi.versions import OcpiVersion
from bridge.outbox import to_micros
from bridge.store.database import Database
from bridge.store.schema import MIGRATIONS
from oicp.ids import OperatorID
from oicp.simulator import HubjectSimulator, LoggedRequest, ServedSimulator, serve_simulator
from tests.bridge.conftest import make_intake, observation, wait_for
from tests.reliability.daemon import ADMIN_TOKEN, CPO_TOKEN, Daemon, DaemonConfig
from tests.test_end_to_end import converge

IN_FLIGHT_LATENCY = 0.4  # Hubject answers this slowly while the test waits for a push to be in flight


class KillPoint(StrEnum):
    INTAKE = "intake"
    PUSH = "push"
    FULLLOAD = "fullLoad"


@dataclass
class Load:
    """The simulated CPO: steady PATCHes, each retried until the bridge answers 1000 (as a real CPO's
    queue would), and the list of every change the bridge acknowledged."""

    fleet: CpoFleet
    pusher: CpoPusher
    acked: list[EvseChange] = field(default_factory=list)
    refused_while_down: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        backlog: list[EvseChange] = []
        while not stop.is_set() or backlog:
            if not backlog:
                backlog = self.fleet.step(3)
            change = backlog[0]
            if await self._push(change):
                self.acked.append(change)
                backlog.pop(0)
            else:
                self.refused_while_down += 1
                await asyncio.sleep(0.02)  # the bridge is down (killed, restarting): retry the same change

    async def _push(self, change: EvseChange) -> bool:
        try:
            await self.pusher.push_changes([change])
        except ExceptionGroup as group:  # push_changes runs its calls in a TaskGroup
            _, others = group.split(PushError)
            if others is not None:
                raise
            return False
        return True


def durable_state(db_path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """From the file a killed bridge left: per EVSE uid, the newest last_updated in ``ocpi_evse``, and per
    EvseID the newest last_updated handed off (outbox or not_pushed)."""
    conn = sqlite3.connect(db_path)
    try:
        evses = dict(conn.execute("SELECT evse_uid, last_updated_us FROM ocpi_evse").fetchall())
        handed: dict[str, int] = dict(conn.execute("SELECT evse_id, last_updated_us FROM outbox").fetchall())
        for source, lu in conn.execute("SELECT source, last_updated_us FROM not_pushed"):
            uid = str(source).rsplit("/", 1)[-1]
            handed[uid] = max(handed.get(uid, 0), int(lu))
    finally:
        conn.close()
    return evses, handed


def sent_us(change: EvseChange) -> int:
    """The change's last_updated as sent on the wire (OCPI DateTime, millisecond precision)."""
    return to_micros(parse_datetime(format_datetime(change.last_updated)))


def assert_acknowledged_changes_are_durable(db_path: Path, acked: list[EvseChange]) -> None:
    evses, handed = durable_state(db_path)
    lost = [c for c in acked if evses.get(c.evse_uid, -1) < sent_us(c)]
    assert not lost, f"{len(lost)} changes answered 1000 are not in the store after kill -9: {lost[:5]}"
    not_handed = [c for c in acked if max(handed.get(c.evse_id, -1), handed.get(c.evse_uid, -1)) < sent_us(c)]
    assert not not_handed, (
        f"{len(not_handed)} acknowledged changes never reached the outbox: {not_handed[:5]}"
    )


def in_flight(simulator: HubjectSimulator, match: Callable[[LoggedRequest], bool]) -> Callable[[], object]:
    async def check() -> bool:
        return any(e.http_status is None and match(e) for e in simulator.request_log)

    return check


async def post_resync(admin_url: str) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{admin_url}/resync", headers=headers) as response,
        ):
            await response.read()
    except aiohttp.ClientError:
        pass  # the daemon was killed while answering: expected


async def kill_at(point: KillPoint, daemon: Daemon, hubject: ServedSimulator, rng: random.Random) -> None:
    simulator = hubject.simulator
    if point is KillPoint.INTAKE:
        await asyncio.sleep(rng.uniform(0.05, 0.6))  # a random moment of steady intake
        await daemon.kill9()
        return
    simulator.faults.latency = IN_FLIGHT_LATENCY
    resync: asyncio.Task[None] | None = None
    try:
        if point is KillPoint.PUSH:
            match: Callable[[LoggedRequest], bool] = lambda e: e.action_type == "update"  # noqa: E731
        else:
            match = lambda e: e.action_type == "fullLoad"  # noqa: E731
            resync = asyncio.create_task(post_resync(daemon.config.admin_url))
        await wait_for(in_flight(simulator, match), within=15)  # type: ignore[arg-type]
        await asyncio.sleep(rng.uniform(0.0, IN_FLIGHT_LATENCY / 2))
        await daemon.kill9()
    finally:
        simulator.faults.latency = 0.0
        if resync is not None:
            await resync


@pytest.fixture
async def hubject() -> AsyncIterator[ServedSimulator]:
    async with serve_simulator(HubjectSimulator()) as served:
        yield served


async def crash_run(tmp_path: Path, hubject: ServedSimulator, seed: int, points: list[KillPoint]) -> Load:
    rng = random.Random(seed)
    config = DaemonConfig(tmp_path, hubject.url)
    daemon = Daemon(config)
    fleet = CpoFleet(seed=seed, locations=8, evses_per_location=4, country_code="DE", party_id="OBD")
    await daemon.start()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        pusher = CpoPusher(fleet, OcpiVersion.V2_2_1, session)
        await pusher.discover(f"{config.receiver_url}/ocpi/versions", CPO_TOKEN)
        await pusher.push_all()
        load = Load(fleet, pusher)
        stop = asyncio.Event()
        runner = asyncio.create_task(load.run(stop))
        try:
            for point in points:
                before = len(load.acked)
                await kill_at(point, daemon, hubject, rng)
                assert_acknowledged_changes_are_durable(config.db_path, load.acked)
                await daemon.start()
                # the load keeps going against the restarted daemon before the next kill
                await wait_for(lambda b=before: _progressed(load, b + 5), within=20)  # type: ignore[misc]
        except BaseException:
            runner.cancel()
            raise
        stop.set()
        await runner
    assert load.refused_while_down > 0, (
        "no request ever hit a dead bridge: the kills did not interrupt intake"
    )
    await converge(hubject, fleet, within=30)
    assert await daemon.stop() == 0
    assert_acknowledged_changes_are_durable(config.db_path, load.acked)
    logs = daemon.logs()
    assert '"task failed"' not in logs
    return load


async def _progressed(load: Load, count: int) -> bool:
    return len(load.acked) >= count


async def test_kill_9_during_intake_push_and_fullload_loses_nothing(
    tmp_path: Path, hubject: ServedSimulator
) -> None:
    load = await crash_run(tmp_path, hubject, 11, [KillPoint.INTAKE, KillPoint.PUSH, KillPoint.FULLLOAD])
    assert len(load.acked) > 20
    fullloads = [e for e in hubject.simulator.request_log if e.action_type == "fullLoad"]
    assert fullloads, "the fullLoad asked for over /resync never reached Hubject"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [21, 22, 23, 24, 25])
async def test_kill_9_at_random_points_many_seeds(
    tmp_path: Path, hubject: ServedSimulator, seed: int
) -> None:
    rng = random.Random(seed)
    points = [rng.choice(list(KillPoint)) for _ in range(8)]
    load = await crash_run(tmp_path, hubject, seed, points)
    assert len(load.acked) > 40


# --- the outbox rule the crash runs uncovered --------------------------------------------------------------
# A push whose outcome is unknown (the process died while it was in flight, it timed out, or a fullLoad
# carrying the row was cut short) may have reached Hubject. The bridge must then never assume Hubject still
# holds the previously delivered status: a later change back to that status has to be pushed.

ABC = OperatorID("DE*ABC")


async def _outbox(path: Path) -> tuple[Database, Intake]:
    db = Database(path, MIGRATIONS)
    await db.open()
    return db, make_intake(db)


async def _accept(intake: Intake, status: OcpiEvseStatus, seconds: float) -> None:
    await intake.apply_observations([observation("1", status, seconds)])


@pytest.mark.parametrize("cut_short", ["crash while in flight", "timeout", "fullLoad cut short"])
async def test_a_push_of_unknown_outcome_is_never_assumed_undone(tmp_path: Path, cut_short: str) -> None:
    db, intake = await _outbox(tmp_path / "outbox.db")
    store = intake.outbox
    await _accept(intake, OcpiEvseStatus.CHARGING, 1)
    await store.delivered(ABC, await store.claim(ABC, 10), 0.0)  # Hubject holds Occupied
    await _accept(intake, OcpiEvseStatus.AVAILABLE, 2)
    if cut_short == "fullLoad cut short":
        await store.fullload_starting(ABC)  # the fullLoad carries Available; its answer never comes
    else:
        sent = await store.claim(ABC, 10)  # Available is on its way to Hubject
        if cut_short == "timeout":
            await store.release(ABC, sent, "timeout", 60.0)
    if cut_short != "timeout":
        await db.close()  # kill -9: nothing more is written
        db, intake = await _outbox(tmp_path / "outbox.db")
        store = intake.outbox
        recovered = await store.recover(60.0)
        assert recovered.interrupted_fullloads == (("DE*ABC",) if cut_short == "fullLoad cut short" else ())
    await _accept(intake, OcpiEvseStatus.CHARGING, 3)  # back to what Hubject held before: push it anyway
    (record,) = await store.claim(ABC, 10)
    assert record.status is not None
    assert record.status.value == "Occupied"
    await db.close()
