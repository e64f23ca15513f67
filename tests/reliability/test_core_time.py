"""Issue 11, "Max-wait behaves as a debounce" and "Time and order" (and issue 12 item 10): the max-wait runs
from the first change not yet pushed; waits run on a monotonic clock; the first-start fullLoad waits for a
quiet period of the CPO's initial load; a push whose outcome was unknown cannot leave Hubject behind; a
SIGTERM drain is bounded by ``shutdown_timeout`` even while a push is retrying."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.reliability.core_rig import (
    OPERATOR,
    Admin,
    Party,
    Stamps,
    accepted,
    config_values,
    evse,
    hold_for,
    merged,
    running_bridge,
    wait_until,
)
from tests.reliability.daemon import CPO_TOKEN, Daemon, DaemonConfig
from tests.reliability.hubject_standin import Busy, Hang, HubjectStandIn, LandLate, Push

X = "DE*OBD*E1001*1"


async def holds(standin: HubjectStandIn, status: str, *, within: float, what: str) -> None:
    await wait_until(
        lambda: standin.held(OPERATOR).get(X) == status,
        within=within,
        what=what,
        seen=lambda: f"Hubject holds {X} as {standin.held(OPERATOR).get(X)}",
    )


async def test_max_wait_pushes_an_evse_that_keeps_changing(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    flush, cadence, churn, window = 1.0, 0.35, 15.0, 1.5
    values = merged(config_values(tmp_path, standin), push={"flush_interval": flush})
    stamps = Stamps()
    async with running_bridge(values, initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        cpo = Party(http, bridge.receiver_url)
        moment = stamps.next()
        await accepted(cpo.put_location("L1", [evse("L1-1", X, "AVAILABLE", moment)], moment))
        await holds(standin, "Available", within=5, what="the first PUT reaches Hubject")
        start = time.monotonic()

        async def cycle() -> None:
            statuses = (
                "CHARGING",
                "OUTOFORDER",
                "AVAILABLE",
            )  # three OICP statuses, back to the delivered one
            for n in range(int(churn / cadence)):
                await asyncio.sleep(max(0.0, start + n * cadence - time.monotonic()))  # the CPO's cadence
                await accepted(cpo.patch_evse("L1", "L1-1", statuses[n % 3], stamps.next()))

        def pushed_in_every_window() -> str | None:
            now = time.monotonic()
            moments = [start] + [p.at for p in standin.pushes(OPERATOR, since=start) if p.has(X)]
            gaps = [b - a for a, b in zip(moments, [*moments[1:], now], strict=True)]
            if max(gaps) > window + 0.25:  # ~1.5 s: the flush interval, a change's cadence and some slack
                return (
                    f"{len(moments) - 1} pushes of {X} in {now - start:.2f} s of changes every {cadence} s "
                    f"with flush_interval {flush} s; longest wait {max(gaps):.2f} s"
                )
            return None

        churning = asyncio.create_task(cycle())
        try:
            await hold_for(churn, pushed_in_every_window)
        finally:
            churning.cancel()
            await asyncio.gather(churning, return_exceptions=True)


async def test_changes_that_arrive_while_a_push_is_out_wait_for_the_max_wait_not_push_back_to_back(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    """Seen on main with the wrk benchmark: 100 EVSEs changing ~35 times a second each, flush_interval 1 s,
    and the lane pushed 32 times a second: every change that came in while a batch was claimed kept the
    max-wait clock of the change before it, already run out; and the lane's count of pending rows, which
    counts a row each time it becomes pending, grew past max_batch and flushed a few dozen rows at once.
    Hubject's policy: no more requests than needed."""
    flush, churn = 0.5, 3.0
    ids = [f"DE*OBD*E2{n:02d}*1" for n in range(32)]
    values = merged(config_values(tmp_path, standin), push={"flush_interval": flush})
    stamps = Stamps()
    async with running_bridge(values, initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        cpo = Party(http, bridge.receiver_url)
        moment = stamps.next()
        evses = [evse(f"L2-{n}", evse_id, "AVAILABLE", moment) for n, evse_id in enumerate(ids)]
        await accepted(cpo.put_location("L2", evses, moment))
        await wait_until(
            lambda: all(standin.held(OPERATOR).get(e) == "Available" for e in ids),
            within=5,
            what="the PUT reaches Hubject",
        )
        start = time.monotonic()
        last: dict[int, str] = {}

        async def churning(n: int) -> None:  # as fast as the bridge answers, always a real change
            statuses = ("CHARGING", "AVAILABLE")
            count = 0
            while time.monotonic() - start < churn:
                last[n] = statuses[count % 2]
                await accepted(cpo.patch_evse("L2", f"L2-{n}", last[n], stamps.next()))
                count += 1

        await asyncio.gather(*(churning(n) for n in range(len(ids))))
        pushes = standin.pushes(OPERATOR, since=start)
        gaps = [round(b.at - a.at, 3) for a, b in itertools.pairwise(pushes)]
        told = f"{len(pushes)} pushes in {churn} s, flush_interval {flush} s, gaps {gaps}"
        # one push per flush_interval of changes (plus the one out when the churn began, and the last), and
        # none right after another: back to back, the gaps were ~0.03 s (a claim's time)
        assert len(pushes) <= churn / flush + 2, told
        assert min(gaps, default=flush) > flush / 4, told
        expected = {e: {"CHARGING": "Occupied", "AVAILABLE": "Available"}[last[n]] for n, e in enumerate(ids)}
        await wait_until(
            lambda: all(standin.held(OPERATOR).get(e) == expected[e] for e in ids),
            within=5,
            what="Hubject holds the last status of every EVSE",
        )


async def test_a_row_flipping_through_its_delivered_status_is_one_pending_row_not_a_full_batch(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    """The lane pushes early only for a full batch. It counted a row each time it became pending, so 4 EVSEs
    flipping between Hubject's status and another 300 times looked like 300 pending rows: a "full" batch of
    10 went out long before the max-wait. Counted net, they are at most 4 pending rows."""
    flush, batch = 30.0, 10
    ids = [f"DE*OBD*E30{n}*1" for n in range(4)]
    values = merged(config_values(tmp_path, standin), push={"flush_interval": flush, "max_batch": batch})
    stamps = Stamps()
    async with running_bridge(values, initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        cpo = Party(http, bridge.receiver_url)
        moment = stamps.next()
        evses = [evse(f"L3-{n}", evse_id, "AVAILABLE", moment) for n, evse_id in enumerate(ids)]
        await accepted(cpo.put_location("L3", evses, moment))
        await bridge.dispatcher.run_until_idle()  # delivered now, not after the 30 s max-wait
        assert all(standin.held(OPERATOR).get(e) == "Available" for e in ids)
        start = time.monotonic()

        async def flipping(n: int) -> None:
            for count in range(150):  # CHARGING, AVAILABLE (what Hubject holds), CHARGING, ...
                status = ("CHARGING", "AVAILABLE")[count % 2]
                await accepted(cpo.patch_evse("L3", f"L3-{n}", status, stamps.next()))

        await asyncio.gather(*(flipping(n) for n in range(len(ids))))
        await asyncio.sleep(0)  # the lane sees the last commits' notes before we look
        pushes = standin.pushes(OPERATOR, since=start)
        assert pushes == [], f"{len(pushes)} pushes before the max-wait of {flush} s: {pushes[:3]}"


class SteppedClock:
    """The bridge's wall clock (seconds since the epoch), which an operator's NTP may step."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_wall_clock_stepped_back_an_hour_does_not_stall_pushes(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    clock = SteppedClock()
    values = merged(
        config_values(tmp_path, standin),
        push={"flush_interval": 0.5, "retry_budget": 0.3, "max_retry_interval": 2.0},
    )
    stamps = Stamps(offset=-timedelta(hours=3))  # the CPO's last_updated stays in the past for every step
    async with running_bridge(values, initial_resync=False, wall_clock=clock) as bridge:
        assert bridge.receiver_url is not None
        assert bridge.admin_url is not None
        cpo = Party(http, bridge.receiver_url)
        moment = stamps.next()
        await accepted(cpo.put_location("L1", [evse("L1-1", X, "AVAILABLE", moment)], moment))
        await holds(standin, "Available", within=5, what="the first PUT reaches Hubject")
        # a change waits for its flush when the clock is stepped back an hour
        await accepted(cpo.patch_evse("L1", "L1-1", "CHARGING", stamps.next()))
        clock.offset -= 3600
        await holds(standin, "Occupied", within=3, what="a change pending across a 1 h step back is pushed")
        # the lane backs off after a failure when the clock is stepped back another hour
        outage = standin.script(Busy(503, None))
        before = len(standin.pushes(OPERATOR))
        await accepted(cpo.patch_evse("L1", "L1-1", "OUTOFORDER", stamps.next()))
        await wait_until(
            lambda: len(standin.pushes(OPERATOR)) > before, within=5, what="a push meets the outage"
        )
        admin = Admin(http, bridge.admin_url)

        async def failing() -> bool:  # /ready: the push failed past the client's retry budget
            return await admin.ready() == 503

        await wait_until(failing, within=5, what="the lane reports the failed push and backs off")
        clock.offset -= 3600
        standin.rules.remove(outage)
        await holds(
            standin, "OutOfService", within=5, what="a lane backing off across a 1 h step back pushes"
        )


async def test_first_fullload_waits_for_the_cpo_initial_load(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    first, rest = [f"DE*OBD*E1001*{n}" for n in (1, 2)], [f"DE*OBD*E1002*{n}" for n in range(1, 9)]
    standin.seed(OPERATOR, dict.fromkeys(first + rest, "Available"))  # Hubject holds 10 from before
    values = merged(config_values(tmp_path, standin), resync={"interval": 3600, "first_fullload_quiet": "3s"})
    stamps = Stamps()
    async with running_bridge(values) as bridge:  # initial_resync: the first-start fullLoad
        assert bridge.receiver_url is not None
        cpo = Party(http, bridge.receiver_url)
        moment = stamps.next()
        await accepted(
            cpo.put_location(
                "L1", [evse(f"L1-{n}", e, "AVAILABLE", moment) for n, e in enumerate(first, 1)], moment
            )
        )
        await asyncio.sleep(1.0)  # the CPO's initial load pauses
        moment = stamps.next()
        await accepted(
            cpo.put_location(
                "L2", [evse(f"L2-{n}", e, "AVAILABLE", moment) for n, e in enumerate(rest, 1)], moment
            )
        )
        await wait_until(
            lambda: any(standin.applied(p) for p in standin.pushes(OPERATOR, action="fullLoad")),
            within=15,
            what="the first-start fullLoad is sent",
        )
        sizes = standin.held_sizes(OPERATOR)
        assert min(sizes) >= 10, f"Hubject's set for {OPERATOR} went down to {min(sizes)} EVSEs: {sizes}"
        assert len(standin.pushes(OPERATOR, action="fullLoad")[0].records) == 10


async def test_late_landing_fullload_does_not_leave_hubject_behind(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    timeout, lands_after = 2.0, 3.5  # the first attempt times out at 2 s; Hubject applies it at 3.5 s
    values = merged(
        config_values(tmp_path, standin),
        hubject={"timeout": timeout, "connect_timeout": 1.0},
        push={"retry_budget": 10.0, "max_retry_interval": 0.2},
    )
    stamps = Stamps()
    async with running_bridge(values, initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        assert bridge.admin_url is not None
        cpo = Party(http, bridge.receiver_url)
        moment = stamps.next()
        await accepted(cpo.put_location("L1", [evse("L1-1", X, "AVAILABLE", moment)], moment))
        await holds(standin, "Available", within=5, what="the first PUT reaches Hubject")
        standin.script(LandLate(apply_after=lands_after), when=lambda p: p.action == "fullLoad", times=1)
        status, body = await Admin(
            http, bridge.admin_url
        ).resync()  # the client retries the timed-out attempt
        assert status == 200, body
        late: Push = standin.pushes(OPERATOR, action="fullLoad")[0]
        assert late.answer == "LandLate"
        await accepted(cpo.patch_evse("L1", "L1-1", "CHARGING", stamps.next()))  # newer than the fullLoad
        await holds(standin, "Occupied", within=lands_after - 0.5, what="the newer update reaches Hubject")
        assert not standin.applied(late), (
            "the scenario ran too slowly: the late fullLoad landed before the update"
        )
        await wait_until(lambda: standin.applied(late), within=lands_after, what="the late fullLoad lands")
        assert standin.held(OPERATOR).get(X) == "Available"  # Hubject was reverted by the late landing
        await holds(
            standin,
            "Occupied",
            within=2 * timeout + 0.05 + 1.5,
            what="Hubject holds the newest status again after the late-landing fullLoad",
        )


@pytest.mark.parametrize("trouble", ["hangs", "503 with Retry-After"])
async def test_sigterm_drain_is_bounded_by_shutdown_timeout_while_a_push_retries(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession, trouble: str
) -> None:
    shutdown_timeout, margin = 3.0, 2.0
    standin.script(Hang(3600) if trouble == "hangs" else Busy(503, "1"))
    config = DaemonConfig(
        tmp_path,
        standin.url,
        env={
            "OICP_BRIDGE_PUSH__SHUTDOWN_TIMEOUT": f"{shutdown_timeout}s",
            "OICP_BRIDGE_PUSH__RETRY_BUDGET": "60s",  # the client would go on retrying for a minute
            "OICP_BRIDGE_HUBJECT__TIMEOUT": "5s",
        },
    )
    daemon = Daemon(config)
    await daemon.start()
    try:
        stamps = Stamps()
        moment = stamps.next()
        cpo = Party(http, config.receiver_url, CPO_TOKEN)
        await accepted(cpo.put_location("L1", [evse("L1-1", X, "AVAILABLE", moment)], moment))
        await wait_until(lambda: bool(standin.pushes(OPERATOR)), within=5, what="a push reaches the stand-in")
        assert daemon.process is not None
        logged = len(daemon.logs().splitlines())
        signalled = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(daemon.process.wait(), timeout=shutdown_timeout + margin)
        except TimeoutError:
            pytest.fail(
                f"still running {time.monotonic() - signalled:.1f} s after SIGTERM with shutdown_timeout "
                f"{shutdown_timeout:g}s while the push retries ({trouble})"
            )
        assert daemon.process.returncode == 0
        after = [json.loads(line) for line in daemon.logs().splitlines()[logged:] if line.startswith("{")]
        events = [str(entry.get("event", "")) for entry in after]
        assert any("drain" in event.lower() for event in events), f"no line says draining started: {events}"
        assert any((entry.get("pending") or entry.get("pending_records") or 0) > 0 for entry in after), (
            f"no line says what was left pending: {after}"
        )
    finally:
        await daemon.kill9()
