"""Several ``oicp-bridge run`` replicas on one PostgreSQL database, a Hubject stand-in that records how many
pushes of an operator are open at once, and a simulated CPO whose load is spread over the replicas.

A push counts as open from its arrival until its answer is written or its client lets the connection go
(a client that timed out, or a replica killed with SIGKILL): that is what OICP 2.3 CPO 01 forbids twice at
once per operator, and a hang the client already gave up on is no longer a push in parallel.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bridge.ocpi.cpo_sim.model import CpoFleet, EvseChange
from bridge.ocpi.cpo_sim.pusher import CpoPusher, PushError
from bridge.ocpi.versions import OcpiVersion
from tests.reliability.daemon import CPO_TOKEN, Daemon, DaemonConfig
from tests.reliability.hubject_standin import HubjectStandIn, operator_key
from tests.test_end_to_end import mapped

OPERATOR = "DE*OBD"
PACE_S = 0.01  # between a CPO's acknowledged changes


class ConnectionAwareStandIn(HubjectStandIn):
    """The stand-in, with a push open only while its client holds the connection (see the docstring)."""

    async def _push(self, request: web.Request) -> web.StreamResponse:
        path_operator = request.match_info["operator_id"]
        key = operator_key(path_operator)
        self._open[key] = self._open.get(key, 0) + 1
        self.max_open[key] = max(self.max_open.get(key, 0), self._open[key])
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open[key] -= 1

        answer = asyncio.ensure_future(self._answer(request, path_operator))
        try:
            while not answer.done():
                await asyncio.wait({answer}, timeout=0.01)
                transport = request.transport
                if not answer.done() and (transport is None or transport.is_closing()):
                    release()  # the client let go: this push is no longer open
                    answer.cancel()
                    await asyncio.gather(answer, return_exceptions=True)
                    return web.Response(status=499)
            return answer.result()
        finally:
            release()


@asynccontextmanager
async def serve(standin: HubjectStandIn) -> AsyncIterator[HubjectStandIn]:
    runner = web.AppRunner(standin.build_app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    try:
        await site.start()
        standin.url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/oicp"
        yield standin
    finally:
        await standin.aclose()
        await runner.cleanup()


def replica_config(folder: Path, pg_url: str, hubject_url: str, extra: str = "", **env: str) -> DaemonConfig:
    """One replica: the reliability tests' daemon configuration on ``pg_url`` (the environment wins over
    the file, as for any key: contract)."""
    folder.mkdir(parents=True, exist_ok=True)
    overrides = {"OICP_BRIDGE_STORE__URL": pg_url, "OICP_BRIDGE_STORE__LEASE": "1s"}
    overrides.update({f"OICP_BRIDGE_{key.upper()}": value for key, value in env.items()})
    return DaemonConfig(folder, hubject_url, extra=extra, env=overrides)


@dataclass
class Replicas:
    daemons: list[Daemon]

    async def status(self, daemon: Daemon) -> dict[str, Any] | None:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
                session.get(f"{daemon.config.admin_url}/status.json") as response,
            ):
                body = await response.json()
                return body if isinstance(body, dict) else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    def running(self) -> list[Daemon]:
        return [d for d in self.daemons if d.process is not None and d.process.returncode is None]

    async def leader_of(self, name: str) -> Daemon | None:
        """The replica leading ``operator:ID`` or ``source:URL``, as the replicas' /status.json say."""
        kind, _, what = name.partition(":")
        by_pid = {d.process.pid: d for d in self.running() if d.process is not None}
        for daemon in self.running():
            body = await self.status(daemon)
            for leader in (body or {}).get("leaders", []):
                if (leader["kind"], leader["name"]) == (kind, what) and leader["leader"]:
                    pid = int(str(leader["leader"]).split(":")[1])  # host:pid:random
                    if pid in by_pid:
                        return by_pid[pid]
        return None

    async def stop_all(self) -> list[int]:
        return [await d.stop() for d in self.running()]


@asynccontextmanager
async def replicas(
    folder: Path, pg_url: str, hubject_url: str, count: int, extra: str = "", **env: str
) -> AsyncIterator[Replicas]:
    daemons = [
        Daemon(replica_config(folder / f"r{i}", pg_url, hubject_url, extra, **env)) for i in range(count)
    ]
    started = Replicas(daemons)
    try:
        await asyncio.gather(*(d.start() for d in daemons))
        yield started
    finally:
        for daemon in daemons:
            await daemon.kill9()


@dataclass
class SpreadLoad:
    """The simulated CPO: steady PATCHes, each sent to a random replica and retried (on another one)
    until a replica answers 1000; every acknowledged change is kept."""

    fleet: CpoFleet
    pushers: list[CpoPusher]
    rng: random.Random
    acked: list[EvseChange] = field(default_factory=list)
    refused: int = 0
    by_replica: dict[int, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        backlog: list[EvseChange] = []
        while not stop.is_set() or backlog:
            if not backlog:
                backlog = self.fleet.step(3)
                if not backlog:  # the fleet had nothing to change this instant
                    await asyncio.sleep(0.01)
                    continue
            change = backlog[0]
            index = self.rng.randrange(len(self.pushers))
            if await self._push(self.pushers[index], change):
                self.acked.append(change)
                self.by_replica[index] = self.by_replica.get(index, 0) + 1
                backlog.pop(0)
                # paced: REMOVED is final in the fleet, and an unpaced CPO would remove every EVSE soon
                await asyncio.sleep(PACE_S)
            else:
                self.refused += 1
                await asyncio.sleep(0.02)

    @staticmethod
    async def _push(pusher: CpoPusher, change: EvseChange) -> bool:
        try:
            await pusher.push_changes([change])
        except ExceptionGroup as group:  # push_changes runs its calls in a TaskGroup
            _, others = group.split(PushError)
            if others is not None:
                raise
            return False
        return True


async def pushers_for(fleet: CpoFleet, replicas: Replicas, session: aiohttp.ClientSession) -> list[CpoPusher]:
    found = []
    for daemon in replicas.daemons:
        pusher = CpoPusher(fleet, OcpiVersion.V2_2_1, session)
        await pusher.discover(f"{daemon.config.receiver_url}/ocpi/versions", CPO_TOKEN)
        found.append(pusher)
    return found


def expected(fleet: CpoFleet) -> dict[str, str]:
    """What Hubject must hold: the mapped final OCPI state (every change the CPO sent was acknowledged)."""
    statuses, unsettled = mapped(fleet)
    assert not unsettled
    return {str(evse_id): status.value for evse_id, status in statuses.items()}


async def converged(standin: HubjectStandIn, fleet: CpoFleet, within: float) -> None:
    want = expected(fleet)
    try:
        async with asyncio.timeout(within):
            while standin.held(OPERATOR) != want:  # noqa: ASYNC110 - polls the stand-in's state
                await asyncio.sleep(0.05)
    except TimeoutError:
        held = standin.held(OPERATOR)
        diff = {k: (v, held.get(k)) for k, v in want.items() if held.get(k) != v}
        raise AssertionError(
            f"Hubject never matched the acknowledged OCPI state (expected, held): {diff}"
        ) from None


async def wait_for(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    try:
        async with asyncio.timeout(within):
            while not condition():  # noqa: ASYNC110 - polls a real system's observable state
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def pause(daemon: Daemon) -> None:
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGSTOP)


def resume(daemon: Daemon) -> None:
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGCONT)


def log_lines(daemon: Daemon) -> list[dict[str, Any]]:
    lines = []
    for line in daemon.logs().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines
