"""Issue 11, "Hot loops against Hubject" and "One bad record blocks or poisons a lane": every failure backs
off (a refused or failed fullLoad too; ``Retry-After`` is a floor even past the client's budget), EvseIDs
Hubject names are set aside by exact match and the rest is pushed, a refusal naming nobody is a request
failure, dead letters go again with the next fullLoad, and one operator's pushes never overlap (OICP 2.3
CPO 01, "Data push operations": sequential). Hubject is the scripted stand-in, over real HTTP."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.reliability.core_rig import (
    OICP_OF,
    OPERATOR,
    Admin,
    Party,
    Sentinel,
    Stamps,
    accepted,
    config_values,
    evse,
    hold_for,
    merged,
    metric,
    running_bridge,
    wait_until,
)
from tests.reliability.hubject_standin import Accept, Busy, HubjectStandIn, Push, Refuse

RESYNCS = "oicp_bridge_resyncs_total"


def evse_ids(count: int, location: int = 1001) -> list[str]:
    return [f"DE*OBD*E{location}*{n}" for n in range(1, count + 1)]


async def put_fleet(
    cpo: Party, stamps: Stamps, location_id: str, ids: list[str], status: str = "AVAILABLE"
) -> None:
    moment = stamps.next()
    evses = [evse(f"{location_id}-{n}", evse_id, status, moment) for n, evse_id in enumerate(ids, 1)]
    await accepted(cpo.put_location(location_id, evses, moment))


def fullload(push: Push) -> bool:
    return push.action == "fullLoad"


def update_with(evse_id: str) -> Callable[[Push], bool]:
    def when(push: Push) -> bool:
        return push.action != "fullLoad" and push.has(evse_id)

    return when


async def test_fullload_answered_result_false_is_not_resent_in_a_hot_loop(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    standin.script(Refuse("022", "Data error in the request."), when=fullload)
    # the production cap on the wait between retries (config/example.toml): failures back off up to it
    values = merged(
        config_values(tmp_path, standin), resync={"interval": 3600}, push={"max_retry_interval": 60.0}
    )
    stamps = Stamps()
    async with running_bridge(values) as bridge:  # initial_resync: the first-start fullLoad
        assert bridge.receiver_url is not None
        assert bridge.admin_url is not None
        cpo = Party(http, bridge.receiver_url)
        await put_fleet(cpo, stamps, "L1", evse_ids(3))
        await wait_until(
            lambda: bool(standin.pushes(OPERATOR, action="fullLoad")),
            within=20,
            what="the first-start fullLoad is sent",
            seen=lambda: [(p.action, len(p.records)) for p in standin.pushes(OPERATOR)],
        )
        first = standin.pushes(OPERATOR, action="fullLoad")[0].at
        limit = 6  # a handful in 10 s: the first, a requested one, and a few backed-off retries

        def few_fullloads() -> str | None:
            count = len(standin.pushes(OPERATOR, action="fullLoad"))
            if count > limit:
                return f"{count} fullLoad requests within {time.monotonic() - first:.2f} s, all answered 022"
            return None

        await hold_for(4, few_fullloads)
        # a requested one, refused the same way (whether it waits for the lane's backoff is not the point)
        requested = asyncio.create_task(Admin(http, bridge.admin_url).resync())
        try:
            await hold_for(max(0.0, first + 10 - time.monotonic()), few_fullloads)
            if requested.done():
                status, body = requested.result()
                assert status != 200, body
        finally:
            requested.cancel()
            await asyncio.gather(requested, return_exceptions=True)


async def test_fullload_refused_by_the_shrink_guard_waits_for_the_interval_and_says_not_ready(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    interval = 2.0
    values = merged(config_values(tmp_path, standin), resync={"interval": interval, "max_shrink": 0.2})
    ids = evse_ids(10)
    stamps = Stamps()
    async with running_bridge(values, initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        assert bridge.admin_url is not None
        cpo = Party(http, bridge.receiver_url)
        admin = Admin(http, bridge.admin_url)
        await put_fleet(cpo, stamps, "L1", ids)
        await wait_until(lambda: len(standin.held(OPERATOR)) == 10, within=5, what="10 EVSEs on Hubject")
        status, body = await admin.resync()
        assert status == 200, body
        for n in range(1, 6):  # half the fleet withdrawn: the next fullLoad would shrink Hubject's set by 50%
            await accepted(cpo.patch_evse("L1", f"L1-{n}", "REMOVED", stamps.next()))
        await wait_until(lambda: len(standin.held(OPERATOR)) == 5, within=5, what="5 EVSEs withdrawn")

        async def refused() -> float:
            return metric(await admin.metrics(), RESYNCS, operator_id=OPERATOR, result="refused")

        async def refused_once() -> bool:
            return await refused() >= 1

        await wait_until(
            refused_once, within=interval + 5, what="the scheduled fullLoad is refused by the guard"
        )
        since, at_first = time.monotonic(), await refused()

        async def once_per_interval() -> str | None:
            grown = await refused() - at_first
            allowed = (time.monotonic() - since) / interval + 1
            if grown > allowed:
                return (
                    f"the refused fullLoad was tried {grown:g} more times in {time.monotonic() - since:.2f} s"
                )
            return None

        await hold_for(2 * interval, once_per_interval)
        assert await admin.ready() == 503, "/ready says ready while the operator's fullLoad is refused"
        fullloads = len(standin.pushes(OPERATOR, action="fullLoad"))
        status, body = await admin.resync(force=True)
        assert status == 200, body
        sent = standin.pushes(OPERATOR, action="fullLoad")
        assert len(sent) == fullloads + 1
        assert sorted(sent[-1].evse_ids) == sorted(ids[5:])
        assert await admin.ready() == 200


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured_beyond_the_client_budget(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession, status: int
) -> None:
    standin.script(Busy(status, "600"))
    stamps = Stamps()
    async with running_bridge(config_values(tmp_path, standin), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        cpo = Party(http, bridge.receiver_url)
        await put_fleet(cpo, stamps, "L1", evse_ids(1))
        await wait_until(lambda: bool(standin.pushes(OPERATOR)), within=5, what="a first push")
        first = standin.pushes(OPERATOR)[0].at

        def nothing_more() -> str | None:
            count = len(standin.pushes(OPERATOR))
            if count > 1:
                return (
                    f"{count} requests within {time.monotonic() - first:.2f} s of an HTTP {status} "
                    "with Retry-After: 600"
                )
            return None

        await hold_for(1.5, nothing_more)  # past the client's retry budget (1 s)
        await accepted(cpo.patch_evse("L1", "L1-1", "CHARGING", stamps.next()))  # new work wakes the lane
        await hold_for(max(0.0, first + 8 - time.monotonic()), nothing_more)


@pytest.mark.parametrize(
    ("code", "named"),
    [
        ("700", "DE*OBD*E1001*2"),
        ("601", "DE*OBD*E1001*2"),
        ("602", "DE*OBD*E1001*2"),
        ("510", "DE*OBD*E1001*2"),
        ("700", "DEOBDE10012"),  # Hubject may write an EvseID without its separators
    ],
)
async def test_evse_refused_with_an_evse_area_code_is_set_aside_and_the_rest_delivered(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession, code: str, named: str
) -> None:
    good_1, bad, good_2 = evse_ids(3)
    standin.script(Refuse(code, f"EVSE {named} refused"), when=update_with(bad))
    stamps = Stamps()
    async with running_bridge(config_values(tmp_path, standin), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        assert bridge.admin_url is not None
        cpo = Party(http, bridge.receiver_url)
        admin = Admin(http, bridge.admin_url)
        await put_fleet(cpo, stamps, "L1", [good_1, bad, good_2])  # one batch of three
        await wait_until(
            lambda: {good_1, good_2} <= standin.held(OPERATOR).keys(),
            within=5,
            what=f"the records not named by {code} are delivered",
            seen=lambda: f"Hubject holds {standin.held(OPERATOR)}; {len(standin.pushes(OPERATOR))} requests",
        )
        await wait_until(
            lambda: admin.dead_has(bad),
            within=5,
            what=f"{bad} is set aside",
            seen=lambda: "not on the status page",
        )
        assert bad not in standin.held(OPERATOR)
        await Sentinel(cpo, standin, stamps).barrier()  # the lane goes on


async def test_request_level_022_naming_nobody_backs_off_and_dead_letters_nothing(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    rule = standin.script(Refuse("022", None, "Data error."))
    values = merged(config_values(tmp_path, standin), push={"max_retry_interval": 1.0})
    ids = evse_ids(2)
    stamps = Stamps()
    async with running_bridge(values, initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        assert bridge.admin_url is not None
        cpo = Party(http, bridge.receiver_url)
        admin = Admin(http, bridge.admin_url)
        await put_fleet(cpo, stamps, "L1", ids)
        await wait_until(lambda: bool(standin.pushes(OPERATOR)), within=5, what="a first push")
        first = standin.pushes(OPERATOR)[0].at

        async def backing_off_and_nothing_dead() -> str | None:
            dead = await admin.dead()
            if dead:
                return f"a refusal naming nobody dead-lettered {sorted(dead)}"
            count = len(standin.pushes(OPERATOR))
            if count > 18:  # a bisection round of 2 records is 3 requests; rounds back off (cap 1 s)
                return f"{count} requests within {time.monotonic() - first:.2f} s, all refused 022"
            return None

        await hold_for(4, backing_off_and_nothing_dead)
        standin.rules.remove(rule)  # Hubject accepts again
        await wait_until(
            lambda: standin.held(OPERATOR) == dict.fromkeys(ids, "Available"),
            within=8,
            what="every record is delivered once Hubject accepts again",
            seen=lambda: f"Hubject holds {standin.held(OPERATOR)}",
        )


async def test_dead_letter_is_sent_again_by_the_next_fullload(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    good, bad = evse_ids(2)
    rule = standin.script(Refuse("604", f"EvseID {bad} is not Hubject compatible."), when=update_with(bad))
    stamps = Stamps()
    async with running_bridge(config_values(tmp_path, standin), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        assert bridge.admin_url is not None
        cpo = Party(http, bridge.receiver_url)
        admin = Admin(http, bridge.admin_url)
        await put_fleet(cpo, stamps, "L1", [good, bad])
        await wait_until(lambda: admin.dead_has(bad), within=5, what=f"{bad} is dead-lettered")
        await wait_until(lambda: good in standin.held(OPERATOR), within=5, what=f"{good} is delivered")
        standin.rules.remove(rule)  # the EVSE is fixed on Hubject's side
        status, body = await admin.resync()
        assert status == 200, body
        sent = standin.pushes(OPERATOR, action="fullLoad")[-1]
        assert bad in sent.evse_ids, f"the fullLoad left the dead letter out: {sent.records}"
        assert standin.held(OPERATOR) == {good: "Available", bad: "Available"}


async def test_additional_info_naming_e10_sets_aside_e10_only_not_e1(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    e1, e10 = "DE*OBD*E1", "DE*OBD*E10"
    standin.script(Refuse("604", f"EvseID {e10} is not Hubject compatible."), when=update_with(e10))
    stamps = Stamps()
    async with running_bridge(config_values(tmp_path, standin), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        assert bridge.admin_url is not None
        cpo = Party(http, bridge.receiver_url)
        admin = Admin(http, bridge.admin_url)
        await put_fleet(cpo, stamps, "L1", [e1, e10])
        await wait_until(lambda: admin.dead_has(e10), within=5, what=f"{e10} is set aside")
        await wait_until(
            lambda: standin.held(OPERATOR).get(e1) == "Available",
            within=5,
            what=f"{e1} is delivered (only {e10} was named)",
            seen=lambda: f"Hubject holds {standin.held(OPERATOR)}",
        )
        assert e1 not in await admin.dead()


async def test_one_operators_pushes_never_overlap_under_churn(
    tmp_path: Path, standin: HubjectStandIn, http: aiohttp.ClientSession
) -> None:
    standin.script(Accept(delay=0.05))  # a slow Hubject widens any window for overlap
    rng = random.Random(11)
    locations = {f"L{n}": evse_ids(5, n) for n in (1001, 1002, 1003)}
    stamps = Stamps()
    async with running_bridge(config_values(tmp_path, standin), initial_resync=False) as bridge:
        assert bridge.receiver_url is not None
        assert bridge.admin_url is not None
        cpo = Party(http, bridge.receiver_url)
        admin = Admin(http, bridge.admin_url)
        final: dict[str, str] = {}
        for location_id, ids in locations.items():
            await put_fleet(cpo, stamps, location_id, ids)
            final.update(dict.fromkeys(ids, "AVAILABLE"))
        resync = asyncio.create_task(admin.resync())
        for _ in range(60):
            location_id = rng.choice(list(locations))
            n = rng.randrange(5)
            status = rng.choice(["AVAILABLE", "CHARGING", "OUTOFORDER", "RESERVED"])
            await accepted(cpo.patch_evse(location_id, f"{location_id}-{n + 1}", status, stamps.next()))
            final[locations[location_id][n]] = status
            await asyncio.sleep(0.02)  # the CPO's cadence
        await resync
        expected = {evse_id: OICP_OF[status] for evse_id, status in final.items()}
        await wait_until(
            lambda: standin.held(OPERATOR) == expected,
            within=10,
            what="Hubject holds the CPO's final state",
            seen=lambda: {k: (v, standin.held(OPERATOR).get(k)) for k, v in expected.items()},
        )
        assert standin.max_open[OPERATOR.replace("*", "")] == 1, standin.max_open
