"""Issue 15's acceptance: real ``oicp-bridge run`` replicas on one PostgreSQL database (``rig.py``).

- Three replicas, the CPO's load spread over them, Hubject faults (5xx, 429, hangs past the client
  timeout), kill -9 of the leader and of two replicas at once, restarts: Hubject ends with every acknowledged
  OCPI status, and no two pushes of the operator were ever open at once.
- A leader paused (SIGSTOP) past its lease is fenced when it resumes, and the state converges.
- PostgreSQL stopped under load: the replicas answer OCPI with an error (never 1000, never a 500), lose
  nothing acknowledged and recover without a restart (a short stop here; 30 s in the ``slow`` variant).
- The scheduled resync and the sender poll run once per operator and source, not once per replica.
- A CPO registers (credentials handshake) on one replica and pushes to another.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bridge.ocpi.cpo_sim import SimulatedCpo
from bridge.ocpi.cpo_sim.model import CpoFleet, format_datetime
from bridge.ocpi.cpo_sim.pusher import CpoPusher
from bridge.ocpi.versions import OcpiVersion
from tests.pg_server import PgServer
from tests.reliability.daemon import CPO_TOKEN
from tests.reliability.hubject_standin import Accept, Busy, Hang, HubjectStandIn
from tests.replicas.rig import (
    OPERATOR,
    ConnectionAwareStandIn,
    Replicas,
    SpreadLoad,
    converged,
    log_lines,
    pause,
    pushers_for,
    replicas,
    resume,
    serve,
    wait_for,
)

OPERATOR_LEASE = f"operator:{OPERATOR}"
FENCED_EVENTS = ("lost the lead of the operator mid-step", "no longer leading the operator")


@pytest.fixture
async def standin() -> AsyncIterator[HubjectStandIn]:
    async with serve(ConnectionAwareStandIn()) as served:
        yield served


def fleet(seed: int) -> CpoFleet:
    return CpoFleet(seed=seed, locations=6, evses_per_location=4, country_code="DE", party_id="OBD")


async def progressed(load: SpreadLoad, more: int, within: float = 30.0) -> None:
    target = len(load.acked) + more
    await wait_for(lambda: len(load.acked) >= target, f"{more} more acknowledged changes", within)


async def test_three_replicas_through_faults_and_kills_never_push_in_parallel_and_converge(
    tmp_path: Path, pg_url: str, standin: HubjectStandIn
) -> None:
    cpo = fleet(31)
    async with (
        replicas(tmp_path, pg_url, standin.url, 3) as bridge,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
    ):
        pushers = await pushers_for(cpo, bridge, session)
        await pushers[0].push_all()
        load = SpreadLoad(cpo, pushers, random.Random(5))
        stop = asyncio.Event()
        running = asyncio.create_task(load.run(stop))
        try:
            # Hubject misbehaves: 5xx, 429 with Retry-After, hangs past the client's 1 s timeout
            standin.script(Busy(503, None), times=3)
            standin.script(Busy(429, "1"), times=2)
            standin.script(Hang(5.0), times=2)
            await progressed(load, 30)
            await wait_for(lambda: all(rule.times == 0 for rule in standin.rules), "every fault met", 60)
            leader = await bridge.leader_of(OPERATOR_LEASE)
            assert leader is not None
            await leader.kill9()  # the leader dies mid-whatever
            await progressed(load, 20)
            await leader.start()
            # two at once, leaving one
            survivors = bridge.running()
            await asyncio.gather(*(d.kill9() for d in survivors[:2]))
            await progressed(load, 20)
            await asyncio.gather(*(d.start() for d in bridge.daemons if d not in bridge.running()))
            await progressed(load, 20)
        finally:
            stop.set()
            await running
        standin.calm()
        await converged(standin, cpo, within=40)
        assert len(bridge.running()) == 3
        assert len(load.by_replica) == 3  # every replica took OCPI input
    assert standin.max_open.get("DEOBD") == 1, f"pushes open at once: {standin.max_open}"
    answers = {push.answer for push in standin.pushes(OPERATOR)}
    assert {"Busy", "Hang", "Accept"} <= answers  # the faults were met, not skipped


async def test_a_leader_paused_past_its_lease_is_fenced_and_the_state_converges(
    tmp_path: Path, pg_url: str, standin: HubjectStandIn
) -> None:
    cpo = fleet(32)
    async with (
        replicas(tmp_path, pg_url, standin.url, 2) as bridge,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
    ):
        pushers = await pushers_for(cpo, bridge, session)
        await pushers[0].push_all()
        await wait_for(lambda: bool(standin.held(OPERATOR)), "the first pushes")
        leader = await bridge.leader_of(OPERATOR_LEASE)
        assert leader is not None
        other = next(d for d in bridge.daemons if d is not leader)
        load = SpreadLoad(cpo, [pushers[bridge.daemons.index(other)]], random.Random(6))
        stop = asyncio.Event()
        running = asyncio.create_task(load.run(stop))
        try:
            # catch the leader with a push open: Hubject is slow to answer, the leader is paused meanwhile
            standin.script(Accept(0.5))
            await wait_for(lambda: standin.open_now(OPERATOR) > 0, "a push in flight", within=20)
            pause(leader)
            try:
                paused_at = time.monotonic()
                await wait_for(lambda: time.monotonic() - paused_at > 3.0, "3 s past the 1 s lease", 10)
                taken = await bridge.leader_of(OPERATOR_LEASE)
                assert taken is other  # the other replica took over while the leader was away
            finally:
                resume(leader)
            await progressed(load, 10)
        finally:
            stop.set()
            await running
        standin.calm()
        await converged(standin, cpo, within=30)
        # the resumed replica noticed it had lost the lead: its late writes were refused, it stopped
        await wait_for(
            lambda: any(
                line.get("event")
                in ("lost the lead of the operator mid-step", "no longer leading the operator")
                for line in log_lines(leader)
            ),
            "the fenced replica's log line",
        )
    assert standin.max_open.get("DEOBD") == 1, f"pushes open at once: {standin.max_open}"


async def store_outage(tmp_path: Path, server: PgServer, standin: HubjectStandIn, outage_s: float) -> None:
    cpo = fleet(33)
    url = server.database_url("postgres")
    async with (
        replicas(tmp_path, url, standin.url, 2) as bridge,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
    ):
        pushers = await pushers_for(cpo, bridge, session)
        await pushers[0].push_all()
        load = SpreadLoad(cpo, pushers, random.Random(7))
        stop = asyncio.Event()
        running = asyncio.create_task(load.run(stop))
        answers: list[tuple[int, int | None]] = []
        try:
            await progressed(load, 20)
            server.stop(mode="immediate")
            down_until = time.monotonic() + outage_s
            await asyncio.sleep(1.0)  # the answers to requests committed before the stop arrive
            acked_before = len(load.acked)
            location = next(iter(cpo.locations()))
            evse = location.evses[0]
            token = base64.b64encode(CPO_TOKEN.encode()).decode()
            while time.monotonic() < down_until:
                for daemon in bridge.daemons:
                    # the EVSE's own status and time: had it been stored, it would change nothing
                    body = {"status": evse.status.value, "last_updated": format_datetime(evse.last_updated)}
                    target = (
                        f"{daemon.config.receiver_url}/ocpi/2.2.1/locations/DE/OBD/{location.id}/{evse.uid}"
                    )
                    async with session.patch(
                        target, json=body, headers={"Authorization": f"Token {token}"}
                    ) as response:
                        reply = await response.json(content_type=None)
                        answers.append((response.status, reply.get("status_code")))
                await asyncio.sleep(0.2)
            assert len(load.acked) == acked_before  # nothing is acknowledged while nothing can be stored
            server.start()
            await progressed(load, 20, within=60)  # recovered without a restart
        except BaseException:
            running.cancel()  # the load would retry its backlog forever against a broken store
            raise
        finally:
            stop.set()
            await asyncio.gather(running, return_exceptions=True)
        standin.calm()
        await converged(standin, cpo, within=60)
        assert len(bridge.running()) == 2
    assert answers
    assert all(status != 500 and code != 1000 for status, code in answers), answers
    assert standin.max_open.get("DEOBD") == 1


async def test_postgresql_stopped_under_load_answers_errors_and_recovers(
    tmp_path: Path, pg_private_server: PgServer, standin: HubjectStandIn
) -> None:
    await store_outage(tmp_path, pg_private_server, standin, outage_s=4.0)


@pytest.mark.slow
async def test_postgresql_stopped_30_s_under_load_answers_errors_and_recovers(
    tmp_path: Path, pg_private_server: PgServer, standin: HubjectStandIn
) -> None:
    await store_outage(tmp_path, pg_private_server, standin, outage_s=30.0)


async def test_scheduled_resync_and_sender_poll_run_once_per_operator_and_source(
    tmp_path: Path, pg_url: str, standin: HubjectStandIn
) -> None:
    sender = SimulatedCpo(seed=8, locations=4, evses_per_location=2, tokens=["sender-token"])
    server = TestServer(sender.build_sender_app())
    await server.start_server()
    try:
        source = str(server.make_url("/ocpi/versions"))
        extra = f'[[ocpi.sources]]\nversions_url = "{source}"\ntoken = "sender-token"\npoll_interval = "1s"\n'
        env = {"RESYNC__INTERVAL": "3s", "RESYNC__FIRST_FULLLOAD_QUIET": "500ms"}
        async with replicas(tmp_path, pg_url, standin.url, 3, extra, **env) as bridge:
            await wait_for(lambda: bool(standin.pushes(OPERATOR, action="fullLoad")), "a first fullLoad", 30)
            await every_replica_says_who_leads(bridge, [f"operator:{OPERATOR}", f"source:{source}"])
            started = time.monotonic()
            polls_before = len(sender.sender.stats.list_requests)
            loads_before = len(standin.pushes(OPERATOR, action="fullLoad"))
            await wait_for(lambda: time.monotonic() - started > 9.0, "9 s of running", 20)
            polls = len(sender.sender.stats.list_requests) - polls_before
            fullloads = len(standin.pushes(OPERATOR, action="fullLoad")) - loads_before
    finally:
        await server.close()
    # one replica polls the source every 1 s (a page each), one runs the 3 s schedule: not three of each
    assert 5 <= polls <= 12, polls
    assert 2 <= fullloads <= 4, fullloads


async def every_replica_says_who_leads(bridge: Replicas, names: list[str]) -> None:
    """``/status.json`` of each replica names the same leader per operator and source, and exactly one
    replica says it is itself; ``/status`` shows it; ``/ready`` of each is about itself (all ready)."""
    bodies = [await bridge.status(daemon) for daemon in bridge.daemons]
    assert all(body is not None for body in bodies)
    seen: dict[str, set[str]] = {}
    mine: dict[str, int] = {}
    for body in bodies:
        assert body is not None
        assert body["ready"], body["problems"]
        for leader in body["leaders"]:
            name = f"{leader['kind']}:{leader['name']}"
            seen.setdefault(name, set()).add(leader["leader"])
            mine[name] = mine.get(name, 0) + int(leader["this_replica"])
        assert body["replica"].split(":")[1].isdigit()  # host:pid:random
    assert set(seen) == set(names)
    assert all(len(holders) == 1 and None not in holders for holders in seen.values()), seen
    assert mine == dict.fromkeys(names, 1)
    async with aiohttp.ClientSession() as session:
        for daemon in bridge.daemons:
            async with session.get(f"{daemon.config.admin_url}/status") as response:
                page = await response.text()
            assert "<h2>Replicas</h2>" in page
            assert next(iter(seen[names[0]])) in page
            async with session.get(f"{daemon.config.admin_url}/ready") as response:
                assert response.status == 200


async def test_a_cpo_registered_on_one_replica_pushes_to_another(
    tmp_path: Path, pg_url: str, standin: HubjectStandIn
) -> None:
    cpo = SimulatedCpo(seed=9, locations=2, evses_per_location=2, registration_tokens=["cpo-token-b"])
    server = TestServer(cpo.build_sender_app())
    await server.start_server()
    try:
        env = {"OCPI__RECEIVER__ALLOW_LOCAL_CREDENTIALS_URLS": "true"}
        async with replicas(tmp_path, pg_url, standin.url, 2, **env) as bridge:
            a, b = bridge.daemons
            token_c = await cpo.register(
                f"{a.config.receiver_url}/ocpi/versions",
                CPO_TOKEN,
                own_versions_url=str(server.make_url("/ocpi/versions")),
                own_token="cpo-token-b",
            )
            assert token_c != CPO_TOKEN
            async with aiohttp.ClientSession() as session:
                pusher = CpoPusher(cpo.fleet, OcpiVersion.V2_2_1, session)
                await pusher.discover(f"{b.config.receiver_url}/ocpi/versions", token_c)
                assert await pusher.push_all() == 2
            await converged(standin, cpo.fleet, within=20)
    finally:
        await cpo.aclose()
        await server.close()
